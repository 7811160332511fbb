"""The plugin's models; importing this package registers them with :func:`recbole_diffusion.get_model`.

Every model class is importable from here, e.g. ``from recbole_diffusion.model import DreamRec``.
"""

from recbole_diffusion.model.general_recommender import *  # noqa: F401,F403
from recbole_diffusion.model.sequential_recommender import *  # noqa: F401,F403
