"""PreferDiff.

Reference:
    Shuo Liu, An Zhang, Guoqing Hu, Hong Qian, Tat-Seng Chua. "Preference Diffusion for Recommendation." ICLR 2025.
    Official code: lswhim/PreferDiff.

DreamRec's guided denoiser trained with a preference loss. A Transformer encodes the history into the guidance
``c`` (replaced by a learned null vector with probability ``p_uncond``). The target item's embedding and the mean
embedding of negative items (the other targets of the batch) are noised at the same steps and denoised, under the
same guidance, by one linear layer over ``[x_t, c, step embedding]`` that predicts ``x_0``. With ``L_pos`` and
``L_neg`` the batch-mean regression losses (``loss_type``: cosine or l2) of the two, the loss is
``-(1 - lambda) log sigmoid(-gamma (L_pos - L_neg)) + lambda L_pos`` (``recbole_diffusion.diffusion.losses``).
Inference runs the classifier-free guided reverse chain (``x0 = (1 + w) cond - w uncond``) from Gaussian noise and
ranks all items by inner product with the generated embedding.

Item embeddings: trainable ``N(0, 1)`` ids (the official ``ab=iids``), or frozen rows of the ``.npy`` file
``item_emb_path`` (the paper's text embeddings), whitened as the official code does (``whiten_item_embeddings``).

Config keys (defaults and comments in ``properties/model/PreferDiff.yaml``):
    hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act, layer_norm_eps,
    encoder_block, initializer_range, diffusion_steps, beta_schedule, beta_start, beta_end, p_uncond,
    guidance_weight, loss_type, gamma, preference_weight, negative_sampling, n_negatives, inference_steps,
    valid_inference_steps, ddim_eta, item_emb_path, whiten_item_embeddings.

Differences from the official code:
    - The history encoder (``encoder_block: official``, :class:`recbole_diffusion.model.layers.GuidanceEncoder`)
      and the initialisation (``initializer_range: ~``) are the official ones, except that a query whose normalised
      vector sums to exactly 0 keeps its attention weights (officially zeroed, meant for padding; in float32 it also
      hits real positions by rounding near the LayerNorm's initial identity). ``encoder_block: sasrec`` and
      ``initializer_range: 0.02`` give RecBole's SASRec block and initialisation instead.
    - Sampling is the core's DDIM with ``inference_steps`` (21) evenly spaced steps from ``T - 1`` to 0; the network
      sees the step whose noise level it denoises. The official DDIM also makes 21 calls, at the noise levels of
      steps 1999, 1899, ..., 99, 0, but feeds the network the step plus one (2000, 1900, ..., 100, 0).
    - Whitening of file embeddings runs once, in float64, and the padding row stays as loaded (official: twice, the
      second pass a rotation of already whitened rows; float32; a random padding row). Neither changes a score.
    - A batch of one row has no in-batch negative: its loss is the regression term alone (official: NaN).
    - The ``1e-8`` that the official code adds inside the log-sigmoid is left out.
"""

from functools import partial

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import (
    REGRESSION_LOSSES,
    check_betas_config,
    diffusion_from_config,
    drop_condition,
    guided_denoiser,
    in_batch_negative_mean,
    preference_loss,
    regression_loss,
    sampled_in_batch_negative_mean,
)
from recbole_diffusion.model.layers import (
    StepEmbedding,
    check_guidance_encoder_config,
    guidance_encoder_from_config,
    init_item_embedding,
    init_normal_weights,
)
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.pretrain import whiten_embeddings
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import boolean, number, one_of, positive_int, probability

NEGATIVE_SAMPLINGS = ("batch", "random")


@register_model
class PreferDiff(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE
    target_embedding_table = "item_embedding"  # what the loss regresses onto: checked for collapse

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        check_guidance_encoder_config(config)
        probability("p_uncond", config["p_uncond"])
        number("guidance_weight", config["guidance_weight"])
        one_of("loss_type", config["loss_type"], REGRESSION_LOSSES)
        number("gamma", config["gamma"], 0)
        number("preference_weight", config["preference_weight"], 0, 1)
        one_of("negative_sampling", config["negative_sampling"], NEGATIVE_SAMPLINGS)
        positive_int("n_negatives", config["n_negatives"])
        number("ddim_eta", config["ddim_eta"], 0)
        boolean("whiten_item_embeddings", config["whiten_item_embeddings"])
        check_betas_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.p_uncond = config["p_uncond"]
        self.guidance_weight = config["guidance_weight"]
        self.loss_type = config["loss_type"]
        self.gamma = config["gamma"]
        self.preference_weight = config["preference_weight"]
        self.negative_sampling = config["negative_sampling"]
        self.n_negatives = config["n_negatives"]
        self.ddim_eta = config["ddim_eta"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.encoder = guidance_encoder_from_config(config, self.max_seq_length, residual_stream=True)
        self.null_guidance = nn.Parameter(torch.randn(self.hidden_size))
        self.step_embedding = StepEmbedding(self.hidden_size)
        self.denoiser = nn.Linear(3 * self.hidden_size, self.hidden_size)
        self.diffusion = diffusion_from_config(config)
        self.init_sampling(config)
        if config["initializer_range"] is not None:
            self.apply(partial(init_normal_weights, std=config["initializer_range"]))
        init_item_embedding(self.item_embedding, config["item_emb_path"])
        if config["item_emb_path"] and config["whiten_item_embeddings"]:
            self.item_embedding.weight.data[1:] = whiten_embeddings(self.item_embedding.weight.data[1:])

    def forward(self, item_seq, item_seq_len):
        """The guidance ``c``: the encoder state at the last item of each history, ``[batch, hidden]``."""
        hidden = self.encoder(item_seq, self.item_embedding(item_seq))
        return self.gather_indexes(hidden, item_seq_len - 1)

    def denoise(self, x_t, timesteps, guidance):
        """Predict the clean embedding from ``[x_t, c, step embedding]``."""
        return self.denoiser(torch.cat([x_t, guidance, self.step_embedding(timesteps)], dim=-1))

    def negative_embedding(self, target_embedding):
        """Per row, the mean embedding of its negatives: all other targets of the batch (``batch``) or
        ``n_negatives`` of them drawn at random (``random``)."""
        if self.negative_sampling == "batch":
            return in_batch_negative_mean(target_embedding)
        return sampled_in_batch_negative_mean(target_embedding, self.n_negatives)

    def calculate_loss(self, interaction):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        guidance = drop_condition(guidance, self.null_guidance, self.p_uncond)
        target_embedding = self.item_embedding(interaction[self.POS_ITEM_ID])
        timesteps = self.diffusion.sample_timesteps(target_embedding.size(0), target_embedding.device)
        denoised = self.denoise(self.diffusion.q_sample(target_embedding, timesteps), timesteps, guidance)
        positive_loss = regression_loss(denoised, target_embedding, self.loss_type)
        if target_embedding.size(0) < 2:  # no other target to prefer against
            return self.preference_weight * positive_loss
        negative = self.negative_embedding(target_embedding)
        denoised_negative = self.denoise(self.diffusion.q_sample(negative, timesteps), timesteps, guidance)
        negative_loss = regression_loss(denoised_negative, negative, self.loss_type)
        return preference_loss(positive_loss, negative_loss, self.gamma, self.preference_weight)

    @torch.no_grad()
    def generate(self, guidance, num_inference_steps=None):
        """Run the guided reverse chain to the embedding that scores the items."""
        return self.diffusion.sample(
            guided_denoiser(self.denoise, guidance, self.null_guidance, self.guidance_weight),
            guidance.shape,
            guidance.device,
            num_inference_steps=self.sampler_steps(num_inference_steps),
            eta=self.ddim_eta,
        )

    def predict(self, interaction, num_inference_steps=None):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        generated = self.generate(guidance, num_inference_steps)
        return (generated * self.item_embedding(interaction[self.ITEM_ID])).sum(dim=-1)

    def full_sort_predict(self, interaction, num_inference_steps=None):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return without_padding_item(self.generate(guidance, num_inference_steps) @ self.item_embedding.weight.t())
