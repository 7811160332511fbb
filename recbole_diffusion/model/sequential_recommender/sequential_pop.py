"""SequentialPop: the popularity floor of a sequential comparison.

Not a paper's model: the sequential counterpart of RecBole's ``Pop``, so that a sequential table can show whether a
model beats "recommend what is most often bought next". Every history gets the same ranking: items by the number of
times they are a *training target* (``recbole_diffusion.collapse.training_target_counts``, the popularity that the
embedding-collapse check uses) in the dataset given to ``__init__``, which is the training split
(``train_data._dataset``). With the leave-one-out protocol RecBole's sequential dataset turns a user's chronological
items ``i_1 .. i_n`` into rows "history -> target" for ``i_2 .. i_n`` and holds the last two rows out for validation
and test, so an item's count is how often it occurs at positions 2 to n-2 of the users' sequences: each user's first
item and their validation and test items are not counted (checked on ml-100k: the 96,458 training rows are its
99,287 interactions less 943 first items and 2 x 943 held-out items, item by item, up to the order of equal
timestamps, which RecBole reads as float32).

Unlike RecBole's ``Pop`` it is a ``SequentialRecommender`` (``ModelType.SEQUENTIAL``), so it gets the same dataset,
split and full-sort evaluator as SASRec and the diffusion models (the sequential full sort masks no history, only
the padding item). The counts are computed once, in ``__init__``, and kept in the buffer ``target_count``, so a
checkpoint reloads weights-only. Nothing is learnt: RecBole's ``TraditionalTrainer`` (one epoch) is registered for
it; ``fake_loss`` is a dummy parameter that gives the optimizer something to hold, as in RecBole's ``Pop``.

Config keys (defaults and comments in ``properties/model/SequentialPop.yaml``):
    none of its own; the yaml only turns the unused negative sampling off.

Ties (items with equal counts) are broken by RecBole's top-k, the same way for every user.
"""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.trainer import TraditionalTrainer
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.collapse import training_target_counts
from recbole_diffusion.utils import register_model, register_trainer


@register_model
class SequentialPop(SequentialRecommender):
    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        counts = torch.from_numpy(training_target_counts(dataset)).float()
        self.register_buffer("target_count", counts)
        self.fake_loss = nn.Parameter(torch.zeros(1))

    def forward(self, item_seq, item_seq_len):
        """The score of every item for each history, ``[batch, n_items]``: its training-target count."""
        return self.target_count.expand(item_seq.size(0), -1)

    def calculate_loss(self, interaction):
        return 0.0 * self.fake_loss.sum()  # nothing to learn: the counts are fixed in __init__

    def predict(self, interaction):
        return self.target_count[interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        scores = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]).clone()
        scores[:, 0] = -torch.inf  # the padding item is never recommended
        return scores


register_trainer("SequentialPop")(TraditionalTrainer)
