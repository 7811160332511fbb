"""DimeRec.

Reference:
    Wuchao Li, Rui Huang, Haijun Zhao, Chi Liu, Kai Zheng, Qi Liu, Na Mou, Guorui Zhou, Defu Lian, Yang Song,
    Wentian Bao, Enyun Yu, Wenwu Ou. "DimeRec: A Unified Framework for Enhanced Sequential Recommendation via
    Generative Diffusion Models." WSDM 2025 (arXiv 2408.12153). No official code is public.

The guidance extraction module (GEM) turns the history into ``K`` stationary guidance vectors ``g_u``: either the
last ``K`` item embeddings (``gem_type: rule``) or ``K`` interests of ComiRec-SA's self-attentive multi-interest
extractor (``gem_type: model``). The diffusion aggregation module (DAM) generates the next item's embedding with an
MLP denoiser conditioned on ``g_u``. All item embeddings live on the unit sphere: the target ``x0`` is noised by a
geodesic random walk ``x_t = exp_{x0}(sqrt(1 - ab_t) P_{x0} eps)`` and the denoiser's ``x0`` estimate is
normalised. Loss ``L = L_gem + lambda L_recon + mu L_ssm``: ``L_gem`` is the sampled softmax of the GEM on the next
item (ComiRec's rule: the interest closest to the target is scored), ``L_recon`` the squared distance of the
denoised to the clean embedding, ``L_ssm`` the sampled softmax of the denoised embedding against the target. Both
softmaxes use ``n_negatives`` uniformly sampled items (shared by the batch) and cosine / ``temperature`` logits.
Inference runs the reverse chain from a random point of the sphere, guided by the GEM output, re-normalising after
every step, and ranks all items by cosine with the generated embedding.

Config keys (defaults and comments in ``properties/model/DimeRec.yaml``):
    hidden_size, gem_type, n_interests, denoiser_hidden_size, initializer_range, diffusion_steps, beta_schedule,
    beta_start, beta_end, noise_scale, recon_weight, ssm_weight, n_negatives, temperature, inference_steps,
    valid_inference_steps, ddim_eta.

Choices where the paper leaves it open (no official code): the guidance ``K x d`` is flattened and concatenated
with ``x_t`` and a step embedding as the MLP input; cosine logits need a temperature (``temperature``); with the
rule-based GEM, ``L_gem`` still applies (it trains the item embeddings to score the next item from the last items);
negatives are drawn uniformly with accidental hits masked, not with the in-batch/popularity sampler of production.
Deviation: the Gaussian noise is scaled by ``noise_scale``, by default so that the last step reaches a right angle
from ``x0`` on average, where the uniformly random start of inference lies. With unit noise the tangent step has
length ``sqrt(1 - ab_t) sqrt(d - 1)`` (6.3 rad at step T for the defaults), so the walk wraps around the sphere and
``x_T`` can land back near ``x0`` (``noise_scale: 1.0`` restores it); the reverse steps use the same scale.
"""

from functools import partial

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import (
    check_betas_config,
    diffusion_from_config,
    geodesic_q_sample,
    right_angle_noise_scale,
    spherical_sample,
)
from recbole_diffusion.model.layers import StepEmbedding, init_normal_weights
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import history_length, int_in, number, one_of, positive_int

GEM_TYPES = ("model", "rule")


@register_model
class DimeRec(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        positive_int("hidden_size", config["hidden_size"])
        one_of("gem_type", config["gem_type"], GEM_TYPES)
        int_in("n_interests", config["n_interests"], 1, history_length(config), " (MAX_ITEM_LIST_LENGTH)")
        positive_int("n_negatives", config["n_negatives"])
        positive_int("denoiser_hidden_size", config["denoiser_hidden_size"])
        number("initializer_range", config["initializer_range"], 0, low_open=True)
        number("temperature", config["temperature"], 0, low_open=True)
        if config["noise_scale"] is not None:
            number("noise_scale", config["noise_scale"], 0, low_open=True)
        number("recon_weight", config["recon_weight"], 0)
        number("ssm_weight", config["ssm_weight"], 0)
        number("ddim_eta", config["ddim_eta"], 0)
        check_betas_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.gem_type = config["gem_type"]
        self.n_interests = config["n_interests"]
        self.initializer_range = config["initializer_range"]
        self.recon_weight = config["recon_weight"]
        self.ssm_weight = config["ssm_weight"]
        self.n_negatives = config["n_negatives"]
        self.temperature = config["temperature"]
        self.ddim_eta = config["ddim_eta"]
        noise_scale = config["noise_scale"]
        denoiser_hidden_size = config["denoiser_hidden_size"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        if self.gem_type == "model":
            # ComiRec-SA: A = softmax over positions of W2 tanh(W1 (e + p)); interests = A^T e.
            self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
            self.interest_attention = nn.Sequential(
                nn.Linear(self.hidden_size, 4 * self.hidden_size),
                nn.Tanh(),
                nn.Linear(4 * self.hidden_size, self.n_interests),
            )
        self.step_embedding = StepEmbedding(self.hidden_size)
        self.denoiser = nn.Sequential(
            nn.Linear((self.n_interests + 2) * self.hidden_size, denoiser_hidden_size),
            nn.SiLU(),
            nn.Linear(denoiser_hidden_size, self.hidden_size),
        )
        self.diffusion = diffusion_from_config(config)
        self.init_sampling(config)
        if noise_scale is None:
            noise_scale = right_angle_noise_scale(self.diffusion, self.hidden_size)
        self.noise_scale = noise_scale
        self.apply(partial(init_normal_weights, std=self.initializer_range))
        self.item_embedding.weight.data[0].zero_()  # the padding item stays the zero vector

    def item_vectors(self, items=None):
        """Item embeddings on the unit sphere (the padding item maps to the zero vector)."""
        weight = self.item_embedding.weight if items is None else self.item_embedding(items)
        return F.normalize(weight, dim=-1)

    def forward(self, item_seq, item_seq_len):
        """GEM: the guidance ``g_u``, ``[batch, n_interests, hidden]``."""
        if self.gem_type == "rule":
            offsets = torch.arange(self.n_interests, device=item_seq.device)
            positions = item_seq_len[:, None] - self.n_interests + offsets
            last_items = item_seq.gather(1, positions.clamp(min=0)) * (positions >= 0)
            return self.item_vectors(last_items)
        items = self.item_vectors(item_seq)
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        scores = self.interest_attention(items + self.position_embedding(positions))  # [batch, length, K]
        scores = scores.masked_fill((item_seq == 0)[:, :, None], float("-inf"))
        return torch.softmax(scores, dim=1).transpose(1, 2) @ items

    def denoise(self, x_t, timesteps, guidance):
        """DAM's denoiser: the clean embedding (on the sphere) from ``[x_t, flattened g_u, step embedding]``."""
        features = torch.cat([x_t, guidance.flatten(1), self.step_embedding(timesteps)], dim=-1)
        return F.normalize(self.denoiser(features), dim=-1)

    def sampled_softmax(self, query, target, negatives):
        """Softmax loss of ``target`` against the sampled ``negatives``, cosine / temperature logits."""
        query = F.normalize(query, dim=-1)
        positive = (query * self.item_vectors(target)).sum(dim=-1, keepdim=True)
        negative = query @ self.item_vectors(negatives).t()
        negative = negative.masked_fill(negatives[None, :] == target[:, None], float("-inf"))  # accidental hits
        logits = torch.cat([positive, negative], dim=-1) / self.temperature
        return F.cross_entropy(logits, torch.zeros_like(target))

    def calculate_loss(self, interaction):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        target = interaction[self.POS_ITEM_ID]
        x0 = self.item_vectors(target)
        negatives = torch.randint(1, self.n_items, (self.n_negatives,), device=target.device)

        # L_gem: the interest closest to the target is trained to retrieve it (ComiRec).
        closest = (guidance @ x0[:, :, None]).squeeze(-1).argmax(dim=-1)
        gem_loss = self.sampled_softmax(guidance[torch.arange(len(target)), closest], target, negatives)

        timesteps = self.diffusion.sample_timesteps(len(target), target.device)
        x_t = geodesic_q_sample(self.diffusion, x0, timesteps, noise_scale=self.noise_scale)
        denoised = self.denoise(x_t, timesteps, guidance)
        recon_loss = (denoised - x0).pow(2).sum(dim=-1).mean()
        ssm_loss = self.sampled_softmax(denoised, target, negatives)
        return gem_loss + self.recon_weight * recon_loss + self.ssm_weight * ssm_loss

    @torch.no_grad()
    def generate(self, guidance, num_inference_steps=None):
        """The reverse chain on the sphere guided by the GEM output."""
        return spherical_sample(
            self.diffusion,
            lambda x_t, timesteps: self.denoise(x_t, timesteps, guidance),
            (guidance.size(0), self.hidden_size),
            guidance.device,
            num_inference_steps=self.sampler_steps(num_inference_steps),
            eta=self.ddim_eta,
            noise_scale=self.noise_scale,
        )

    def predict(self, interaction, num_inference_steps=None):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (self.generate(guidance, num_inference_steps) * self.item_vectors(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction, num_inference_steps=None):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return without_padding_item(self.generate(guidance, num_inference_steps) @ self.item_vectors().t())
