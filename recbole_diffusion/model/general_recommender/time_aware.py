"""Time-aware user vectors of T-DiffRec and LT-DiffRec (Wang et al., SIGIR 2023, Section 3.6).

Instead of ones, each user's training interactions get the weights ``linspace(w_min, w_max)`` in time order, so
that recent interactions weigh more. Needs the dataset's timestamp field.
"""

import numpy as np
import torch

from recbole_diffusion.validation import ConfigError, number


class TimeAwareHistory:
    """Mixin for T-DiffRec and LT-DiffRec: the user vectors hold time-aware weights ``linspace(w_min, w_max)`` over
    each user's training interactions in time order instead of ones (reads w_min, w_max)."""

    @classmethod
    def check_config(cls, config):
        """Check ``w_min`` and ``w_max`` (0 <= w_min <= w_max), then the model's other keys."""
        w_min = number("w_min", config["w_min"], 0)
        if number("w_max", config["w_max"], 0) < w_min:
            raise ConfigError("w_max", f"a number >= w_min ({w_min})", config["w_max"])
        super().check_config(config)

    def __init__(self, config, dataset):
        self.w_min = config["w_min"]
        self.w_max = config["w_max"]
        super().__init__(config, dataset)

    def build_histroy_items(self, dataset):
        self.history_item_id, self.history_item_value = time_weighted_history(dataset, self.w_min, self.w_max)
        self.history_item_id = self.history_item_id.to(self.device)
        self.history_item_value = self.history_item_value.to(self.device)


def time_weighted_history(dataset, w_min, w_max):
    """Each user's items and weights ``linspace(w_min, w_max, n_u)`` in time order, padded to ``[users, max n_u]``.

    Raises:
        ValueError: the dataset has no timestamp field.
    """
    time_field = dataset.time_field
    if time_field is None or time_field not in dataset.inter_feat.columns:
        raise ValueError(
            "T-DiffRec and LT-DiffRec weight interactions by time and need a timestamp field: load it with "
            "load_col (e.g. {inter: [user_id, item_id, timestamp]}) and set TIME_FIELD; "
            f"dataset {dataset.dataset_name!r} has none loaded."
        )
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    times = dataset.inter_feat[time_field].numpy()
    order = np.lexsort((times, users))
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=dataset.user_num)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    positions = np.arange(len(users)) - starts[users]
    spans = np.maximum(counts[users] - 1, 1)
    weights = w_min + (w_max - w_min) * positions / spans
    history_items = torch.zeros(dataset.user_num, max(int(counts.max()), 1), dtype=torch.long)
    history_weights = torch.zeros(history_items.shape)
    history_items[users, positions] = torch.from_numpy(items).long()
    history_weights[users, positions] = torch.from_numpy(weights).float()
    return history_items, history_weights
