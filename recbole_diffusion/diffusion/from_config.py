"""From a model's config to its :class:`GaussianDiffusion`: the one builder every model uses.

The papers read their noise schedule from different keys, so the builder takes the model's variant by name:

* ``"ddpm"`` (DreamRec, DimeRec, DiffDiv, DiQDiff, DiffRec2, DiffuASR): ``beta_schedule`` over ``diffusion_steps``;
  the ``linear`` schedule runs from ``beta_start`` to ``beta_end``.
* ``"diffurec"``: the same keys, but DiffuRec's ``linear`` is DDPM's ``linspace(1e-4, 0.02)`` with both ends scaled by
  ``1000 / T`` (stretched to ``T`` steps, as the official code); no ``beta_start`` / ``beta_end``.
* ``"diffrec"`` (DiffRec, T-DiffRec, L-DiffRec, LT-DiffRec, DDRM): ``noise_schedule`` over ``steps``; ``linear`` runs
  from ``noise_scale * noise_min`` to ``noise_scale * noise_max``, ``linear-var`` is linear in ``1 - alpha_bar``
  between the same ends, and ``beta_fixed`` sets the first beta to 1e-5, as the official code.
"""

from recbole_diffusion.diffusion.gaussian import GaussianDiffusion
from recbole_diffusion.diffusion.schedules import SCHEDULES, make_betas
from recbole_diffusion.validation import ConfigError, boolean, number, one_of, positive_int

VARIANTS = ("ddpm", "diffurec", "diffrec")
DIFFREC_SCHEDULES = ("linear-var", "linear", "cosine")
DIFFREC_FIRST_BETA = 1e-5  # beta_fixed: the first beta of the official DiffRec


def diffusion_steps(config, variant="ddpm"):
    """The number of diffusion steps ``T`` in the config of a model of ``variant``."""
    return config["steps"] if variant == "diffrec" else config["diffusion_steps"]


def check_betas_config(config, schedules=SCHEDULES, variant="ddpm"):
    """Check the keys :func:`betas_from_config` reads for ``variant``, without building; ``schedules``: the
    ``beta_schedule`` values a ``ddpm`` or ``diffurec`` model allows."""
    one_of("variant", variant, VARIANTS)
    if variant == "diffrec":
        positive_int("steps", config["steps"])
        one_of("noise_schedule", config["noise_schedule"], DIFFREC_SCHEDULES)
        number("noise_scale", config["noise_scale"], 0, low_open=True)
        noise_min = number("noise_min", config["noise_min"], 0, low_open=True)
        if number("noise_max", config["noise_max"], 0, low_open=True) < noise_min:
            raise ConfigError("noise_max", f"a number >= noise_min ({noise_min})", config["noise_max"])
        boolean("beta_fixed", config["beta_fixed"])
        return
    schedule = one_of("beta_schedule", config["beta_schedule"], schedules)
    positive_int("diffusion_steps", config["diffusion_steps"])
    if schedule == "linear" and variant == "ddpm":
        beta_start = number("beta_start", config["beta_start"], 0, 1, low_open=True, high_open=True)
        beta_end = number("beta_end", config["beta_end"], 0, 1, low_open=True, high_open=True)
        if beta_end < beta_start:
            raise ConfigError("beta_end", f"a number >= beta_start ({beta_start})", beta_end)


def betas_from_config(config, variant="ddpm"):
    """The float64 betas of the config's schedule under ``variant`` (see the module docstring)."""
    if variant == "diffrec":
        return _diffrec_betas(config)
    schedule, steps = config["beta_schedule"], config["diffusion_steps"]
    if schedule != "linear":
        return make_betas(schedule, steps)
    if variant == "diffurec":
        return make_betas(schedule, steps, beta_start=0.1 / steps, beta_end=20.0 / steps)
    return make_betas(schedule, steps, beta_start=config["beta_start"], beta_end=config["beta_end"])


def _diffrec_betas(config):
    schedule, scale = config["noise_schedule"], config["noise_scale"]
    noise_min, noise_max = config["noise_min"], config["noise_max"]
    if schedule == "linear-var":
        kwargs = {"noise_scale": scale, "noise_min": noise_min, "noise_max": noise_max}
    elif schedule == "linear":
        kwargs = {"beta_start": scale * noise_min, "beta_end": scale * noise_max}
    else:
        kwargs = {}
    betas = make_betas(schedule, config["steps"], **kwargs)
    if config["beta_fixed"]:
        betas[0] = DIFFREC_FIRST_BETA
    return betas


def diffusion_from_config(config, variant="ddpm", prediction_type="x0", variance_type="fixed_small"):
    """The model's :class:`GaussianDiffusion`: the betas of :func:`betas_from_config`, the denoiser's
    ``prediction_type`` (``x0`` or ``eps``) and the reverse step's ``variance_type``."""
    return GaussianDiffusion(betas_from_config(config, variant), prediction_type, variance_type)
