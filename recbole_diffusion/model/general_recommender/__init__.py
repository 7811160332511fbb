"""General (collaborative-filtering) diffusion recommenders (RecBole ``GeneralRecommender`` subclasses); one import
line per model."""

from recbole_diffusion.model.general_recommender.ddrm import DDRM  # noqa: F401
from recbole_diffusion.model.general_recommender.diffrec import DiffRec, TDiffRec  # noqa: F401
from recbole_diffusion.model.general_recommender.ldiffrec import LDiffRec, LTDiffRec  # noqa: F401
