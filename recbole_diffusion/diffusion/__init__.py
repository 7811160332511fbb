"""Shared diffusion core: noise schedules and the Gaussian diffusion process."""

from recbole_diffusion.diffusion.gaussian import PREDICTION_TYPES, GaussianDiffusion, guided_output
from recbole_diffusion.diffusion.schedules import SCHEDULES, make_betas

__all__ = ["GaussianDiffusion", "PREDICTION_TYPES", "SCHEDULES", "guided_output", "make_betas"]
