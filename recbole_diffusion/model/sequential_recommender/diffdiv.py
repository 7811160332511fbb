"""DiffDiv.

Reference:
    Z. Cai, S. Wang, V. W. Chu, U. Naseem, Y. Wang, F. Chen.
    "Unleashing the Potential of Diffusion Models Towards Diversified Sequential Recommendations." SIGIR 2025,
    pp. 1476-1486, doi:10.1145/3726302.3730109. No official code was found.

A Transformer encodes the history into ``c``. Diversity-aware guidance learning (DAGL): a linear encoder maps
``c`` to ``mu, log sigma^2`` of a latent ``z``, ``z = mu + sigma * eps``, and a linear decoder maps ``z`` to the
guidance ``g``. The target item's embedding ``e_0`` is noised to ``e_t`` and a denoiser predicts ``e_0`` from
``[e_t, g, step embedding]`` (DreamRec-style). Accuracy-diversity balanced optimisation (ADBO): the loss is a
robust divergence between the predicted and the target embedding (a Gaussian likelihood of unit variance scored
with the beta- or gamma-cross-entropy instead of the log-likelihood, which down-weights interactions the model
cannot explain) plus ``kl_weight * KL(q(z | c) || N(0, I))``. Heterogeneous diffusion inference: ``num_channels``
reverse chains, each guided by a fresh sample ``z ~ q(z | c)`` and started from fresh noise; an item's score is
its best inner product with any channel's generated embedding.

Config keys (defaults and comments in ``properties/model/DiffDiv.yaml``):
    hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act,
    layer_norm_eps, initializer_range, latent_size, kl_weight, divergence, divergence_param, num_channels,
    diffusion_steps, beta_schedule, beta_start, beta_end, inference_steps, valid_inference_steps, ddim_eta,
    detach_target, item_emb_path.

Embedding collapse (``recbole_diffusion.collapse``): the reconstruction divergence pulls the *trainable* target
embedding as DreamRec's MSE does. ``detach_target`` (no gradient through the target embedding) and ``item_emb_path``
(frozen item embeddings from a ``.npy`` file) stop that; both are off by default.

Differences from the paper: its text and code were not available to this implementation, so the pieces follow
the method's description. The divergence replaces the reconstruction of the target embedding (the diffusion
loss, which plays the likelihood of this conditional VAE); z is drawn from q(z | c) at inference; the robust
divergences are the beta-cross-entropy of Akrami et al. (robust VAE) and the gamma-cross-entropy of Fujisawa and
Eguchi (2008) for a unit-variance Gaussian over the whole embedding; DAGL's maps are single linear layers
(two-layer MLPs learned far slower on the test data); the sequence encoder and schedule are DreamRec's, the
denoiser a Linear-GELU-Linear MLP over ``[e_t, g, step]``; no classifier-free guidance; the padding item 0 is
never recommended.
"""

import math
from functools import partial

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.model.layers import (
    SequenceEncoder,
    StepEmbedding,
    init_item_embedding,
    init_normal_weights,
)
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import boolean, number, one_of, positive_int

DIVERGENCES = ("beta", "gamma", "mse")


def gaussian_log_likelihood(prediction, target):
    """``log N(target; prediction, I)`` over the last dimension, shape ``[batch]``."""
    dim = target.size(-1)
    return -0.5 * ((target - prediction) ** 2).sum(dim=-1) - 0.5 * dim * math.log(2 * math.pi)


def beta_cross_entropy(prediction, target, beta):
    """Batch mean of ``-(beta + 1) / beta * (p^beta - 1)``, ``p = N(target; prediction, I)`` (Akrami et al.).

    The term ``integral p^(1 + beta)`` does not depend on the prediction and is dropped. As ``beta -> 0`` this
    tends to the Gaussian negative log-likelihood, ``0.5 * ||target - prediction||^2 + const``.
    """
    log_p = gaussian_log_likelihood(prediction, target)
    return (-(beta + 1) / beta * torch.expm1(beta * log_p)).mean()


def gamma_cross_entropy(prediction, target, gamma):
    """``-1/gamma * log mean_i p_i^gamma + 1/(1 + gamma) * log integral p^(1 + gamma)`` (Fujisawa and Eguchi).

    ``p_i = N(target_i; prediction_i, I)``; the integral is the same for every sample. As ``gamma -> 0`` this
    tends to the batch mean of the Gaussian negative log-likelihood.
    """
    log_p = gaussian_log_likelihood(prediction, target)
    dim = target.size(-1)
    log_mean_p_gamma = torch.logsumexp(gamma * log_p, dim=0) - math.log(log_p.numel())
    log_integral = -0.5 * dim * (gamma * math.log(2 * math.pi) + math.log(1 + gamma))
    return -log_mean_p_gamma / gamma + log_integral / (1 + gamma)


@register_model
class DiffDiv(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE
    target_embedding_table = "item_embedding"  # what the reconstruction term pulls: checked for collapse

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        SequenceEncoder.check_config(config)
        number("initializer_range", config["initializer_range"], 0, low_open=True)
        positive_int("latent_size", config["latent_size"])
        number("kl_weight", config["kl_weight"], 0)
        divergence = one_of("divergence", config["divergence"], DIVERGENCES)
        if divergence != "mse":
            number("divergence_param", config["divergence_param"], 0, low_open=True)
        positive_int("num_channels", config["num_channels"])
        number("ddim_eta", config["ddim_eta"], 0)
        boolean("detach_target", config["detach_target"])
        check_betas_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.latent_size = config["latent_size"]
        self.kl_weight = config["kl_weight"]
        self.divergence = config["divergence"]
        self.divergence_param = config["divergence_param"]
        self.num_channels = config["num_channels"]
        self.ddim_eta = config["ddim_eta"]
        self.detach_target = config["detach_target"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.encoder = SequenceEncoder.from_config(config, self.max_seq_length)
        # DAGL: c -> (mu, log sigma^2) of z, and z -> guidance.
        self.guidance_encoder = nn.Linear(self.hidden_size, 2 * self.latent_size)
        self.guidance_decoder = nn.Linear(self.latent_size, self.hidden_size)
        self.step_embedding = StepEmbedding(self.hidden_size)
        self.denoiser = nn.Sequential(
            nn.Linear(3 * self.hidden_size, 2 * self.hidden_size),
            nn.GELU(),
            nn.Linear(2 * self.hidden_size, self.hidden_size),
        )
        self.diffusion = diffusion_from_config(config)
        self.init_sampling(config)
        self.apply(partial(init_normal_weights, std=self.initializer_range))
        init_item_embedding(self.item_embedding, config["item_emb_path"])

    def forward(self, item_seq, item_seq_len):
        """The history's encoding ``c``: the encoder state at its last item, ``[batch, hidden]``."""
        hidden = self.encoder(item_seq, self.item_embedding(item_seq))
        return self.gather_indexes(hidden, item_seq_len - 1)

    def posterior(self, history):
        """DAGL's ``q(z | c)`` of the history encoding ``c``: ``(mu, log sigma^2)``, each ``[batch, latent_size]``."""
        mu, log_var = self.guidance_encoder(history).chunk(2, dim=-1)
        return mu, log_var

    def sample_guidance(self, mu, log_var):
        """Reparameterised ``z = mu + sigma * eps``, decoded to a guidance vector ``[batch, hidden]``."""
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return self.guidance_decoder(z)

    def denoise(self, x_t, timesteps, guidance):
        """Predict the clean target embedding from ``[e_t, g, step embedding]``."""
        return self.denoiser(torch.cat([x_t, guidance, self.step_embedding(timesteps)], dim=-1))

    def reconstruction_loss(self, prediction, target):
        """ADBO's accuracy term: the configured robust divergence (``mse``: the Gaussian NLL without constant)."""
        if self.divergence == "beta":
            return beta_cross_entropy(prediction, target, self.divergence_param)
        if self.divergence == "gamma":
            return gamma_cross_entropy(prediction, target, self.divergence_param)
        return 0.5 * ((target - prediction) ** 2).sum(dim=-1).mean()

    def calculate_loss(self, interaction):
        mu, log_var = self.posterior(self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))
        guidance = self.sample_guidance(mu, log_var)
        target_embedding = self.item_embedding(interaction[self.POS_ITEM_ID])
        if self.detach_target:
            target_embedding = target_embedding.detach()
        timesteps = self.diffusion.sample_timesteps(target_embedding.size(0), target_embedding.device)
        noisy_embedding = self.diffusion.q_sample(target_embedding, timesteps)
        reconstruction = self.reconstruction_loss(self.denoise(noisy_embedding, timesteps, guidance), target_embedding)
        kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=-1).mean()
        return reconstruction + self.kl_weight * kl

    @torch.no_grad()
    def generate(self, history, num_inference_steps=None):
        """Heterogeneous inference: one generated embedding per channel, ``[num_channels, batch, hidden]``."""
        mu, log_var = self.posterior(history)
        # All channels run as one batch: channel l holds rows l * batch .. (l + 1) * batch - 1.
        guidance = self.sample_guidance(mu.repeat(self.num_channels, 1), log_var.repeat(self.num_channels, 1))
        generated = self.diffusion.sample(
            lambda x_t, timesteps: self.denoise(x_t, timesteps, guidance),
            guidance.shape,
            guidance.device,
            num_inference_steps=self.sampler_steps(num_inference_steps),
            eta=self.ddim_eta,
        )
        return generated.view(self.num_channels, history.size(0), self.hidden_size)

    def channel_scores(self, interaction, num_inference_steps=None):
        """Each channel's inner-product scores for all items, ``[num_channels, batch, n_items]``."""
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.generate(history, num_inference_steps) @ self.item_embedding.weight.t()

    def predict(self, interaction, num_inference_steps=None):
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item_embedding = self.item_embedding(interaction[self.ITEM_ID])
        return (self.generate(history, num_inference_steps) * item_embedding).sum(dim=-1).max(dim=0).values

    def full_sort_predict(self, interaction, num_inference_steps=None):
        return without_padding_item(self.channel_scores(interaction, num_inference_steps).max(dim=0).values)
