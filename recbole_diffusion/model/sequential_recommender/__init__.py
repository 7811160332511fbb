"""Sequential diffusion recommenders and the popularity floor SequentialPop (RecBole ``SequentialRecommender``
subclasses); one import line per model."""

from recbole_diffusion.model.sequential_recommender.adrec import ADRec  # noqa: F401
from recbole_diffusion.model.sequential_recommender.diffdiv import DiffDiv  # noqa: F401
from recbole_diffusion.model.sequential_recommender.diffrec2 import DiffRec2  # noqa: F401
from recbole_diffusion.model.sequential_recommender.diffuasr import DiffuASR  # noqa: F401
from recbole_diffusion.model.sequential_recommender.diffurec import DiffuRec  # noqa: F401
from recbole_diffusion.model.sequential_recommender.dimerec import DimeRec  # noqa: F401
from recbole_diffusion.model.sequential_recommender.diqdiff import DiQDiff  # noqa: F401
from recbole_diffusion.model.sequential_recommender.dreamrec import DreamRec  # noqa: F401
from recbole_diffusion.model.sequential_recommender.preferdiff import PreferDiff  # noqa: F401
from recbole_diffusion.model.sequential_recommender.sequential_pop import SequentialPop  # noqa: F401
