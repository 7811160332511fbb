"""Embedding collapse: a loss that regresses onto a *trainable* target embedding can fall by shrinking the targets.

DreamRec's only loss is the MSE between the denoised vector and the target item's embedding, and that embedding is
trained too. The most frequent targets receive the most gradient and shrink most; inner-product scoring then puts
rare items on top and the model ranks below chance (measured on ml-100k with this plugin and with the official
code alike). Later work calls this "embedding collapse" (ADRec, KDD 2025, arXiv 2505.19544).

The symptom measured here: the *norm ratio*, the mean L2 norm of the item embeddings of the most popular quarter of
training targets divided by that of the least popular quarter. At initialisation it is about 1; a model that
collapses drives it towards 0. A model that declares ``target_embedding_table`` (the name of the ``nn.Embedding``
its loss regresses onto) is checked after every training epoch by :class:`CollapseMonitor` (through the plugin's
trainer): the ratio is logged, and the first time it falls below ``collapse_norm_ratio`` (``overall.yaml``,
default 0.5; ``~`` turns the check off) a warning names the model, the ratio and the options that stop the collapse
(``detach_target``, frozen embeddings from ``item_emb_path``).
"""

from logging import getLogger

import numpy as np
import torch

CONFIG_KEY = "collapse_norm_ratio"


def training_target_counts(dataset):
    """How often each item id is a training target in ``dataset`` (a split's dataset), ``[item_num]`` int64."""
    items = dataset.inter_feat[dataset.iid_field].numpy()
    return np.bincount(items, minlength=dataset.item_num)


def popularity_norm_ratio(embedding_weight, target_counts):
    """Mean row norm of the most popular quarter of training targets over that of the least popular quarter.

    Items that are never a training target (and the padding item 0) are left out; items are ordered by count, ties
    by id. Returns None when there are fewer than four targets (no quarters to compare).
    """
    counts = np.asarray(target_counts)
    targets = np.flatnonzero(counts[1:] > 0) + 1
    quarter = len(targets) // 4
    if quarter == 0:
        return None
    by_popularity = targets[np.lexsort((targets, -counts[targets]))]
    norms = embedding_weight.detach().float().norm(dim=-1).cpu().numpy()
    return float(norms[by_popularity[:quarter]].mean() / norms[by_popularity[-quarter:]].mean())


def monitored_table(model):
    """The trainable target embedding table that ``model`` declares (``target_embedding_table``), else None.

    A frozen table (embeddings read from a file) cannot collapse and is not monitored.
    """
    name = getattr(type(model), "target_embedding_table", None)
    table = getattr(model, name, None) if name else None
    return table if table is not None and table.weight.requires_grad else None


def target_norm_ratio(model, dataset):
    """The norm ratio of ``model``'s monitored table on the training targets of ``dataset``, or None."""
    table = monitored_table(model)
    return None if table is None else popularity_norm_ratio(table.weight, training_target_counts(dataset))


class CollapseMonitor:
    """After each training epoch, log the norm ratio of a model's target table and warn once if it collapses."""

    def __init__(self, model, threshold):
        if threshold is not None and not (
            isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 < threshold < 1
        ):
            raise ValueError(f"{CONFIG_KEY} must be a number in (0, 1) or ~ (no check), got {threshold!r}")
        self.model = model
        self.threshold = threshold
        self.target_counts = None
        self.warned = False
        self.last_ratio = None

    @torch.no_grad()
    def after_epoch(self, epoch, train_dataset):
        """Measure the ratio on ``train_dataset``'s targets; returns it (None when the model is not monitored)."""
        table = monitored_table(self.model)
        if table is None or self.threshold is None:
            return None
        if self.target_counts is None:
            self.target_counts = training_target_counts(train_dataset)
        ratio = popularity_norm_ratio(table.weight, self.target_counts)
        if ratio is None:
            return None
        self.last_ratio = ratio
        logger = getLogger()
        logger.info(f"epoch {epoch}: target embedding norm ratio (most / least popular quarter) {ratio:.3f}")
        if ratio < self.threshold and not self.warned:
            self.warned = True
            logger.warning(
                f"{type(self.model).__name__}: embedding collapse: after epoch {epoch} the mean item-embedding norm "
                f"of the most popular quarter of training targets is {ratio:.3f} of the least popular quarter's "
                f"(warning below {CONFIG_KEY}={self.threshold}); inner-product scores now favour rare items. "
                "Try --detach_target=True (no gradient through the target embedding) or frozen item embeddings "
                "from --item_emb_path=<file.npy>."
            )
        return ratio
