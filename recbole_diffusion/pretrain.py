"""Pretrained embeddings for the models that need them (L-DiffRec's item clusters, DDRM's backbone, ADRec's item
table), and k-means clusters of items on them.

:func:`pretrained_embeddings` returns user and item embeddings of a RecBole LightGCN (or MF) trained with BPR on
the model's own training split, inside the same command: from a given file, else from a cache under
``checkpoint_dir``, else by training and caching. A given file is checked against the dataset's counts.
:func:`pretrained_next_item_embeddings` returns the item table of a causal Transformer trained to predict the next
item at every position of the training histories (ADRec's pretraining stage), cached the same way.
"""

import copy
import hashlib
import math
import os
from logging import getLogger

import numpy as np
import torch
from recbole.data.interaction import Interaction
from scipy.cluster.vq import kmeans2
from torch import nn

from recbole_diffusion.validation import ConfigError, is_int, number, one_of, positive_int

BACKBONES = ("LightGCN", "MF")


def _fingerprint(dataset):
    """A short hash of the training interactions, so that a cache never serves another split."""
    digest = hashlib.sha1()
    for field in (dataset.uid_field, dataset.iid_field):
        digest.update(dataset.inter_feat[field].numpy().astype(np.int64).tobytes())
    return digest.hexdigest()[:12]


def check_pretrain_config(config):
    """Check the ``pretrain_*`` keys of :func:`pretrained_embeddings`."""
    one_of("pretrain_backbone", config["pretrain_backbone"], BACKBONES)
    positive_int("pretrain_embedding_size", config["pretrain_embedding_size"])
    if not (is_int(config["pretrain_n_layers"]) and config["pretrain_n_layers"] >= 0):
        raise ConfigError("pretrain_n_layers", "an int >= 0", config["pretrain_n_layers"])
    positive_int("pretrain_epochs", config["pretrain_epochs"])
    number("pretrain_learning_rate", config["pretrain_learning_rate"], 0, low_open=True)
    positive_int("pretrain_batch_size", config["pretrain_batch_size"])


def load_embedding_file(path, n_rows, what="item"):
    """Load a ``.npy`` embedding matrix with ``n_rows - 1`` rows (no padding row, the official DiffRec format) or
    ``n_rows`` rows (padding row 0 included); returns ``[n_rows, d]`` float32 with row 0 zero."""
    if not os.path.isfile(path):
        raise ConfigError(f"{what}_emb_path", f"an existing .npy {what} embedding file", str(path))
    matrix = torch.from_numpy(np.asarray(np.load(path, allow_pickle=False), dtype=np.float32))
    if matrix.dim() != 2 or matrix.size(0) not in (n_rows - 1, n_rows):
        raise ConfigError(
            f"{what}_emb_path",
            f"a .npy {what} embedding file of shape [{n_rows - 1}, d] (one row per {what} in RecBole's internal id "
            f"order 1..{n_rows - 1}) or [{n_rows}, d] with padding row 0",
            f"{path} of shape {tuple(matrix.shape)}",
        )
    if matrix.size(0) == n_rows - 1:
        matrix = torch.cat([matrix.new_zeros(1, matrix.size(1)), matrix])
    return matrix


def whiten_embeddings(rows, epsilon=1e-7):
    """``rows`` ``[n, d]`` centred, rotated onto the eigenvectors of their covariance and each coordinate divided by
    ``sqrt(eigenvalue + epsilon)`` (PreferDiff's whitening of text embeddings): the result has zero mean and, where
    the rows span ``d`` dimensions, identity covariance. Computed in float64, returned in the dtype of ``rows``."""
    centred = rows.double() - rows.double().mean(dim=0)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(centred.T))
    return (centred @ eigenvectors / torch.sqrt(eigenvalues + epsilon)).to(rows.dtype)


def _train_backbone(config, dataset, backbone, embedding_size, epochs, learning_rate, batch_size):
    """Train RecBole's LightGCN (or a plain MF) with BPR and uniform negatives on ``dataset``: (users, items)."""
    from recbole.model.general_recommender import LightGCN

    with torch.random.fork_rng(devices=[]):  # the caller's random state is the same whether a cache exists or not
        torch.manual_seed(config["seed"])
        return _train_backbone_seeded(
            config, dataset, backbone, embedding_size, epochs, learning_rate, batch_size, LightGCN
        )


def _train_backbone_seeded(config, dataset, backbone, embedding_size, epochs, learning_rate, batch_size, LightGCN):
    backbone_config = copy.copy(config)
    backbone_config.final_config_dict = {
        **config.final_config_dict,
        "model": backbone,
        "embedding_size": embedding_size,
        "n_layers": config["pretrain_n_layers"] if backbone == "LightGCN" else 0,
        "reg_weight": 1e-4,
        "require_pow": False,
    }
    model = LightGCN(backbone_config, dataset).to(config["device"])  # MF is LightGCN with 0 layers
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    users = dataset.inter_feat[dataset.uid_field].to(config["device"])
    items = dataset.inter_feat[dataset.iid_field].to(config["device"])
    generator = torch.Generator(device="cpu").manual_seed(config["seed"])
    logger = getLogger()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(users), generator=generator).to(users.device)
        negatives = torch.randint(1, dataset.item_num, (len(users),), generator=generator).to(users.device)
        total = 0.0
        for start in range(0, len(users), batch_size):
            index = order[start : start + batch_size]
            batch = Interaction(
                {model.USER_ID: users[index], model.ITEM_ID: items[index], model.NEG_ITEM_ID: negatives[index]}
            )
            optimizer.zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizer.step()
            total += loss.item()
        if epoch % 10 == 0 or epoch == epochs - 1:
            logger.info(f"{backbone} pretraining epoch {epoch}: BPR loss {total:.4f}")
    model.eval()
    with torch.no_grad():
        user_embeddings, item_embeddings = model.forward()
    return user_embeddings.cpu(), item_embeddings.cpu()


def pretrained_embeddings(config, dataset, item_file=None, user_file=None):
    """User and item embeddings ``([n_users, d], [n_items, d])`` of a collaborative backbone on ``dataset``.

    Config keys: ``pretrain_backbone`` (LightGCN or MF), ``pretrain_embedding_size``, ``pretrain_n_layers``,
    ``pretrain_epochs``, ``pretrain_learning_rate``, ``pretrain_batch_size``, ``checkpoint_dir``, ``seed``.
    ``item_file`` / ``user_file``: ``.npy`` files to use instead (validated against the counts); a missing user file
    leaves the user embeddings None.
    """
    if item_file:
        item_embeddings = load_embedding_file(item_file, dataset.item_num, "item")
        user_embeddings = load_embedding_file(user_file, dataset.user_num, "user") if user_file else None
        return user_embeddings, item_embeddings
    backbone = config["pretrain_backbone"]
    settings = [
        config[key]
        for key in (
            "pretrain_embedding_size",
            "pretrain_n_layers",
            "pretrain_epochs",
            "pretrain_learning_rate",
            "pretrain_batch_size",
            "seed",
        )
    ]
    name = "-".join([dataset.dataset_name, backbone, *map(str, settings), _fingerprint(dataset)]) + ".pth"
    cache = os.path.join(config["checkpoint_dir"], name)
    if os.path.isfile(cache):
        saved = torch.load(cache, weights_only=True)
        getLogger().info(f"Loaded pretrained {backbone} embeddings from {cache}")
        return saved["user"], saved["item"]
    user_embeddings, item_embeddings = _train_backbone(
        config,
        dataset,
        backbone,
        config["pretrain_embedding_size"],
        config["pretrain_epochs"],
        config["pretrain_learning_rate"],
        config["pretrain_batch_size"],
    )
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    torch.save({"user": user_embeddings, "item": item_embeddings}, cache)
    getLogger().info(f"Saved pretrained {backbone} embeddings to {cache}")
    return user_embeddings, item_embeddings


def cluster_items(config, item_embeddings, n_clusters):
    """k-means (k-means++ seeding, seeded by ``config["seed"]``) of items ``1..n`` into ``n_clusters`` clusters;
    returns ``[n_items]`` cluster ids with -1 for the padding item 0."""
    points = item_embeddings[1:].double().numpy()
    if n_clusters == 1:
        labels = np.zeros(len(points), dtype=np.int64)
    else:
        _, labels = kmeans2(points, n_clusters, minit="++", seed=np.random.default_rng(config["seed"]))
    sizes = np.bincount(labels, minlength=n_clusters)
    if (sizes == 0).any():
        raise ValueError(f"k-means left a cluster empty (sizes {sizes.tolist()}); use a smaller n_cate")
    return torch.cat([torch.tensor([-1]), torch.from_numpy(labels).long()])


def check_next_item_pretrain_config(config):
    """Check the ``pretrain_*`` keys of :func:`pretrained_next_item_embeddings`."""
    positive_int("pretrain_epochs", config["pretrain_epochs"])
    number("pretrain_learning_rate", config["pretrain_learning_rate"], 0, low_open=True)
    positive_int("pretrain_batch_size", config["pretrain_batch_size"])


class NextItemTransformer(nn.Module):
    """ADRec's pretraining network (the official ``--model pretrain``): item embeddings, LayerNorm, dropout and a
    :class:`~recbole_diffusion.model.layers.CausalTransformer`, no position embeddings; every weight matrix
    ``N(0, 0.1)``, biases 0. The padding row 0 gets gradients only through the scores, not through the lookups; it
    starts ``N(0, 0.1)`` under ``left_padding`` (the official table: its histories are left-padded, so every item
    attends to it) and zero otherwise. ``loss(item_seq, targets)`` is the cross-entropy of the next item at every
    position whose target is not padding."""

    def __init__(self, config, n_items):
        super().__init__()
        from recbole_diffusion.model.layers import CausalTransformer

        hidden_size = config["hidden_size"]
        self.item_embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
        self.layer_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(config["emb_dropout_prob"])
        self.transformer = CausalTransformer(
            hidden_size,
            config["n_layers"],
            config["n_heads"],
            config["inner_size"],
            config["hidden_dropout_prob"],
            config["layer_norm_eps"],
        )
        for name, parameter in self.named_parameters():
            if parameter.dim() == 2:
                nn.init.normal_(parameter, std=0.1)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(parameter)
        if not config["left_padding"]:
            with torch.no_grad():
                self.item_embedding.weight[0].zero_()

    def loss(self, item_seq, targets):
        hidden = self.transformer(self.dropout(self.layer_norm(self.item_embedding(item_seq))))
        real = targets > 0
        return nn.functional.cross_entropy(hidden[real] @ self.item_embedding.weight.t(), targets[real])


def pretrained_next_item_embeddings(config, dataset):
    """The item table ``[n_items, hidden_size]`` of a :class:`NextItemTransformer` trained on ``dataset``'s training
    rows (``item_id_list``, ``item_length``, ``item_id``) for ``pretrain_epochs`` epochs: Adam with
    ``pretrain_learning_rate`` and ``weight_decay``, batches of ``pretrain_batch_size`` rows, the learning rate
    annealed per epoch over ``lr_cosine_epochs`` (when set) as in ADRec's official loop; rows left-aligned under
    ``left_padding``. Cached under ``checkpoint_dir`` by settings and training data; the caller's random state is
    left as it was."""
    from recbole_diffusion.model.layers import left_aligned, next_item_targets

    keys = (
        "hidden_size",
        "n_layers",
        "n_heads",
        "inner_size",
        "hidden_dropout_prob",
        "emb_dropout_prob",
        "layer_norm_eps",
        "pretrain_epochs",
        "pretrain_learning_rate",
        "pretrain_batch_size",
        "weight_decay",
        "lr_cosine_epochs",
        "MAX_ITEM_LIST_LENGTH",
        "left_padding",
        "seed",
    )
    name = "-".join([dataset.dataset_name, "NextItem", *(str(config[key]) for key in keys), _fingerprint(dataset)])
    cache = os.path.join(config["checkpoint_dir"], name + ".pth")
    if os.path.isfile(cache):
        getLogger().info(f"Loaded pretrained next-item embeddings from {cache}")
        return torch.load(cache, weights_only=True)
    features = dataset.inter_feat
    list_field = dataset.iid_field + config["LIST_SUFFIX"]
    item_seq = features[list_field].to(config["device"])
    lengths = features[config["ITEM_LIST_LENGTH_FIELD"]].to(config["device"])
    targets = next_item_targets(item_seq, lengths, features[dataset.iid_field].to(config["device"]))
    if config["left_padding"]:
        item_seq, targets = left_aligned(item_seq, lengths), left_aligned(targets, lengths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        network = NextItemTransformer(config, dataset.item_num).to(config["device"])
        optimizer = torch.optim.Adam(
            network.parameters(), lr=config["pretrain_learning_rate"], weight_decay=config["weight_decay"]
        )
        generator = torch.Generator(device="cpu").manual_seed(config["seed"])
        batch_size, epochs = config["pretrain_batch_size"], config["pretrain_epochs"]
        period = config["lr_cosine_epochs"]
        network.train()
        for epoch in range(epochs):
            if period:
                for group in optimizer.param_groups:
                    group["lr"] = config["pretrain_learning_rate"] * (1.0 + math.cos(math.pi * epoch / period)) / 2.0
            order = torch.randperm(len(item_seq), generator=generator).to(item_seq.device)
            total = 0.0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = network.loss(item_seq[index], targets[index])
                loss.backward()
                optimizer.step()
                total += loss.item()
            if epoch % 10 == 0 or epoch == epochs - 1:
                getLogger().info(f"next-item pretraining epoch {epoch}: cross-entropy {total:.4f}")
    item_embeddings = network.item_embedding.weight.detach().cpu()
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    torch.save(item_embeddings, cache)
    getLogger().info(f"Saved pretrained next-item embeddings to {cache}")
    return item_embeddings
