"""L-DiffRec and LT-DiffRec.

Reference:
    Wenjie Wang, Yiyan Xu, Fuli Feng, Xinyu Lin, Xiangnan He, Tat-Seng Chua.
    "Diffusion Recommender Model." SIGIR 2023 (Section 3.5, L-DiffRec). Official code: YiyanXu/DiffRec.

Items are clustered by k-means on collaborative item embeddings (from ``item_emb_path``, else from a LightGCN that
is trained on the same training split inside the command and cached, see ``recbole_diffusion.pretrain``).
One VAE encoder per cluster compresses the user's interactions with that cluster's items into a latent part whose
size is proportional to the cluster; DiffRec's diffusion (``DiffRec``: importance-sampled steps, SNR-weighted MSE,
mean-only reverse chain from the history) runs on the concatenated latent; one decoder per cluster maps the
denoised latent part back to the cluster's items. Loss: ``lamda * diffusion + (multinomial NLL + beta * KL)``
(``diffusion + lamda * VAE`` when ``reweight`` is off), with ``lamda`` annealed from ``lamda`` down to
``anneal_cap`` over ``anneal_steps`` epochs and ``beta`` up to ``vae_anneal_cap`` over ``vae_anneal_steps``
updates, as in the official code. LT-DiffRec (``LTDiffRec``) feeds T-DiffRec's time-aware weights instead of ones.

Config keys (defaults and comments in ``properties/model/LDiffRec.yaml``; the pretrain_* keys are read by
``recbole_diffusion.pretrain``), besides those of DiffRec:
    n_cate, in_dims, ae_act_func, ae_dropout, reparam, lamda, anneal_cap, anneal_steps, vae_anneal_cap,
    vae_anneal_steps, item_emb_path, train_batch_size, pretrain_backbone, pretrain_embedding_size,
    pretrain_n_layers, pretrain_epochs, pretrain_learning_rate, pretrain_batch_size; LTDiffRec also w_min, w_max.

Differences from the official code: each cluster has its own decoder (the paper's design; the official code's
default ``out_dims: []`` decodes the whole latent with one shared linear layer); the VAE reconstructs the clean
interaction vector (the official code scores against the dropped-out encoder input); k-means is scipy's
``kmeans2`` with k-means++ seeding (official: kmeans_pytorch); one optimizer and learning rate for all weights
(official: separate Adam(W) learning rates for the autoencoder and the denoiser); the item embeddings are trained
by the plugin when no file is given (official: a hand-made ``item_emb.npy``).
"""

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from recbole_diffusion.model.general_recommender.diffrec import DiffRec
from recbole_diffusion.model.general_recommender.time_aware import TimeAwareHistory
from recbole_diffusion.model.layers import ACTIVATIONS
from recbole_diffusion.pretrain import check_pretrain_config, cluster_items, pretrained_embeddings
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import ConfigError, boolean, is_int, number, one_of, positive_int, probability


def _mlp(sizes, activation, last_activation):
    layers = []
    for index, (size_in, size_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(size_in, size_out))
        if last_activation or index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@register_model
class LDiffRec(DiffRec):
    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        super().check_config(config)
        n_cate = positive_int("n_cate", config["n_cate"])
        in_dims = config["in_dims"]
        if not (isinstance(in_dims, list) and in_dims and all(is_int(size) and size >= n_cate for size in in_dims)):
            raise ConfigError("in_dims", f"a non-empty list of ints >= n_cate ({n_cate})", in_dims)
        one_of("ae_act_func", config["ae_act_func"], tuple(ACTIVATIONS))
        probability("ae_dropout", config["ae_dropout"])
        boolean("reparam", config["reparam"])
        for key in ("lamda", "anneal_cap", "anneal_steps", "vae_anneal_cap", "vae_anneal_steps"):
            number(key, config[key], 0)
        check_pretrain_config(config)

    def __init__(self, config, dataset):
        self.n_cate = config["n_cate"]
        self.in_dims = config["in_dims"]
        self.ae_act_func = config["ae_act_func"]
        self.ae_dropout = config["ae_dropout"]
        self.reparam = config["reparam"]
        self.lamda = config["lamda"]
        self.anneal_cap = config["anneal_cap"]
        self.anneal_steps = config["anneal_steps"]
        self.vae_anneal_cap = config["vae_anneal_cap"]
        self.vae_anneal_steps = config["vae_anneal_steps"]
        super().__init__(config, dataset)

        _, item_embeddings = pretrained_embeddings(config, dataset, item_file=config["item_emb_path"])
        self.register_buffer("item_cluster", cluster_items(config, item_embeddings, self.n_cate))
        self.cluster_items = [
            torch.nonzero(self.item_cluster == c).flatten().to(self.device) for c in range(self.n_cate)
        ]
        self.latent_sizes = self.cluster_latent_sizes([len(items) for items in self.cluster_items])
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for items, sizes in zip(self.cluster_items, self.latent_sizes):
            # in_dims list the sizes from the latent outward (official): [latent, hidden] -> items -> hidden -> latent
            self.encoders.append(_mlp([len(items)] + sizes[::-1][:-1] + [2 * sizes[0]], self.ae_act_func, True))
            self.decoders.append(_mlp(sizes + [len(items)], self.ae_act_func, False))
        for module in [*self.encoders.modules(), *self.decoders.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)
        self.input_dropout = nn.Dropout(self.ae_dropout)
        self.batches_per_epoch = math.ceil(dataset.user_num / config["train_batch_size"])
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def diffused_size(self):
        return self.in_dims[0]

    def cluster_latent_sizes(self, cluster_sizes):
        """Per cluster, the encoder sizes ``in_dims`` scaled by the cluster's share of items (at least 1 each); the
        last cluster takes the remainder, so the latent parts add up to ``in_dims``."""
        n_items = sum(cluster_sizes)
        sizes = [[max(1, int(count / n_items * size)) for size in self.in_dims] for count in cluster_sizes[:-1]]
        sizes.append([size - sum(part[j] for part in sizes) for j, size in enumerate(self.in_dims)])
        if min(sizes[-1]) < 1:
            raise ValueError(f"in_dims {self.in_dims} are too small for {self.n_cate} clusters")
        return sizes

    def encode(self, x):
        """Per-cluster VAE encoders: the latent (sampled in training when ``reparam``, else the mean) and the KL."""
        x = self.input_dropout(x)
        means, log_variances = [], []
        for encoder, items, sizes in zip(self.encoders, self.cluster_items, self.latent_sizes):
            hidden = encoder(x[:, items])
            means.append(hidden[:, : sizes[0]])
            log_variances.append(hidden[:, sizes[0] :])
        mean, log_variance = torch.cat(means, dim=-1), torch.cat(log_variances, dim=-1)
        latent = mean
        if self.training and self.reparam:
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum(dim=-1).mean()
        return latent, kl

    def decode(self, latent):
        """Per-cluster decoders back to scores over all items, ``[batch, n_items]`` (padding item 0 at -inf)."""
        scores = latent.new_full((latent.size(0), self.n_items), -torch.inf)
        parts = latent.split([sizes[0] for sizes in self.latent_sizes], dim=-1)
        for decoder, items, part in zip(self.decoders, self.cluster_items, parts):
            scores[:, items] = decoder(part)
        return scores

    def annealed_weights(self):
        """``lamda`` (annealed per epoch down to anneal_cap) and the KL weight ``beta`` (per update up to the cap)."""
        updates = int(self.num_updates)
        epoch = updates // self.batches_per_epoch
        if self.anneal_steps > 0:
            lamda = max((1.0 - epoch / self.anneal_steps) * self.lamda, self.anneal_cap)
        else:
            lamda = max(self.lamda, self.anneal_cap)
        beta = (
            min(self.vae_anneal_cap, updates / self.vae_anneal_steps)
            if self.vae_anneal_steps > 0
            else self.vae_anneal_cap
        )
        return lamda, beta

    def calculate_loss(self, interaction):
        x = self.forward(interaction[self.USER_ID])
        latent, kl = self.encode(x)
        diffusion_loss, latent_prediction = self.diffusion_loss(latent)
        log_probabilities = F.log_softmax(self.decode(latent_prediction)[:, 1:], dim=-1)
        reconstruction = -(log_probabilities * x[:, 1:]).sum(dim=-1).mean()
        lamda, beta = self.annealed_weights()
        self.num_updates += 1
        vae_loss = reconstruction + beta * kl
        if self.reweight:
            return lamda * diffusion_loss.mean() + vae_loss
        return diffusion_loss.mean() + lamda * vae_loss

    def full_sort_predict(self, interaction):
        latent, _ = self.encode(self.forward(interaction[self.USER_ID]))
        return self.decode(self.generate(latent))


@register_model
class LTDiffRec(TimeAwareHistory, LDiffRec):
    """LT-DiffRec: L-DiffRec over T-DiffRec's time-aware interaction weights (needs a timestamp field)."""
