"""The plugin's models; importing this package registers them with :func:`recbole_diffusion.get_model`."""

from recbole_diffusion.model import sequential_recommender  # noqa: F401
