"""Sequential diffusion recommenders (RecBole ``SequentialRecommender`` subclasses)."""

from recbole_diffusion.model.sequential_recommender.dreamrec import DreamRec

__all__ = ["DreamRec"]
