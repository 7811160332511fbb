"""Training losses of the denoisers beyond the plain MSE: a cosine regression onto the clean sample, and PreferDiff's
preference loss, which ranks the denoising error of the positive item below that of negative items.

PreferDiff (Liu et al., ICLR 2025) scores one denoising error per batch for the target ``L_pos`` and one for the mean
embedding of negative items ``L_neg`` (both noised at the same steps, under the same guidance) and minimises

    L = -(1 - lambda) * log sigmoid(-gamma * (L_pos - L_neg)) + lambda * L_pos,

a Bradley-Terry (DPO-like) preference for a smaller error on the positive, plus the plain regression loss.
"""

import torch
import torch.nn.functional as F

REGRESSION_LOSSES = ("cosine", "l2")


def cosine_regression_loss(prediction, target):
    """``mean((cos(prediction, target) - 1) ** 2)`` over the rows (last dimension: the vector): zero when every
    prediction points along its target, whatever its length."""
    return ((F.cosine_similarity(prediction, target, dim=-1) - 1) ** 2).mean()


def regression_loss(prediction, target, loss_type):
    """The batch mean of the regression loss ``loss_type`` (one of :data:`REGRESSION_LOSSES`): ``cosine``
    (:func:`cosine_regression_loss`) or ``l2`` (the mean squared error over every entry)."""
    if loss_type == "cosine":
        return cosine_regression_loss(prediction, target)
    if loss_type == "l2":
        return F.mse_loss(prediction, target)
    raise ValueError(f"loss_type must be one of {REGRESSION_LOSSES}, got {loss_type!r}")


def preference_loss(positive_loss, negative_loss, gamma, regression_weight):
    """PreferDiff's loss from the denoising errors of the positives and the negatives (see the module docstring):
    ``gamma`` scales the error difference inside the log-sigmoid, ``regression_weight`` (the paper's lambda, in
    [0, 1]) splits the weight between the preference term and the positive regression term."""
    preference = -F.logsigmoid(-gamma * (positive_loss - negative_loss))
    return (1 - regression_weight) * preference + regression_weight * positive_loss


def in_batch_negative_mean(embeddings):
    """Per row of ``embeddings`` ``[B, d]``, the mean of the *other* rows (PreferDiff's in-batch negatives: every other
    target of the batch, duplicates of the row's own item included): ``[B, d]``. Needs ``B >= 2``."""
    batch_size = embeddings.size(0)
    if batch_size < 2:
        raise ValueError(f"in-batch negatives need a batch of at least 2 rows, got {batch_size}")
    return (embeddings.sum(dim=0, keepdim=True) - embeddings) / (batch_size - 1)


def sampled_in_batch_negative_mean(embeddings, n_negatives, generator=None):
    """Per row of ``embeddings`` ``[B, d]``, the mean of ``min(n_negatives, B - 1)`` other rows drawn uniformly
    without replacement (PreferDiff's ``random`` negatives): ``[B, d]``. Needs ``B >= 2``."""
    batch_size = embeddings.size(0)
    if batch_size < 2:
        raise ValueError(f"in-batch negatives need a batch of at least 2 rows, got {batch_size}")
    keys = torch.rand(batch_size, batch_size, generator=generator, device=embeddings.device)
    keys.fill_diagonal_(torch.inf)  # a row never draws itself
    chosen = keys.topk(min(n_negatives, batch_size - 1), dim=1, largest=False).indices
    return embeddings[chosen].mean(dim=1)
