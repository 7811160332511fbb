"""DiffRec and T-DiffRec.

Reference:
    Wenjie Wang, Yiyan Xu, Fuli Feng, Xinyu Lin, Xiangnan He, Tat-Seng Chua.
    "Diffusion Recommender Model." SIGIR 2023. Official code: YiyanXu/DiffRec.

A user's training interactions form the vector ``x_0`` over all items. It is noised to ``x_t`` at a step drawn by
importance sampling over the history of per-step losses, and an MLP predicts ``x_0`` (or the noise) from
``[x_t, step embedding]``; the loss is the MSE, weighted per step by ``SNR(t-1) - SNR(t)`` (the paper's Eq. 11-12).
Inference noises the history for ``sampling_steps`` (``T'``) steps (not at all when 0), then runs the reverse
chain of all ``steps`` (``T``) from there, taking only the mean of each step (no sampled noise); the result scores
all items. T-DiffRec (``TDiffRec``) feeds time-aware weights instead of ones: each user's training interactions,
in time order, get ``linspace(w_min, w_max)``.

Config keys (defaults and comments in ``properties/model/DiffRec.yaml``):
    steps, noise_schedule, noise_scale, noise_min, noise_max, beta_fixed, mean_type, reweight,
    history_num_per_term, sampling_steps, sampling_noise, dims_dnn, embedding_size, mlp_act_func, dropout, norm;
    TDiffRec also w_min, w_max.

Differences from the official code: biases start at zero (the official code draws them from N(0, 0.001); RecBole's
DiffRec also uses zeros, so that both give the same weights for the same seed); ``noise_scale: 0`` (the no-noise
ablation) is not supported; the padding item is never recommended. RecBole's built-in DiffRec differs from the
official code in its defaults (``linear`` schedule) and in not mirroring ``dims_dnn`` (official: ``[200, 600]``
gives ``n -> 600 -> 200 -> 600 -> n``); here both follow the official code.
"""

import math
from itertools import pairwise

import torch
from recbole.model.abstract_recommender import AutoEncoderMixin, GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import GaussianDiffusion, make_betas
from recbole_diffusion.diffusion.timestep_sampler import LossAwareSampler
from recbole_diffusion.model.general_recommender.time_aware import TimeAwareHistory
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import (
    ConfigError,
    boolean,
    int_in,
    is_positive_int,
    number,
    one_of,
    positive_int,
    probability,
)

NOISE_SCHEDULES = ("linear-var", "linear", "cosine")
MEAN_TYPES = ("x0", "eps")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def check_diffusion_config(config):
    """Check ``steps`` and the keys of :func:`diffrec_betas`."""
    positive_int("steps", config["steps"])
    one_of("noise_schedule", config["noise_schedule"], NOISE_SCHEDULES)
    number("noise_scale", config["noise_scale"], 0, low_open=True)
    noise_min = number("noise_min", config["noise_min"], 0, low_open=True)
    if number("noise_max", config["noise_max"], 0, low_open=True) < noise_min:
        raise ConfigError("noise_max", f"a number >= noise_min ({noise_min})", config["noise_max"])
    boolean("beta_fixed", config["beta_fixed"])


def diffrec_betas(config, steps):
    """DiffRec's betas from the shared schedules and the config keys noise_schedule, noise_scale, noise_min,
    noise_max and beta_fixed (which sets the first beta to 1e-5 as the official code)."""
    noise_schedule, noise_scale = config["noise_schedule"], config["noise_scale"]
    noise_min, noise_max = config["noise_min"], config["noise_max"]
    if noise_schedule == "linear-var":
        kwargs = {"noise_scale": noise_scale, "noise_min": noise_min, "noise_max": noise_max}
    elif noise_schedule == "linear":
        kwargs = {"beta_start": noise_scale * noise_min, "beta_end": noise_scale * noise_max}
    else:
        kwargs = {}
    betas = make_betas(noise_schedule, steps, **kwargs)
    if config["beta_fixed"]:
        betas[0] = 1e-5
    return betas


def check_denoiser_config(config):
    """Check the denoiser's config keys dims_dnn, embedding_size, mlp_act_func and dropout."""
    dims = config["dims_dnn"]
    if not (isinstance(dims, list) and dims and all(map(is_positive_int, dims))):
        raise ConfigError("dims_dnn", "a non-empty list of positive ints", dims)
    embedding_size = config["embedding_size"]
    if not (is_positive_int(embedding_size) and embedding_size >= 4 and embedding_size % 2 == 0):
        raise ConfigError("embedding_size", "an even int >= 4 (sinusoidal step features)", embedding_size)
    one_of("mlp_act_func", config["mlp_act_func"], tuple(ACTIVATIONS))
    probability("dropout", config["dropout"])


def step_features(timesteps, dim, max_period=10000.0):
    """DiffRec's sinusoidal step features ``[cos(t f_i), sin(t f_i)]``, ``f_i = max_period ** (-i / (dim // 2))``.

    (The plugin's ``layers.sinusoidal_embedding`` puts sin first and divides by ``dim/2 - 1``; this keeps DiffRec's
    exact features so that the model matches RecBole's and the official DiffRec.)
    """
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * frequencies[None, :]
    features = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return nn.functional.pad(features, (0, dim % 2))


class DiffRecDenoiser(nn.Module):
    """DiffRec's MLP: ``[dropout(x_t), Linear(step features)]`` through Linear layers of sizes
    ``in -> reversed(dims) -> dims[1:] -> in`` (mirrored as in the official code), the activation between them.
    Weights are Xavier-normal, biases zero. With ``condition_size`` a condition vector is concatenated too (DDRM)."""

    def __init__(
        self, in_features, dims, step_embedding_size, activation="tanh", dropout=0.5, norm=False, condition_size=0
    ):
        super().__init__()
        self.step_embedding_size = step_embedding_size
        self.norm = norm
        self.step_layer = nn.Linear(step_embedding_size, step_embedding_size)
        self.dropout = nn.Dropout(dropout)
        sizes = [in_features + step_embedding_size + condition_size] + list(dims[::-1]) + list(dims[1:]) + [in_features]
        layers = []
        for index, (size_in, size_out) in enumerate(pairwise(sizes)):
            layers.append(nn.Linear(size_in, size_out))
            if index < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.mlp = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x_t, timesteps, condition=None):
        step = self.step_layer(step_features(timesteps, self.step_embedding_size))
        if self.norm:
            x_t = nn.functional.normalize(x_t, dim=-1)
        inputs = [self.dropout(x_t), step] + ([] if condition is None else [condition])
        return self.mlp(torch.cat(inputs, dim=-1))


@register_model
class DiffRec(GeneralRecommender, AutoEncoderMixin):
    input_type = InputType.POINTWISE
    train_batch_by_user = True

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        check_diffusion_config(config)
        int_in("sampling_steps", config["sampling_steps"], 0, config["steps"], " (steps)")
        boolean("sampling_noise", config["sampling_noise"])
        check_denoiser_config(config)
        boolean("norm", config["norm"])
        one_of("mean_type", config["mean_type"], MEAN_TYPES)
        boolean("reweight", config["reweight"])
        positive_int("history_num_per_term", config["history_num_per_term"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.steps = config["steps"]
        self.mean_type = config["mean_type"]
        self.reweight = config["reweight"]
        self.sampling_steps = config["sampling_steps"]
        self.sampling_noise = config["sampling_noise"]
        dims = config["dims_dnn"]
        embedding_size = config["embedding_size"]
        activation = config["mlp_act_func"]
        dropout = config["dropout"]
        betas = diffrec_betas(config, self.steps)

        self.build_histroy_items(dataset)
        self.diffusion = GaussianDiffusion(betas, prediction_type=self.mean_type)
        self.timestep_sampler = LossAwareSampler(self.steps, config["history_num_per_term"])
        self.denoiser = DiffRecDenoiser(self.diffused_size(), dims, embedding_size, activation, dropout, config["norm"])

    def diffused_size(self):
        """Size of the vectors that are diffused: the item count (L-DiffRec: the latent size)."""
        return self.n_items

    def forward(self, x_t, timesteps):
        """The denoiser's output (``x_0`` or noise, by ``mean_type``) for ``x_t`` at ``timesteps``."""
        return self.denoiser(x_t, timesteps)

    def step_weights(self, timesteps):
        """The paper's per-step loss weight: ``SNR(t-1) - SNR(t)`` for x0 (Eq. 11), 1 at ``t = 0`` (Eq. 12); the
        official code's ELBO weight of the noise MSE for eps."""
        previous = (timesteps - 1).clamp(min=0)
        if self.mean_type == "x0":
            weights = self.diffusion.snr(previous) - self.diffusion.snr(timesteps)
        else:
            alpha_bar = self.diffusion.alphas_cumprod[timesteps]
            weights = (1 - alpha_bar) / (
                (1 - self.diffusion.alphas_cumprod[previous]) ** 2 * (1 - self.diffusion.betas[timesteps])
            )
        return torch.where(timesteps == 0, torch.ones_like(weights), weights)

    def diffusion_loss(self, x0):
        """Per-sample DiffRec loss of a batch ``x0`` (importance-weighted, to be averaged) and the denoiser's
        prediction of ``x0``."""
        timesteps, importance_weights = self.timestep_sampler.sample(x0.size(0), x0.device)
        noise = torch.randn_like(x0)
        x_t = self.diffusion.q_sample(x0, timesteps, noise)
        output = self.forward(x_t, timesteps)
        target = x0 if self.mean_type == "x0" else noise
        loss = (target - output).pow(2).mean(dim=-1)
        if self.reweight:
            if self.mean_type == "eps":  # at t = 0 the official code scores the implied x0 instead
                x0_loss = (x0 - self.diffusion.to_x0(output, x_t, timesteps)).pow(2).mean(dim=-1) / 2
                loss = torch.where(timesteps == 0, x0_loss, loss)
            loss = self.step_weights(timesteps) * loss
        self.timestep_sampler.update(timesteps, loss)
        return loss * importance_weights, self.diffusion.to_x0(output, x_t, timesteps)

    def calculate_loss(self, interaction):
        return self.diffusion_loss(self.get_rating_matrix(interaction[self.USER_ID]))[0].mean()

    @torch.no_grad()
    def generate(self, x0):
        """Noise ``x0`` for ``sampling_steps`` steps, then run the reverse chain of all ``steps`` (mean only, or
        ancestral sampling with ``sampling_noise``)."""
        x_t = x0
        if self.sampling_steps > 0:
            start = torch.full((x0.size(0),), self.sampling_steps - 1, device=x0.device, dtype=torch.long)
            x_t = self.diffusion.q_sample(x0, start)
        if self.sampling_noise:
            return self.diffusion.sample(self.forward, x_t.shape, x_t.device, x_T=x_t, start_step=self.steps - 1)
        return self.diffusion.sample_mean(self.forward, x_t)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)

    def full_sort_predict(self, interaction):
        scores = self.generate(self.get_rating_matrix(interaction[self.USER_ID]))
        scores[:, 0] = -torch.inf
        return scores


@register_model
class TDiffRec(TimeAwareHistory, DiffRec):
    """T-DiffRec: DiffRec over time-aware interaction weights (needs a timestamp field)."""
