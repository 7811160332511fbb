"""DreamRec.

Reference:
    Zhengyi Yang, Jiancan Wu, Zhicai Wang, Xiang Wang, Yancheng Yuan, Xiangnan He.
    "Generate What You Prefer: Reshaping Sequential Recommendation via Guided Diffusion." NeurIPS 2023.
    Official code: YangZhengyi98/DreamRec.

A Transformer encodes the history into the guidance ``c``. The target item's embedding ``e_0`` is noised to
``e_t``, and a denoiser predicts ``e_0`` from ``[e_t, c, step embedding]`` (MSE loss, no negative sampling).
With probability ``p_uncond`` the guidance is replaced by a learned null vector, so that inference can mix
conditional and unconditional predictions (classifier-free guidance, weight ``w``). Inference runs the reverse
chain from Gaussian noise and ranks all items by inner product with the generated "oracle" embedding.

Config keys (defaults and comments in ``properties/model/DreamRec.yaml``):
    hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act,
    layer_norm_eps, encoder_block, initializer_range, denoiser_type, diffusion_steps, beta_schedule, beta_start,
    beta_end, p_uncond, guidance_weight, inference_steps, valid_inference_steps, ddim_eta, detach_target,
    item_emb_path.

Embedding collapse (``recbole_diffusion.collapse``): the official loss regresses onto the *trainable* target
embedding, so it can fall by shrinking the targets, the popular ones most, and inner-product ranking then favours
rare items (below chance on ml-100k, here and with the official code). Two options, off by default (official
behaviour), stop it: ``detach_target`` (no gradient through the target embedding; the table still learns through the
history encoder) and ``item_emb_path`` (frozen item embeddings from a ``.npy`` file, as successor papers denoise
fixed embeddings). The plugin's trainer warns when the norms of popular targets collapse.

Differences from the official code: dropout is off at inference (the official code never calls ``model.eval()``);
the padding item is never recommended; the official attention also zeroes the weights of a query whose normalised
vector sums to exactly 0 (meant for padding; in float32 it also hits real positions by rounding while the LayerNorm
is near its initial identity): not reproduced. The history encoder (``encoder_block: official``,
:class:`recbole_diffusion.model.layers.GuidanceEncoder`) and the initialisation (``initializer_range: ~``) are the
official ones; ``encoder_block: sasrec`` and ``initializer_range: 0.02`` give RecBole's SASRec block and
initialisation instead (on ml-100k they score higher than the official ones: ``benchmarks/parity/README.md``).
"""

from functools import partial

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config, drop_condition, guided_denoiser
from recbole_diffusion.model.layers import (
    StepEmbedding,
    check_guidance_encoder_config,
    guidance_encoder_from_config,
    init_item_embedding,
    init_normal_weights,
)
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import boolean, number, one_of, probability

DENOISER_TYPES = ("mlp1", "mlp2")


@register_model
class DreamRec(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE
    target_embedding_table = "item_embedding"  # what the loss regresses onto: checked for collapse

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        check_guidance_encoder_config(config)
        one_of("denoiser_type", config["denoiser_type"], DENOISER_TYPES)
        probability("p_uncond", config["p_uncond"])
        number("guidance_weight", config["guidance_weight"])
        number("ddim_eta", config["ddim_eta"], 0)
        boolean("detach_target", config["detach_target"])
        check_betas_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.p_uncond = config["p_uncond"]
        self.guidance_weight = config["guidance_weight"]
        self.ddim_eta = config["ddim_eta"]
        self.detach_target = config["detach_target"]
        denoiser_type = config["denoiser_type"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.encoder = guidance_encoder_from_config(config, self.max_seq_length, residual_stream=False)
        self.null_guidance = nn.Parameter(torch.randn(self.hidden_size))
        self.step_embedding = StepEmbedding(self.hidden_size)
        denoiser_input = 3 * self.hidden_size
        if denoiser_type == "mlp1":
            self.denoiser = nn.Linear(denoiser_input, self.hidden_size)
        else:
            self.denoiser = nn.Sequential(
                nn.Linear(denoiser_input, 2 * self.hidden_size),
                nn.GELU(),
                nn.Linear(2 * self.hidden_size, self.hidden_size),
            )
        self.diffusion = diffusion_from_config(config)
        self.init_sampling(config)
        if self.initializer_range is not None:
            self.apply(partial(init_normal_weights, std=self.initializer_range))
        init_item_embedding(self.item_embedding, config["item_emb_path"])

    def forward(self, item_seq, item_seq_len):
        """The guidance ``c``: the encoder state at the last item of each history, ``[batch, hidden]``."""
        hidden = self.encoder(item_seq, self.item_embedding(item_seq))
        return self.gather_indexes(hidden, item_seq_len - 1)

    def denoise(self, x_t, timesteps, guidance):
        """Predict the clean target embedding from ``[e_t, c, step embedding]``."""
        return self.denoiser(torch.cat([x_t, guidance, self.step_embedding(timesteps)], dim=-1))

    def calculate_loss(self, interaction):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        guidance = drop_condition(guidance, self.null_guidance, self.p_uncond)
        target_embedding = self.item_embedding(interaction[self.POS_ITEM_ID])
        if self.detach_target:
            target_embedding = target_embedding.detach()
        timesteps = self.diffusion.sample_timesteps(target_embedding.size(0), target_embedding.device)
        noisy_embedding = self.diffusion.q_sample(target_embedding, timesteps)
        return F.mse_loss(self.denoise(noisy_embedding, timesteps, guidance), target_embedding)

    @torch.no_grad()
    def generate(self, guidance, num_inference_steps=None):
        """Run the guided reverse chain to the oracle item embedding."""
        return self.diffusion.sample(
            guided_denoiser(self.denoise, guidance, self.null_guidance, self.guidance_weight),
            guidance.shape,
            guidance.device,
            num_inference_steps=self.sampler_steps(num_inference_steps),
            eta=self.ddim_eta,
        )

    def predict(self, interaction, num_inference_steps=None):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        oracle = self.generate(guidance, num_inference_steps)
        return (oracle * self.item_embedding(interaction[self.ITEM_ID])).sum(dim=-1)

    def full_sort_predict(self, interaction, num_inference_steps=None):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return without_padding_item(self.generate(guidance, num_inference_steps) @ self.item_embedding.weight.t())
