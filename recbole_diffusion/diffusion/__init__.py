"""Shared diffusion core: noise schedules, the Gaussian diffusion process and its spherical (geodesic) variant, the
builder of a model's diffusion from its config, and the denoisers' losses beyond the MSE."""

from recbole_diffusion.diffusion.from_config import (
    betas_from_config,
    check_betas_config,
    diffusion_from_config,
    diffusion_steps,
)
from recbole_diffusion.diffusion.gaussian import (
    PREDICTION_TYPES,
    GaussianDiffusion,
    drop_condition,
    guided_denoiser,
    guided_output,
)
from recbole_diffusion.diffusion.losses import (
    REGRESSION_LOSSES,
    cosine_regression_loss,
    in_batch_negative_mean,
    preference_loss,
    regression_loss,
    sampled_in_batch_negative_mean,
)
from recbole_diffusion.diffusion.schedules import SCHEDULES, make_betas
from recbole_diffusion.diffusion.spherical import (
    exp_map,
    geodesic_distance,
    geodesic_q_sample,
    log_map,
    project_to_sphere,
    right_angle_noise_scale,
    spherical_sample,
    spherical_step,
    tangent_projection,
)

__all__ = [
    "GaussianDiffusion",
    "PREDICTION_TYPES",
    "REGRESSION_LOSSES",
    "SCHEDULES",
    "betas_from_config",
    "check_betas_config",
    "cosine_regression_loss",
    "diffusion_from_config",
    "diffusion_steps",
    "drop_condition",
    "exp_map",
    "geodesic_distance",
    "geodesic_q_sample",
    "guided_denoiser",
    "guided_output",
    "in_batch_negative_mean",
    "log_map",
    "make_betas",
    "preference_loss",
    "project_to_sphere",
    "regression_loss",
    "right_angle_noise_scale",
    "sampled_in_batch_negative_mean",
    "spherical_sample",
    "spherical_step",
    "tangent_projection",
]
