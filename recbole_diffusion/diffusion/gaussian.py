"""Gaussian (DDPM / DDIM) diffusion process shared by the diffusion recommenders.

Timesteps are 0-based: ``t = 0`` is the first noising step and ``t = T - 1`` the
last. Per-sample quantities indexed by ``t`` (a LongTensor of shape ``[B]`` or an
int) are broadcast over all trailing dimensions of the data.
"""

import torch
from torch import nn

from recbole_diffusion.validation import int_in

PREDICTION_TYPES = ("x0", "eps")
VARIANCE_TYPES = ("fixed_small", "fixed_large")


def check_inference_steps(inference_steps, num_steps, key="inference_steps"):
    """Raise :class:`ConfigError` unless the config value ``inference_steps`` (of the config key ``key``) is ``None``
    (the full DDPM chain) or an int in 1..``num_steps`` (DDIM); no chain needs to be built for the check."""
    if inference_steps is not None:
        int_in(key, inference_steps, 1, num_steps, " (DDIM steps; ~ for the full DDPM chain of diffusion_steps)")


def guided_output(cond_output, uncond_output, guidance_weight):
    """Classifier-free guidance in DreamRec's form ``(1 + w) * cond - w * uncond``.

    This equals ``uncond + (1 + w) * (cond - uncond)``; ``w = 0`` gives the
    conditional output alone.
    """
    return (1 + guidance_weight) * cond_output - guidance_weight * uncond_output


def guided_denoiser(denoise, condition, null_condition, guidance_weight):
    """The classifier-free guided network for the core's samplers: ``(x_t, t) -> guided_output(denoise(x_t, t,
    condition), denoise(x_t, t, null_condition), guidance_weight)``, ``null_condition`` broadcast to ``condition``."""
    null_condition = null_condition.expand_as(condition)

    def guided(x_t, timesteps):
        conditional = denoise(x_t, timesteps, condition)
        return guided_output(conditional, denoise(x_t, timesteps, null_condition), guidance_weight)

    return guided


def drop_condition(condition, null_condition, p_uncond):
    """Classifier-free guidance training (Ho & Salimans): each row of ``condition`` ``[B, ...]`` is replaced by
    ``null_condition`` (broadcast to one row) with probability ``p_uncond``, so one network learns both the
    conditional and the unconditional output that ``guided_output`` mixes at sampling time."""
    dropped = torch.rand(condition.size(0), device=condition.device) < p_uncond
    dropped = dropped.reshape(-1, *([1] * (condition.dim() - 1)))
    return torch.where(dropped, null_condition.expand_as(condition), condition)


def _per_sample(values, like):
    """Reshape a ``[B]`` (or scalar) tensor so it broadcasts against ``like`` along dim 0."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


class GaussianDiffusion(nn.Module):
    """Fixed forward process ``q(x_t | x_0)`` plus DDPM and DDIM reverse steps.

    Args:
        betas: 1-D tensor of noise levels in (0, 1), e.g. from ``make_betas``.
        prediction_type: what the denoiser outputs, ``"x0"`` (the clean sample)
            or ``"eps"`` (the added noise).
        variance_type: variance of the DDPM reverse step ``p(x_{t-1} | x_t)``: ``"fixed_small"``
            is the posterior variance ``beta_t (1 - ab_{t-1}) / (1 - ab_t)``; ``"fixed_large"`` is
            ``beta_t``, with the posterior variance at ``t = 0`` (Ho et al.'s two choices; improved-diffusion's
            ``FIXED_LARGE``, used by DiffuRec).

    The schedule tensors are float32 buffers computed in float64. They are not
    persistent, so a model's ``state_dict`` only holds learned weights.
    """

    def __init__(self, betas: torch.Tensor, prediction_type: str = "x0", variance_type: str = "fixed_small"):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        if betas.dim() != 1 or len(betas) == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must all lie in (0, 1)")
        self.prediction_type = prediction_type
        self.variance_type = variance_type
        self.num_steps = len(betas)

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # posterior_variance[0] is 0; use the next value so the log stays finite.
        first_log_variance = posterior_variance[1] if self.num_steps > 1 else betas[0]
        clipped_posterior_variance = torch.cat([first_log_variance.reshape(1), posterior_variance[1:]])
        large_variance = torch.cat([first_log_variance.reshape(1), betas[1:]])
        model_variance = posterior_variance if variance_type == "fixed_small" else large_variance
        model_log_variance = torch.log(clipped_posterior_variance if variance_type == "fixed_small" else large_variance)
        schedule = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1.0).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": torch.log(clipped_posterior_variance),
            "model_variance": model_variance,
            "model_log_variance": model_log_variance,
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        for name, value in schedule.items():
            self.register_buffer(name, value.float(), persistent=False)

    def at_step(self, values, t, like):
        """``values[t]`` shaped to broadcast against ``like``."""
        return _per_sample(values[torch.as_tensor(t, device=values.device)], like)

    def rescaled_timesteps(self, t):
        """The steps ``t`` on a 1000-step scale, ``t * 1000 / T`` (improved-diffusion's ``rescale_timesteps``, as
        DiffuRec and DiQDiff feed them to their step embeddings)."""
        return t.float() * (1000.0 / self.num_steps)

    def sample_timesteps(self, batch_size, device, generator=None):
        """Uniformly random timesteps in ``[0, T)``, shape ``[batch_size]``."""
        return torch.randint(0, self.num_steps, (batch_size,), device=device, generator=generator)

    def q_sample(self, x0, t, noise=None):
        """Draw ``x_t ~ q(x_t | x_0) = N(sqrt(ab_t) x0, (1 - ab_t) I)``."""
        if noise is None:
            noise = torch.randn_like(x0)
        signal = self.at_step(self.sqrt_alphas_cumprod, t, x0) * x0
        return signal + self.at_step(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def q_posterior(self, x0, x_t, t):
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = self.at_step(self.posterior_mean_coef1, t, x_t) * x0
        mean = mean + self.at_step(self.posterior_mean_coef2, t, x_t) * x_t
        variance = self.at_step(self.posterior_variance, t, x_t)
        log_variance = self.at_step(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    def x0_from_eps(self, x_t, t, eps):
        """Invert ``q_sample``: the ``x0`` for which ``x_t`` was produced with noise ``eps``."""
        scaled_x_t = self.at_step(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
        return scaled_x_t - self.at_step(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps

    def eps_from_x0(self, x_t, t, x0):
        """The noise that turns ``x0`` into ``x_t`` at step ``t``."""
        scaled_x_t = self.at_step(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
        return (scaled_x_t - x0) / self.at_step(self.sqrt_recipm1_alphas_cumprod, t, x_t)

    def to_x0(self, model_output, x_t, t):
        """The denoiser's prediction of ``x0``, whatever ``prediction_type`` it outputs."""
        if self.prediction_type == "eps":
            return self.x0_from_eps(x_t, t, model_output)
        return model_output

    def p_mean_variance(self, model_output, x_t, t):
        """Reverse step ``p(x_{t-1} | x_t)``: ``(mean, variance, log_variance, x0_pred)``.

        The mean is the posterior mean with ``x0`` replaced by its prediction; the
        variance is fixed by ``variance_type`` (by default the posterior variance, "fixed small").
        """
        x0_pred = self.to_x0(model_output, x_t, t)
        mean, _, _ = self.q_posterior(x0_pred, x_t, t)
        variance = self.at_step(self.model_variance, t, x_t)
        log_variance = self.at_step(self.model_log_variance, t, x_t)
        return mean, variance, log_variance, x0_pred

    def ddpm_step(self, model_output, x_t, t, noise=None, generator=None):
        """One ancestral step ``x_t -> x_{t-1}``; no noise is added where ``t == 0``."""
        mean, _, log_variance, _ = self.p_mean_variance(model_output, x_t, t)
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        not_last = _per_sample(torch.as_tensor(t, device=x_t.device) != 0, x_t)
        return mean + not_last * torch.exp(0.5 * log_variance) * noise

    def ddim_step(self, model_output, x_t, t, t_prev, eta=0.0, generator=None):
        """DDIM update from step ``t`` to ``t_prev`` (``-1`` means the final ``x0``).

        ``eta = 0`` is deterministic DDIM; ``eta = 1`` matches DDPM's noise level.
        """
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        x0_pred = self.to_x0(model_output, x_t, t)
        eps = model_output if self.prediction_type == "eps" else self.eps_from_x0(x_t, t, x0_pred)
        alpha_bar = self.at_step(self.alphas_cumprod, t, x_t)
        # Prepend alpha_bar = 1 so that t_prev = -1 (index 0) means "fully denoised".
        alphas_cumprod_with_start = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        alpha_bar_prev = self.at_step(alphas_cumprod_with_start, torch.as_tensor(t_prev) + 1, x_t)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
        x_prev = alpha_bar_prev.sqrt() * x0_pred + (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            x_prev = x_prev + sigma * noise
        return x_prev

    def _first_step(self, start_step):
        """The timestep a reverse chain starts from: ``start_step``, or ``T - 1`` when None."""
        if start_step is None:
            return self.num_steps - 1
        if not 0 <= start_step < self.num_steps:
            raise ValueError(f"start_step must be in 0..{self.num_steps - 1}, got {start_step}")
        return start_step

    def check_inference_steps(self, inference_steps, key="inference_steps"):
        """:func:`check_inference_steps` against this chain's number of steps."""
        check_inference_steps(inference_steps, self.num_steps, key)

    def ddim_timesteps(self, num_inference_steps, start_step=None):
        """Evenly spaced descending timesteps from ``start_step`` (default ``T - 1``) down to 0.

        A single step gives just the starting timestep (one DDIM jump straight to ``x0``).
        """
        top = self._first_step(start_step)
        if not 1 <= num_inference_steps <= top + 1:
            raise ValueError(f"num_inference_steps must be in 1..{top + 1}, got {num_inference_steps}")
        return torch.linspace(top, 0, num_inference_steps, dtype=torch.float64).round().long().tolist()

    def reverse_step(self, model_output, x_t, t, t_prev=None, eta=0.0, generator=None):
        """One step of the reverse chain: DDPM's ancestral step when ``t_prev`` is None, else DDIM's to ``t_prev``."""
        if t_prev is None:
            return self.ddpm_step(model_output, x_t, t, generator=generator)
        return self.ddim_step(model_output, x_t, t, t_prev, eta=eta, generator=generator)

    def reverse_timesteps(self, num_inference_steps=None, start_step=None):
        """The ``(t, t_prev)`` pairs of a reverse chain from ``start_step`` (default ``T - 1``): every step with
        ``t_prev`` None (DDPM) when ``num_inference_steps`` is None or the number of steps in the chain, else the
        DDIM steps of :meth:`ddim_timesteps` (``t_prev = -1`` after the last)."""
        top = self._first_step(start_step)
        if num_inference_steps is None or num_inference_steps == top + 1:
            return [(step, None) for step in range(top, -1, -1)]
        steps = self.ddim_timesteps(num_inference_steps, start_step)
        return list(zip(steps, steps[1:] + [-1]))

    def sample(
        self,
        denoise_fn,
        shape,
        device,
        num_inference_steps=None,
        eta=0.0,
        x_T=None,
        generator=None,
        start_step=None,
        step=None,
    ):
        """Run the reverse chain and return the generated ``x0``: the one reverse loop of the plugin.

        Args:
            denoise_fn: ``denoise_fn(x_t, t_batch) -> model_output`` (``prediction_type`` form).
            shape: shape of the samples; the batch size is ``shape[0]``.
            device: device for the noise and timesteps.
            num_inference_steps: ``None``, or the number of steps in the chain (``T``, or
                ``start_step + 1``), runs the full DDPM ancestral chain; fewer runs
                DDIM over ``ddim_timesteps``.
            eta: DDIM noise level (ignored by the DDPM chain).
            x_T: starting point; standard normal noise when omitted.
            generator: torch generator for all sampled noise.
            start_step: start the chain at this timestep instead of ``T - 1`` (e.g. a
                noised history in DiffRec); requires ``x_T``.
            step: ``step(model_output, x_t, t_batch, t_prev) -> x_prev`` in place of :meth:`reverse_step` (``t_prev``
                None for a DDPM step), e.g. a step followed by a projection onto the sphere, or the mean only.

        Gradients are not disabled here; wrap the call in ``torch.no_grad()`` if needed.
        """
        timesteps = self.reverse_timesteps(num_inference_steps, start_step)
        if start_step is not None and x_T is None:
            raise ValueError("x_T is required when start_step is given")
        if x_T is None:
            x_t = torch.randn(shape, generator=generator, device=device)
        elif tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        else:
            x_t = x_T
        if step is None:

            def step(model_output, x_t, t, t_prev):
                return self.reverse_step(model_output, x_t, t, t_prev, eta=eta, generator=generator)

        for t_step, t_prev in timesteps:
            t = torch.full((shape[0],), t_step, device=device, dtype=torch.long)
            x_t = step(denoise_fn(x_t, t), x_t, t, t_prev)
        return x_t

    def snr(self, t):
        """Signal-to-noise ratio ``ab_t / (1 - ab_t)`` of step ``t`` (LongTensor or int).

        Taken from ``sqrt(1 / ab_t - 1)`` (computed in float64), which keeps full precision where ``ab_t`` is
        close to 1 (DiffRec's small noise scales) and ``1 - ab_t`` in float32 would not.
        """
        return self.sqrt_recipm1_alphas_cumprod[torch.as_tensor(t, device=self.alphas_cumprod.device)] ** -2

    def sample_mean(self, denoise_fn, x_t, start_step=None):
        """Reverse chain from ``x_t`` at ``start_step`` (default ``T - 1``) down to 0 that takes only the mean of
        each ``p(x_{t-1} | x_t)`` and samples no noise (DiffRec's inference with ``sampling_noise`` off).

        ``denoise_fn(x_t, t_batch) -> model_output`` in the ``prediction_type`` form; returns the final mean.
        A ``start_step`` past ``T - 1`` (DDRM's official runs with more sampling than diffusion steps) first runs the
        steps past ``T - 1`` with step ``T - 1``'s coefficients, the denoiser seeing the step itself.
        """
        last = self.num_steps - 1

        def mean_step(model_output, x_t, t, t_prev):
            return self.p_mean_variance(model_output, x_t, t.clamp(max=last))[0]

        if start_step is not None and start_step > last:
            for step in range(start_step, last, -1):
                t = torch.full((x_t.shape[0],), step, device=x_t.device, dtype=torch.long)
                x_t = mean_step(denoise_fn(x_t, t), x_t, t, None)
            start_step = last
        return self.sample(denoise_fn, x_t.shape, x_t.device, x_T=x_t, start_step=start_step, step=mean_step)
