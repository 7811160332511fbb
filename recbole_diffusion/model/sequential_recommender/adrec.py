"""ADRec.

Reference:
    Jialei Chen, Yuanbo Xu, Yiheng Jiang. "Unlocking the Power of Diffusion Models in Sequential Recommendation: A
    Simple and Effective Approach." KDD 2025 (arXiv 2505.19544). Official code: Nemo-1024/ADRec.

Token-level, auto-regressive diffusion. A causal Transformer encodes the history into a representation ``r_i`` per
position. Every position's next item is diffused on its own: its embedding ``e_i`` is noised to ``x_i`` at its own
step ``t_i``, and a causal Transformer denoiser predicts ``e_i`` from ``r_i + lambda (x_i + d(t_i))`` (``lambda =
lambda_uncertainty``, ``d`` the step embedding). Training: the mean of the cross-entropy of the predictions against
all items and ``mse_weight`` times their mean squared error to the target embeddings (the official code averages
the two gradients). Staged training against embedding collapse: the item table starts from a pretrained next-item
Transformer and stays frozen for the first ``freeze_epochs`` epochs (warm-up), then everything trains. Inference:
the earlier positions get their known next items, clean at step 0; only the last position runs the reverse chain
(DDPM with the "fixed large" variance, as DiffuRec) from noise; its ``x_0`` scores every item by inner product.

Two flaws of the official code are kept by default and each can be fixed (measured in ``benchmarks/parity``):
``left_padding: True`` (official) left-pads the histories, so through the causal attention every real item attends
to the padding before it, whose row of the item table starts as the pretraining's ``N(0, 0.1)`` row (with an
``item_emb_path`` file, its row 0, zero when it has none) and, as officially, gets gradients only through the scores;
``False`` (ours) keeps RecBole's right padding, so no real item sees padding, and zeroes the padding row.
``warmup_weight_decay: True`` (official) gives the "frozen" table a zero gradient during the warm-up, so Adam's
weight decay still moves it (each entry about one learning rate towards zero per step, and Adam's moments start
there); ``False`` (ours) freezes it.

Config keys (defaults and comments in ``properties/model/ADRec.yaml``; the pretrain_* keys are read by
``recbole_diffusion.pretrain``):
    hidden_size, n_layers, denoiser_layers, n_heads, inner_size, hidden_dropout_prob, emb_dropout_prob,
    layer_norm_eps, diffusion_steps, beta_schedule, lambda_uncertainty, mse_weight, freeze_epochs,
    warmup_weight_decay, left_padding, item_emb_path, pretrain_epochs, pretrain_learning_rate, pretrain_batch_size,
    train_batch_size, inference_steps, valid_inference_steps, ddim_eta; the trainer reads lr_cosine_epochs (the
    official cosine annealing).

Differences from the official code: the pretraining runs inside the command for a fixed ``pretrain_epochs`` (the
official one is a separate run that stops early on validation), cached under ``checkpoint_dir``; the step
embedding is the plugin's sinusoidal one (sin before cos) of the step rescaled by ``1000 / T``; attention biases
start at zero; the padding item is never recommended. The warm-up counts training batches (``freeze_epochs`` x
batches per epoch of the training split the model is built on), so it also holds under RecBole's own trainer. The
plugin trains on one row per user, the longest prefix (:class:`recbole_diffusion.data.LastPrefixDataset`, the
official data); plain RecBole gives one row per prefix. Parity with the official code: ``benchmarks/parity/README.md``.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.data import LastPrefixDataset
from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.model.layers import (
    CausalTransformer,
    check_attention_sizes,
    left_aligned,
    next_item_targets,
    sinusoidal_embedding,
)
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.pretrain import (
    check_next_item_pretrain_config,
    load_embedding_file,
    pretrained_next_item_embeddings,
)
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import ConfigError, is_int, number, positive_int, probability

BETA_SCHEDULES = ("trunc_linear", "linear", "cosine", "sqrt", "trunc_cosine")


class NextItemCondition(NamedTuple):
    """A history as ADRec's condition: ``hidden`` ``[batch, length, hidden]`` (the encoder's output), ``next_items``
    ``[batch, length, hidden]`` (the embedding of each position's known next item, zero from the last position on)
    and ``last_position`` ``[batch]``, whose next item is generated."""

    hidden: torch.Tensor
    next_items: torch.Tensor
    last_position: torch.Tensor


@register_model
class ADRec(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE
    dataset_class = LastPrefixDataset
    target_embedding_table = "item_embedding"  # what the MSE regresses onto: checked for collapse

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        check_attention_sizes(config)
        hidden_size = config["hidden_size"]
        if hidden_size < 4 or hidden_size % 2:
            raise ConfigError("hidden_size", "an even int >= 4 (sinusoidal step embedding)", hidden_size)
        positive_int("denoiser_layers", config["denoiser_layers"])
        probability("hidden_dropout_prob", config["hidden_dropout_prob"])
        probability("emb_dropout_prob", config["emb_dropout_prob"])
        check_betas_config(config, BETA_SCHEDULES, variant="diffurec")
        number("lambda_uncertainty", config["lambda_uncertainty"], 0, low_open=True)
        number("mse_weight", config["mse_weight"], 0)
        if not (is_int(config["freeze_epochs"]) and config["freeze_epochs"] >= 0):
            raise ConfigError("freeze_epochs", "an int >= 0 (epochs with a frozen item table)", config["freeze_epochs"])
        for key in ("warmup_weight_decay", "left_padding"):
            if not isinstance(config[key], bool):
                raise ConfigError(key, "True (official) or False", config[key])
        number("ddim_eta", config["ddim_eta"], 0)
        check_next_item_pretrain_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.lambda_uncertainty = config["lambda_uncertainty"]
        self.mse_weight = config["mse_weight"]
        self.ddim_eta = config["ddim_eta"]
        self.warmup_weight_decay = config["warmup_weight_decay"]
        self.left_padding = config["left_padding"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(config["emb_dropout_prob"])
        self.history_norm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        step_width = 4 * self.hidden_size
        self.step_mlp = nn.Sequential(
            nn.Linear(self.hidden_size, step_width), nn.SiLU(), nn.Linear(step_width, self.hidden_size)
        )
        sizes = (config["n_heads"], config["inner_size"], config["hidden_dropout_prob"], config["layer_norm_eps"])
        self.encoder = CausalTransformer(self.hidden_size, config["n_layers"], *sizes)
        self.denoiser = CausalTransformer(self.hidden_size, config["denoiser_layers"], *sizes)
        self.diffusion = diffusion_from_config(config, "diffurec", variance_type="fixed_large")
        self.init_sampling(config)

        if config["item_emb_path"]:
            pretrained = load_embedding_file(config["item_emb_path"], self.n_items, "item")
            if pretrained.size(1) != self.hidden_size:
                raise ConfigError(
                    "item_emb_path", f"a file of hidden_size ({self.hidden_size}) columns", config["item_emb_path"]
                )
        else:
            pretrained = pretrained_next_item_embeddings(config, dataset)
        self.item_embedding.weight.data.copy_(pretrained)
        if not self.left_padding:
            self.item_embedding.weight.data[0].zero_()
        batches_per_epoch = math.ceil(len(dataset) / config["train_batch_size"])
        self.frozen_batches = config["freeze_epochs"] * batches_per_epoch
        self.register_buffer("trained_batches", torch.zeros((), dtype=torch.long))

    def item_table(self):
        """The item embeddings; during the warm-up no gradient of the loss reaches them (under
        ``warmup_weight_decay`` a zero one does, so that the optimizer's weight decay still applies)."""
        weight = self.item_embedding.weight
        if self.training and self.trained_batches < self.frozen_batches:
            return weight.detach() + 0 * weight if self.warmup_weight_decay else weight.detach()
        return weight

    def aligned_rows(self, item_seq, item_seq_len, last_items):
        """The history, the next item of each of its positions (``last_items`` at the last) and the last position,
        left-aligned under ``left_padding``."""
        next_items = next_item_targets(item_seq, item_seq_len, last_items)
        if not self.left_padding:
            return item_seq, next_items, item_seq_len - 1
        last_position = torch.full_like(item_seq_len, item_seq.size(1) - 1)
        return left_aligned(item_seq, item_seq_len), left_aligned(next_items, item_seq_len), last_position

    def forward(self, item_seq, item_seq_len):
        """The condition: the encoded history and the known next item of every position before the last."""
        table = self.item_table()
        history, known, last_position = self.aligned_rows(item_seq, item_seq_len, torch.zeros_like(item_seq_len))
        hidden = self.encoder(self.history_norm(self.emb_dropout(F.embedding(history, table, padding_idx=0))))
        return NextItemCondition(hidden, F.embedding(known, table, padding_idx=0), last_position)

    def denoise(self, x_t, timesteps, condition):
        """Predict every position's next-item embedding from its noised version ``x_t`` at its steps ``timesteps``
        ``[batch, length]``."""
        rescaled = self.diffusion.rescaled_timesteps(timesteps).flatten()
        step = self.step_mlp(sinusoidal_embedding(rescaled, self.hidden_size)).view_as(x_t)
        return self.denoiser(condition.hidden + self.lambda_uncertainty * (x_t + step))

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        condition = self.forward(item_seq, item_seq_len)
        table = self.item_table()
        if self.training:
            self.trained_batches += 1
        _, targets, _ = self.aligned_rows(item_seq, item_seq_len, interaction[self.POS_ITEM_ID])
        real = targets > 0
        target_embedding = F.embedding(targets, table, padding_idx=0)
        timesteps = self.diffusion.sample_timesteps(targets.numel(), targets.device).view_as(targets) * real
        noisy = self.diffusion.q_sample(target_embedding.flatten(0, 1), timesteps.flatten()).view_as(target_embedding)
        noisy = torch.where(real.unsqueeze(-1), noisy, target_embedding)
        predicted = self.denoise(noisy, timesteps, condition)
        position_weights = real / real.sum(dim=1, keepdim=True)
        mse = ((predicted - target_embedding) ** 2 * position_weights.unsqueeze(-1)).sum(dim=1).mean()
        cross_entropy = F.cross_entropy(predicted[real] @ table.t(), targets[real])
        return (cross_entropy + self.mse_weight * mse) / 2

    @torch.no_grad()
    def generate(self, condition, num_inference_steps=None):
        """Run the reverse chain at the last position to its next-item embedding ``x_0``, ``[batch, hidden]``."""
        rows = torch.arange(len(condition.last_position), device=condition.last_position.device)
        length = condition.hidden.size(1)

        def denoise_last(x_last, t):
            x_t = condition.next_items.clone()
            x_t[rows, condition.last_position] = x_last
            timesteps = torch.zeros(len(rows), length, dtype=torch.long, device=x_last.device)
            timesteps[rows, condition.last_position] = t
            return self.denoise(x_t, timesteps, condition)[rows, condition.last_position]

        return self.diffusion.sample(
            denoise_last,
            (len(rows), self.hidden_size),
            condition.hidden.device,
            num_inference_steps=self.sampler_steps(num_inference_steps),
            eta=self.ddim_eta,
        )

    def predict(self, interaction, num_inference_steps=None):
        condition = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        predicted = self.generate(condition, num_inference_steps)
        return (predicted * self.item_embedding(interaction[self.ITEM_ID])).sum(dim=-1)

    def full_sort_predict(self, interaction, num_inference_steps=None):
        condition = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return without_padding_item(self.generate(condition, num_inference_steps) @ self.item_embedding.weight.t())
