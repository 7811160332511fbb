"""T-DiffRec adapter: the official code (YiyanXu/DiffRec, folder ``T-DiffRec/``) driven on the plugin's general split.

``--official`` is the snapshot's ``T-DiffRec/`` folder. T-DiffRec is DiffRec on time-aware interaction weights, and
its ``models/gaussian_diffusion.py`` and ``models/DNN.py`` are the same as those of ``DiffRec/`` at the snapshot, so
this adapter is the DiffRec adapter (``adapters/diffrec.py``: the same imports by path, shims, training loop and
scoring, see its docstring) with only the training matrix changed; nothing of the official code is copied.

Data: the official input is again ``train_list.npy`` (0-based ``(user, item)`` pairs), but its ``data_utils.data_load``
(called with ``w_min``, ``w_max``) gives each user's training pairs, in the order they are stored, the weights
``np.linspace(w_min, w_max, n_u)`` (the oldest ``w_min``, the newest ``w_max``: the stored order must be the time
order), and ``main.py`` trains and scores on that weighted matrix (the binary one only masks). ``export`` writes the
plugin's training interactions so: plugin ids - 1, sorted by user and, within a user, by timestamp, ties in the
order of the plugin's ``inter_feat`` (a stable sort, as the plugin's ``time_aware.time_weighted_history``), so both
sides give every interaction the same weight. ``export_with_times`` adds the timestamps as a third column (not read
by the official code; for checking the order). ``official_weighted_matrix`` redoes ``data_load``'s weighting in our
words, in the plugin's full size (``user_num - 1`` x ``item_num - 1``, as the DiffRec adapter).
"""

import numpy as np
import scipy.sparse as sp

from benchmarks.parity.adapters import diffrec
from benchmarks.parity.adapters.diffrec import (  # noqa: F401 (the adapter interface)
    CONFIG_FILES,
    METRICS,
    OFFICIAL_FILES,
    OFFICIAL_REPOSITORY,
    SCORINGS,
    load_official,
)

MODEL = "TDiffRec"
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); the plugin's general "
    "split (properties/protocol/general.yaml), full ranking by the plugin's evaluator from each test user's "
    "time-weighted training row (linspace(w_min, w_max) over the user's training interactions in time order, as the "
    "official evaluate), the user's training and validation items and the padding item masked; model.eval() (as the "
    "official evaluate). norm_ratio: n/a (T-DiffRec has no item embeddings)."
)

# Shared hyperparameters: the plugin's TDiffRec yaml defaults: DiffRec's (the official ML-1M settings of DiffRec;
# the official T-DiffRec releases settings for Amazon-book and Yelp only) and the official T-DiffRec weight bounds
# (main.py's defaults w_min 0.1, w_max 1.0; the released Amazon-book setting).
DEFAULTS = {key: value for key, value in diffrec.DEFAULTS.items() if key != "epochs"}
DEFAULTS.update(w_min=0.1, w_max=1.0, epochs=diffrec.DEFAULTS["epochs"])
MODIFICATIONS = {}


def plugin_config(hparams):
    """The plugin's config entries that give its TDiffRec the shared hyperparameters ``hparams`` (DiffRec's and the
    weight bounds); the timestamp column is loaded (ml-100k's RecBole yaml loads it too)."""
    return {
        **diffrec.plugin_config(hparams),
        "w_min": hparams["w_min"],
        "w_max": hparams["w_max"],
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    }


def export_with_times(dataset):
    """``[n, 3]`` int64 ``(user, item, timestamp)`` of the plugin's training split ``dataset``: ids 0-based (plugin id
    - 1), sorted by user then timestamp, ties in ``inter_feat`` order (stable, as the plugin's weighting)."""
    users = dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64) - 1
    items = dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64) - 1
    times = dataset.inter_feat[dataset.time_field].numpy()
    order = np.lexsort((times, users))
    return np.stack([users[order], items[order], times[order].astype(np.int64)], axis=1)


def export(dataset):
    """The official T-DiffRec ``train_list.npy``: the ``(user, item)`` columns of ``export_with_times`` (each user's
    pairs in time order, which the official code turns into the weights)."""
    return np.ascontiguousarray(export_with_times(dataset)[:, :2])


def official_weighted_matrix(pairs, w_min, w_max, n_users, n_items):
    """The official T-DiffRec training matrix (``data_utils.data_load``): user ``u``'s ``n_u`` pairs, in their stored
    order, weighted ``linspace(w_min, w_max, n_u)`` (one pair: ``w_min``)."""
    users = pairs[:, 0]
    weights = np.empty(len(pairs))
    for user in np.unique(users):
        rows = np.flatnonzero(users == user)
        weights[rows] = np.linspace(w_min, w_max, len(rows))
    return sp.csr_matrix((weights, (users, pairs[:, 1])), dtype="float64", shape=(n_users, n_items))


class OfficialRunner(diffrec.OfficialRunner):
    """The DiffRec adapter's official model, training step and scoring on the time-weighted training matrix."""

    def training_matrix(self, dataset, n_users, n_items):
        return official_weighted_matrix(export(dataset), self.hparams["w_min"], self.hparams["w_max"], n_users, n_items)
