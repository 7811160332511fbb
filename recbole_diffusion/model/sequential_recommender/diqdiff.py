"""DiQDiff.

Reference:
    Wenyu Mao, Shuchang Liu, Haoyang Liu, Haozhe Liu, Xiang Li, Lantao Hu.
    "Distinguished Quantized Guidance for Diffusion-based Sequence Recommendation." WWW 2025 (arXiv 2501.17670).
    Official code: maowenyu-11/DiQDiff (built on DiffuRec's code).

DiffuRec backbone: the target item's embedding ``e_0`` is noised to ``e_t``; a Transformer over the history
predicts ``e_0`` and is trained with cross-entropy over all items (``L_r``).
Semantic Vector Quantization (SVQ): the history representation ``s`` (item embeddings, ``[L, d]``) picks one of
``num_codes`` codes with a hard Gumbel-softmax (straight-through) over the logits of a linear layer on the flattened
``s``; each code is the mean of the sequences of the training batch assigned to it. The guidance is
``s~ = lambda_history * s + lambda_code * s_q``; the denoiser reads ``s~ + 0.001 (e_t + step embedding)``.
Contrastive Discrepancy Maximization (CDM): an InfoNCE loss over the cosine similarities of the denoised items of a
batch, each item its own positive, pushes the items generated for different users apart (``L_c``).
``L = L_r + lambda_contrast * L_c``. Inference runs the reverse chain guided by ``s~`` and ranks all items by inner
product with the generated item.

Config keys (defaults and comments in ``properties/model/DiQDiff.yaml``):
    hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, emb_dropout_prob, hidden_act, layer_norm_eps,
    attention_mask, num_codes, gumbel_temperature, lambda_history, lambda_code, lambda_contrast,
    contrast_temperature, diffusion_steps, beta_schedule, beta_start, beta_end, inference_steps,
    valid_inference_steps, ddim_eta.

The denoiser is DiffuRec's Transformer (``DiffuRecTransformer``, as officially: pre-LayerNorm blocks without position
embeddings, one dropout rate, output ``LayerNorm(dropout(.))`` at the last position) over right-aligned histories (as
the official left padding).

Differences from the official code: padded positions are masked as attention keys by default
(``attention_mask: keys``; ``queries`` is the official mask, under which real items attend to padding); the blocks
are PyTorch's (exact GELU instead of the tanh approximation; query/key/value projections with PyTorch's init); the
step embedding is the shared ``StepEmbedding`` (official: DiffuRec's SiLU MLP). The codebook is a buffer: each
training batch overwrites the codes it uses with the mean of their sequences (official: the batch mean, recomputed
for every batch, evaluation batches included), an unused code keeps its value (official: a random sequence); at
evaluation the code is the argmax of the logits, read from the stored codebook, so scores do not depend on the rest
of the batch. The straight-through one-hot lets the assignment layer learn (the official ``argmax`` indexing gives it
no gradient). The reverse chain uses the correct posterior log-variance (the official code exponentiates the
variance itself). The padding item keeps a zero embedding and is never recommended. The official StepLR decay
(x0.1 every 100 epochs) is the yaml's ``lr_step_size`` / ``lr_gamma``, applied by ``DiffusionTrainer``.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.model.layers import DiffuRecTransformer, HistoryCondition, StepEmbedding
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import number, positive_int, probability

NOISY_ITEM_WEIGHT = 0.001  # Weight of the noisy target (plus step embedding) in the denoiser input (official).


def align_right(item_seq, item_seq_len):
    """Move each history to the end of its row (RecBole pads on the right, DiffuRec on the left)."""
    length = item_seq.size(1)
    positions = torch.arange(length, device=item_seq.device)
    return item_seq.gather(1, (positions[None, :] + item_seq_len[:, None]) % length)


@register_model
class DiQDiff(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        DiffuRecTransformer.check_config(config)
        positive_int("num_codes", config["num_codes"])
        for key in ("gumbel_temperature", "contrast_temperature"):
            number(key, config[key], 0, low_open=True)
        for key in ("lambda_history", "lambda_code", "lambda_contrast"):
            number(key, config[key], 0)
        probability("emb_dropout_prob", config["emb_dropout_prob"])
        number("ddim_eta", config["ddim_eta"], 0)
        check_betas_config(config)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.num_codes = config["num_codes"]
        self.gumbel_temperature = config["gumbel_temperature"]
        self.lambda_history = config["lambda_history"]
        self.lambda_code = config["lambda_code"]
        self.lambda_contrast = config["lambda_contrast"]
        self.contrast_temperature = config["contrast_temperature"]
        self.ddim_eta = config["ddim_eta"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(config["emb_dropout_prob"])
        self.emb_layer_norm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        self.code_logits = nn.Linear(self.max_seq_length * self.hidden_size, self.num_codes)
        self.register_buffer("codebook", torch.zeros(self.num_codes, self.max_seq_length, self.hidden_size))
        self.step_embedding = StepEmbedding(self.hidden_size)
        self.transformer = DiffuRecTransformer.from_config(config)
        self.diffusion = diffusion_from_config(config)
        # The layers keep PyTorch's default init, as in the official code.
        self.init_sampling(config)

    def quantize(self, history):
        """SVQ: the code ``s_q`` of each history ``[batch, L, d]``; in training, first refresh the used codes."""
        flat = history.flatten(1)
        logits = self.code_logits(flat)
        if not self.training:
            return self.codebook[logits.argmax(dim=-1)]
        one_hot = F.gumbel_softmax(logits, tau=self.gumbel_temperature, hard=True)  # straight-through
        codebook = self.update_codebook(flat, one_hot.detach())
        return (one_hot @ codebook.flatten(1)).view_as(history)

    def update_codebook(self, flat_history, assignment):
        """Set every code used by ``assignment`` (one-hot ``[batch, K]``) to the mean of its histories.

        Returns the new codebook ``[K, L, d]`` (differentiable w.r.t. the histories) and stores it in the buffer.
        """
        counts = assignment.sum(dim=0)
        means = (assignment.t() @ flat_history) / counts.clamp(min=1)[:, None]
        codebook = torch.where(counts[:, None] > 0, means, self.codebook.flatten(1)).view_as(self.codebook)
        self.codebook = codebook.detach().clone()
        return codebook

    def forward(self, item_seq, item_seq_len):
        """The guidance ``s~ = lambda_history s + lambda_code s_q`` of the right-aligned histories, ``[batch, L, d]``,
        read at the last position."""
        item_seq = align_right(item_seq, item_seq_len)
        history = self.emb_layer_norm(self.emb_dropout(self.item_embedding(item_seq)))
        guidance = self.lambda_history * history + self.lambda_code * self.quantize(history)
        last_position = torch.full_like(item_seq_len, item_seq.size(1) - 1)
        return HistoryCondition(guidance, item_seq == 0, last_position)

    def denoise(self, x_t, timesteps, guidance):
        """Predict the clean target embedding from the guidance and the noisy target ``e_t``."""
        step = self.step_embedding(self.diffusion.rescaled_timesteps(timesteps))
        hidden = self.transformer(guidance.hidden + NOISY_ITEM_WEIGHT * (x_t + step)[:, None, :], guidance.padding)
        return self.gather_indexes(hidden, guidance.last_position)

    def discrepancy_loss(self, generated):
        """CDM: InfoNCE over cosine similarities of the generated items, each its own positive."""
        generated = F.normalize(generated, dim=-1)
        logits = generated @ generated.t() / self.contrast_temperature
        return F.cross_entropy(logits, torch.arange(len(generated), device=generated.device))

    def calculate_loss(self, interaction):
        guidance = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        target = interaction[self.POS_ITEM_ID]
        target_embedding = self.item_embedding(target)
        timesteps = self.diffusion.sample_timesteps(target.size(0), target.device)
        noisy_item = self.diffusion.q_sample(target_embedding, timesteps)
        generated = self.denoise(noisy_item, timesteps, guidance)
        recommendation_loss = F.cross_entropy(generated @ self.item_embedding.weight.t(), target)
        return recommendation_loss + self.lambda_contrast * self.discrepancy_loss(generated)

    @torch.no_grad()
    def generate(self, guidance, num_inference_steps=None):
        """Run the reverse chain guided by ``s~`` to the generated item embedding."""
        return self.diffusion.sample(
            lambda x_t, timesteps: self.denoise(x_t, timesteps, guidance),
            (guidance.hidden.size(0), self.hidden_size),
            guidance.hidden.device,
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
