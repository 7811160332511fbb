"""DiffuASR.

Reference:
    Qidong Liu, Fan Yan, Xiangyu Zhao, Zhaocheng Du, Huifeng Guo, Ruiming Tang, Feng Tian.
    "Diffusion Augmentation for Sequential Recommendation." CIKM 2023.
    Official code: liuqidong07/DiffuASR.

DiffuASR does not recommend by itself: it augments the training data of another sequential model (the
``backbone``, SASRec by default, any RecBole or plugin sequential model). Stage 1 trains a diffusion model that
generates ``aug_num`` (M) pseudo items placed *before* a user's first interaction: the M items are embedded as an
``[M, d]`` "image" of M channels of size ``sqrt(d) x sqrt(d)``, noised, and a sequential U-Net predicts the noise,
guided by the sum of the embeddings of the rest of the sequence (added to the step embedding). Training pairs come
from training sequences of more than M + 2 items: their first M items are the target, the rest the guidance.
Generation (DDIM, ``inference_steps``) is guided by the whole training sequence; each generated embedding is
rounded to the real item of highest cosine similarity, and the M items are prepended to the user's history.
Stage 2 trains and evaluates the backbone on the augmented data through the usual quick start.

This class is the stage-1 network (``calculate_loss`` is the denoising loss, ``full_sort_predict`` the cosine
rounding scores of the pseudo item right before the history); as a :class:`recbole_diffusion.two_stage.TwoStageModel`
it tells the quick start to run :meth:`DiffuASR.prepare_stage_two` instead of training it as a recommender. The data
plumbing of both stages (training-split sequences, stage-1 loop, generation, atomic files) is in
``recbole_diffusion/diffuasr_augment.py``.

Config keys (defaults and comments in ``properties/model/DiffuASR.yaml``):
    backbone, aug_num, augmented_data_path, hidden_size, unet_channels, unet_channel_mult, unet_res_blocks,
    unet_dropout, guidance_type, cf_training, p_uncond, guidance_weight, diffusion_steps, beta_schedule, beta_start,
    beta_end, inference_steps, ddim_eta, aug_epochs, learning_rate, weight_decay, train_batch_size,
    MAX_ITEM_LIST_LENGTH.

Classifier-free guidance (``guidance_type: cf``) is trained as in the official ``DiffusionModel_CF`` by default
(``cf_training: official``): the noise loss is taken on the guided combination ``cond + w (cond - uncond)``, the
unconditional branch fed a learned null guidance, with the same ``w`` (``guidance_weight``) in training and
sampling. No condition is ever dropped, so the null branch is not an unconditional model and ``w`` is part of the
trained denoiser rather than a sampling knob; it is nevertheless a consistent objective (the sampler uses exactly
what was trained), hence the default. ``cf_training: dropout`` is the textbook alternative (Ho & Salimans): the
U-Net alone is trained, its guidance replaced by the null one with probability ``p_uncond``, and ``w`` mixes the
two outputs only at sampling (one U-Net pass per training step instead of two).

Differences from the official code: only training items ever enter stage 1 (the official generation is also guided
by the validation item); classifier guidance (``cg``, which needs a separately pre-trained BERT4Rec classifier) is
not implemented; the optional ``cf_training: dropout`` above; ``aug_epochs`` 100 by default where the official
scripts train the generator for up to 3,000 epochs (``experiments/diffusion.bash``, stopped once the training loss
has not improved for 100 epochs): 3,000 would be 30 times the stage-1 CPU time (about an hour on ml-100k with
``cf_training: official``, two U-Net passes a step); no EMA of the weights (the official EMA is updated but never
applied) and no early stopping on the training loss; DDIM timesteps are spread from ``T - 1`` to 0 (official: 0,
T/k, ..., (k-1)T/k; swapping the grids moves the ml-100k parity Hit@10 by 0.0004 at most); the guidance is the last
``MAX_ITEM_LIST_LENGTH`` items (official ``max_len`` 200); the generated items precede each user's interactions with
timestamps below the first one, so RecBole's leave-one-out split keeps the same validation and test targets; the
backbone ranks all items (the official downstream evaluation ranks the target among 100 sampled negatives). As in
the official code, item embeddings start from N(0, 1) and are learned by the denoising loss, the training timesteps
come in antithetic pairs ``t``, ``T - 1 - t`` (:meth:`DiffuASR.training_timesteps`), and self-attention sits in the
U-Net's middle only (the official ``attn_resolutions: [16]`` never matches a map of 8 x 8 or less).
"""

import math

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion import diffuasr_augment
from recbole_diffusion.diffuasr_augment import AUG_ITEMS
from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config, drop_condition, guided_output
from recbole_diffusion.model.layers import sinusoidal_embedding
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.two_stage import TwoStageModel, is_two_stage
from recbole_diffusion.utils import get_model, register_model
from recbole_diffusion.validation import ConfigError, is_positive_int, number, one_of, positive_int, probability

GUIDANCE_TYPES = ("cond", "cf")
CF_TRAININGS = ("official", "dropout")


def _norm(channels):
    return nn.GroupNorm(num_groups=8, num_channels=channels, eps=1e-6)


class ResidualBlock(nn.Module):
    """GroupNorm-swish-conv twice, the step (+ guidance) embedding added in between, residual connection."""

    def __init__(self, in_channels, out_channels, embedding_channels, dropout):
        super().__init__()
        self.block1 = nn.Sequential(_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.embedding = nn.Sequential(nn.SiLU(), nn.Linear(embedding_channels, out_channels))
        self.block2 = nn.Sequential(
            _norm(out_channels), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x, embedding):
        hidden = self.block1(x) + self.embedding(embedding)[:, :, None, None]
        return self.shortcut(x) + self.block2(hidden)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the spatial positions, residual."""

    def __init__(self, channels):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        batch, channels, height, width = x.shape
        query, key, value = self.qkv(self.norm(x)).reshape(batch, 3, channels, height * width).unbind(1)
        weights = torch.softmax(query.transpose(1, 2) @ key / math.sqrt(channels), dim=-1)  # [B, HW, HW]
        attended = (value @ weights.transpose(1, 2)).reshape(batch, channels, height, width)
        return x + self.out(attended)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SequentialUNet(nn.Module):
    """The paper's sequential U-Net: the M item embeddings of size d are M channels of a sqrt(d) x sqrt(d) map.

    DDPM's U-Net (residual blocks, attention in the middle, skip connections); the step embedding and the guidance
    vector each pass a two-layer MLP and are summed before entering every residual block.
    """

    def __init__(self, num_items, hidden_size, channels, channel_mult, res_blocks, dropout):
        super().__init__()
        self.channels = channels
        self.resolution = math.isqrt(hidden_size)
        embedding_channels = 4 * channels
        self.step_mlp = nn.Sequential(
            nn.Linear(channels, embedding_channels), nn.SiLU(), nn.Linear(embedding_channels, embedding_channels)
        )
        self.guidance_mlp = nn.Sequential(
            nn.Linear(hidden_size, embedding_channels), nn.SiLU(), nn.Linear(embedding_channels, embedding_channels)
        )
        self.conv_in = nn.Conv2d(num_items, channels, 3, padding=1)
        widths = [channels * mult for mult in channel_mult]
        skip_widths, width = [channels], channels
        self.down = nn.ModuleList()
        for level, level_width in enumerate(widths):
            for _ in range(res_blocks):
                self.down.append(ResidualBlock(width, level_width, embedding_channels, dropout))
                width = level_width
                skip_widths.append(width)
            if level != len(widths) - 1:
                self.down.append(Downsample(width))
                skip_widths.append(width)
        self.mid = nn.ModuleList(
            [
                ResidualBlock(width, width, embedding_channels, dropout),
                AttentionBlock(width),
                ResidualBlock(width, width, embedding_channels, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(res_blocks + 1):
                self.up.append(ResidualBlock(width + skip_widths.pop(), widths[level], embedding_channels, dropout))
                width = widths[level]
            if level != 0:
                self.up.append(Upsample(width))
        self.conv_out = nn.Sequential(_norm(width), nn.SiLU(), nn.Conv2d(width, num_items, 3, padding=1))

    def _run(self, block, hidden, embedding):
        return block(hidden, embedding) if isinstance(block, ResidualBlock) else block(hidden)

    def forward(self, x, timesteps, guidance):
        """``x``: ``[B, M, d]`` noisy item embeddings; returns the predicted noise, same shape."""
        embedding = self.step_mlp(sinusoidal_embedding(timesteps, self.channels)) + self.guidance_mlp(guidance)
        hidden = self.conv_in(x.reshape(x.size(0), x.size(1), self.resolution, self.resolution))
        skips = [hidden]
        for block in self.down:
            hidden = self._run(block, hidden, embedding)
            skips.append(hidden)
        for block in self.mid:
            hidden = self._run(block, hidden, embedding)
        for block in self.up:
            if isinstance(block, ResidualBlock):
                hidden = torch.cat([hidden, skips.pop()], dim=1)
            hidden = self._run(block, hidden, embedding)
        return self.conv_out(hidden).reshape(x.shape)


@register_model
class DiffuASR(ReverseChainSampling, TwoStageModel, SequentialRecommender):
    input_type = InputType.POINTWISE

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads, the backbone and the split; no data needed."""
        backbone = config["backbone"]
        backbone_class = get_model(backbone)
        if is_two_stage(backbone_class) or backbone_class.type != cls.type:
            raise ConfigError("backbone", "a sequential recommender (e.g. SASRec)", backbone)
        diffuasr_augment.check_split(config)
        positive_int("aug_num", config["aug_num"])
        positive_int("aug_epochs", config["aug_epochs"])
        hidden_size = positive_int("hidden_size", config["hidden_size"])
        resolution = math.isqrt(hidden_size)
        if resolution * resolution != hidden_size:
            raise ConfigError("hidden_size", "a perfect square (e.g. 16, 64)", hidden_size)
        channel_mult = config["unet_channel_mult"]
        if not (isinstance(channel_mult, list) and channel_mult and all(map(is_positive_int, channel_mult))):
            raise ConfigError("unet_channel_mult", "a non-empty list of positive ints", channel_mult)
        if resolution % 2 ** (len(channel_mult) - 1):
            raise ConfigError(
                "unet_channel_mult",
                f"at most log2 of sqrt(hidden_size) = {resolution} downsamplings (len - 1)",
                channel_mult,
            )
        channels = config["unet_channels"]
        if not (is_positive_int(channels) and channels % 8 == 0):
            raise ConfigError("unet_channels", "a positive multiple of 8 (GroupNorm of 8 groups)", channels)
        positive_int("unet_res_blocks", config["unet_res_blocks"])
        probability("unet_dropout", config["unet_dropout"])
        one_of("guidance_type", config["guidance_type"], GUIDANCE_TYPES)
        one_of("cf_training", config["cf_training"], CF_TRAININGS)
        probability("p_uncond", config["p_uncond"])
        number("guidance_weight", config["guidance_weight"])
        number("ddim_eta", config["ddim_eta"], 0)
        check_betas_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.aug_num = config["aug_num"]
        self.hidden_size = config["hidden_size"]
        self.guidance_type = config["guidance_type"]
        self.cf_training = config["cf_training"]
        self.p_uncond = config["p_uncond"]
        self.guidance_weight = config["guidance_weight"]
        self.ddim_eta = config["ddim_eta"]
        channels = config["unet_channels"]
        channel_mult = list(config["unet_channel_mult"])
        res_blocks = config["unet_res_blocks"]
        dropout = config["unet_dropout"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.null_guidance = nn.Parameter(torch.randn(self.hidden_size))
        self.unet = SequentialUNet(self.aug_num, self.hidden_size, channels, channel_mult, res_blocks, dropout)
        self.diffusion = diffusion_from_config(config, prediction_type="eps")
        self.init_sampling(config)

    def forward(self, item_seq):
        """The guidance vector: the sum of the embeddings of the guiding items, ``[batch, hidden]``."""
        return self.item_embedding(item_seq).sum(dim=1)  # the padding embedding is zero

    def denoise(self, noisy, timesteps, guidance):
        """The predicted noise of the sampler: the U-Net's (``cond``), or its classifier-free guided combination
        ``cond + w (cond - uncond)`` with the null guidance as the unconditional input (``cf``)."""
        conditional = self.unet(noisy, timesteps, guidance)
        if self.guidance_type == "cond":
            return conditional
        unconditional = self.unet(noisy, timesteps, self.null_guidance.expand_as(guidance))
        return guided_output(conditional, unconditional, self.guidance_weight)

    def training_timesteps(self, batch_size, device):
        """Antithetic training steps, as the official ``DiffusionModel.forward``: ``batch_size // 2 + 1`` uniform steps
        ``t``, then ``T - 1 - t`` for each, the first ``batch_size`` of the two halves ``[B]``."""
        steps = self.diffusion.num_steps
        first = torch.randint(0, steps, (batch_size // 2 + 1,), device=device)
        return torch.cat([first, steps - 1 - first])[:batch_size]

    def calculate_loss(self, interaction):
        """Noise-prediction MSE. ``cf`` + ``official``: on the guided combination itself (what the sampler uses);
        ``cf`` + ``dropout``: on the U-Net alone, its guidance replaced by the null one with probability p_uncond."""
        guidance = self.forward(interaction[self.ITEM_SEQ])
        target = self.item_embedding(interaction[AUG_ITEMS])  # [B, M, d]
        timesteps = self.training_timesteps(target.size(0), target.device)
        noise = torch.randn_like(target)
        noisy = self.diffusion.q_sample(target, timesteps, noise)
        if self.guidance_type == "cf" and self.cf_training == "official":
            return F.mse_loss(self.denoise(noisy, timesteps, guidance), noise)
        if self.guidance_type == "cf":
            guidance = drop_condition(guidance, self.null_guidance, self.p_uncond)
        return F.mse_loss(self.unet(noisy, timesteps, guidance), noise)

    @torch.no_grad()
    def generate(self, guidance, num_inference_steps=None):
        """DDIM (or DDPM) from noise to the M pseudo item embeddings ``[batch, M, hidden]`` under ``guidance``."""

        def denoiser(noisy, timesteps):
            return self.denoise(noisy, timesteps, guidance)

        shape = (guidance.size(0), self.aug_num, self.hidden_size)
        steps = self.sampler_steps(num_inference_steps)
        return self.diffusion.sample(denoiser, shape, guidance.device, num_inference_steps=steps, eta=self.ddim_eta)

    def rounding_scores(self, embeddings):
        """Cosine similarity of generated embeddings ``[..., hidden]`` with every item, the padding item excluded."""
        scores = F.normalize(embeddings, dim=-1) @ F.normalize(self.item_embedding.weight, dim=-1).t()
        return without_padding_item(scores)

    def pseudo_items(self, item_seq):
        """The M pseudo items ``[batch, M]`` (in order, the last one right before the history) for each history."""
        return self.rounding_scores(self.generate(self.forward(item_seq))).argmax(dim=-1)

    def predict(self, interaction, num_inference_steps=None):
        scores = self.full_sort_predict(interaction, num_inference_steps)
        return scores.gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)

    def full_sort_predict(self, interaction, num_inference_steps=None):
        """Scores of every item as the pseudo item just before the history (the last of the M generated)."""
        generated = self.generate(self.forward(interaction[self.ITEM_SEQ]), num_inference_steps)
        return self.rounding_scores(generated[:, -1])

    @classmethod
    def prepare_stage_two(cls, config, dataset, train_data, valid_data, test_data):
        """Stage 1 on the training split, then the augmented data for the backbone (see ``diffuasr_augment``)."""
        return diffuasr_augment.prepare_stage_two(cls, config, dataset, train_data, valid_data, test_data)
