"""Shared diffusion core: noise schedules, the Gaussian diffusion process and its spherical (geodesic) variant, and
the builder of a model's diffusion from its config."""

from recbole_diffusion.diffusion.from_config import (
    betas_from_config,
    check_betas_config,
    diffusion_from_config,
    diffusion_steps,
)
from recbole_diffusion.diffusion.gaussian import PREDICTION_TYPES, GaussianDiffusion, drop_condition, guided_output
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
    "SCHEDULES",
    "betas_from_config",
    "check_betas_config",
    "diffusion_from_config",
    "diffusion_steps",
    "drop_condition",
    "exp_map",
    "geodesic_distance",
    "geodesic_q_sample",
    "guided_output",
    "log_map",
    "make_betas",
    "project_to_sphere",
    "right_angle_noise_scale",
    "spherical_sample",
    "spherical_step",
    "tangent_projection",
]
