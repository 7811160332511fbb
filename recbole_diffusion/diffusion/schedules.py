"""Noise (beta) schedules used by the diffusion recommenders.

Every schedule returns a float64 tensor ``betas`` of shape ``[num_steps]`` with
all values in (0, 1); ``alphas_cumprod = cumprod(1 - betas)``.

Naming differs between the reference implementations, so note:

* our ``"linear"`` is the plain DDPM ``linspace(beta_start, beta_end)``
  (DreamRec's ``linear``). DiffRec's ``linear`` is the same thing with
  ``beta_start=noise_scale*noise_min`` and ``beta_end=noise_scale*noise_max``.
  DiffuRec's ``linear`` additionally scales both ends by ``1000 / num_steps``.
* ``"linear-var"`` is DiffRec's ``linear-var``: linear in ``1 - alpha_bar``.
* ``"trunc_linear"`` / ``"trunc_cosine"`` are DiffuRec's ``trunc_lin`` /
  ``trunc_cos``; ``"exp"`` is DreamRec's ``exp``.
"""

import inspect
import math

import torch

from recbole_diffusion.validation import positive_int

SCHEDULES = ("linear", "cosine", "sqrt", "trunc_linear", "trunc_cosine", "linear-var", "exp")


def _betas_from_alpha_bars(alpha_bars, max_beta):
    """Turn ``[reference, ab_1, ..., ab_T]`` into ``beta_t = 1 - ab_t / ab_{t-1}``, clipped at max_beta."""
    betas = 1.0 - alpha_bars[1:] / alpha_bars[:-1]
    return betas.clamp(max=max_beta)


def _grid(num_steps, count, offset=0):
    """``(offset + arange(count)) / num_steps`` in float64: the continuous time of each step."""
    return (offset + torch.arange(count, dtype=torch.float64)) / num_steps


def _linear(num_steps, beta_start=1e-4, beta_end=0.02):
    """DDPM (Ho et al.) linear betas."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def _cosine(num_steps, s=0.008, max_beta=0.999):
    """Improved DDPM (Nichol & Dhariwal): ``alpha_bar(t) = cos((t/T + s) / (1 + s) * pi/2)^2``."""
    alpha_bars = torch.cos((_grid(num_steps, num_steps + 1) + s) / (1 + s) * math.pi / 2) ** 2
    return _betas_from_alpha_bars(alpha_bars, max_beta)


def _sqrt(num_steps, s=1e-4, max_beta=0.999):
    """Diffusion-LM / DiffuRec: ``alpha_bar(t) = 1 - sqrt(t/T + s)``.

    ``alpha_bar(1)`` is slightly negative, so the last beta is clipped to max_beta
    exactly as in the reference code.
    """
    alpha_bars = 1.0 - torch.sqrt(_grid(num_steps, num_steps + 1) + s)
    return _betas_from_alpha_bars(alpha_bars, max_beta)


def _trunc_cosine(num_steps, s=0.1, max_beta=0.999):
    """DiffuRec ``trunc_cos``: cosine with a large offset, evaluated from t = 0.

    ``alphas_cumprod[k] = cos((k/T + s) / (1 + s) * pi/2)^2`` for k = 0..T-1
    (the first beta is ``1 - alpha_bar(0)`` rather than a ratio).
    """
    alpha_bars = torch.cos((_grid(num_steps, num_steps) + s) / (1 + s) * math.pi / 2) ** 2
    return _betas_from_alpha_bars(torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars]), max_beta)


def _trunc_linear(num_steps, beta_start=1e-4, beta_end=0.02):
    """DiffuRec ``trunc_lin``: linear betas scaled by ``1000 / T`` and shifted up by 0.01.

    As in the reference code, when the scaled ``beta_end`` would exceed 1 (T < ~20)
    it falls back to ``scale * 0.001 + 0.01``.
    """
    scale = 1000 / num_steps
    start = scale * beta_start + 0.01
    end = scale * beta_end + 0.01
    if end > 1:
        end = scale * 0.001 + 0.01
    return torch.linspace(start, end, num_steps, dtype=torch.float64)


def _linear_variance(num_steps, noise_scale=0.1, noise_min=1e-4, noise_max=0.02, max_beta=0.999):
    """DiffRec ``linear-var``: ``1 - alpha_bar_t`` rises linearly from ``noise_scale * noise_min``
    to ``noise_scale * noise_max``."""
    start, end = noise_scale * noise_min, noise_scale * noise_max
    variances = torch.linspace(start, end, num_steps, dtype=torch.float64)
    alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64), 1.0 - variances])
    return _betas_from_alpha_bars(alpha_bars, max_beta)


def _exp(num_steps, beta_min=0.1, beta_max=10.0):
    """DreamRec ``exp``: discretised VP-SDE, ``beta_k = 1 - exp(-b_min/T - x_k (b_max - b_min) / (2 T^2))``.

    ``x = linspace(1, 2T + 1, T)`` as in the reference code.
    """
    x = torch.linspace(1, 2 * num_steps + 1, num_steps, dtype=torch.float64)
    return 1.0 - torch.exp(-beta_min / num_steps - x * 0.5 * (beta_max - beta_min) / num_steps**2)


_BUILDERS = {
    "linear": _linear,
    "cosine": _cosine,
    "sqrt": _sqrt,
    "trunc_linear": _trunc_linear,
    "trunc_cosine": _trunc_cosine,
    "linear-var": _linear_variance,
    "exp": _exp,
}


def make_betas(schedule: str, num_steps: int, **kwargs) -> torch.Tensor:
    """Build the float64 ``betas`` tensor (shape ``[num_steps]``) of a named schedule.

    Args:
        schedule: one of :data:`SCHEDULES`.
        num_steps: number of diffusion steps T (>= 1).
        **kwargs: schedule parameters, e.g. ``beta_start``/``beta_end`` for "linear",
            ``noise_scale``/``noise_min``/``noise_max`` for "linear-var",
            ``beta_min``/``beta_max`` for "exp", ``s``/``max_beta`` for the
            alpha-bar based schedules.
    """
    if schedule not in _BUILDERS:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    positive_int("num_steps", num_steps)
    builder = _BUILDERS[schedule]
    allowed = tuple(inspect.signature(builder).parameters)[1:]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"schedule {schedule!r} got unknown arguments {unknown}; allowed: {allowed}")
    betas = builder(num_steps, **kwargs)
    if not ((betas > 0) & (betas < 1)).all():
        raise ValueError(f"schedule {schedule!r} with {kwargs} gives betas outside (0, 1)")
    return betas
