"""DiffRec2: sequential recommendation with diffusion models (Du et al.).

Reference:
    Hanwen Du, Huanhuan Yuan, Zhen Huang, Pengpeng Zhao, Xiaofang Zhou.
    "Sequential Recommendation with Diffusion Models." arXiv:2304.04541, 2023. No official code was released.
    Named DiffRec in the paper; DiffRec2 here, since RecBole's ``DiffRec`` is Wang et al.'s general model.

Items are embedded (``h_i = E(v_i)``) and only the target's embedding is noised, ``h_T^0 -> h_T^n``; the history
stays clean. The denoiser is a Transformer encoder over ``[h_1 + y_1 + z_n, ..., h_T^n + y_T + z_n]`` (learned
position embeddings ``y``, sinusoidal step embedding ``z_n``) whose output at the target position is the
prediction of ``h_T^0``. Items are recovered by ``softmax(E f + b)`` (the paper's rounding transition, with the
item embeddings as its weight). Loss: ``MSE(f, h_T^0) + rec_loss_weight * CE(softmax(E f + b), v_T)``.
Inference, ``inference_mode``: ``seeds`` (the paper's efficient inference) draws ``inference_seeds`` Gaussian
noises for the target slot, denoises each once at the timestep ``inference_timestep`` and averages the predictions;
``chain`` runs the full DDPM reverse chain from noise. Items are ranked by ``E f + b``.

Config keys (defaults and comments in ``properties/model/DiffRec2.yaml``):
    hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act,
    layer_norm_eps, initializer_range, diffusion_steps, beta_schedule, beta_start, beta_end, rec_loss_weight,
    inference_mode,
    inference_seeds, inference_timestep.

Differences from the paper: the embedding transition ``q(h^0 | v) = N(E(v), beta_0 I)`` is not sampled separately
(the target ``x0`` is ``E(v_T)``, as in DiffuRec/DreamRec; step 0 of the forward process adds beta_0 noise); the
MSE is averaged over dimensions (the paper writes a squared norm); the noised target is appended after the history,
so the encoder has ``MAX_ITEM_LIST_LENGTH + 1`` positions instead of dropping the oldest item at inference; the
Transformer is RecBole's SASRec block with bidirectional attention over the non-padded positions (the paper names
only "Transformer encoder"); ``z_n`` uses the plugin's sinusoid (sin half then cos half, DreamRec's frequencies);
the paper's "efficient training strategy" is not reproduced (each example gets one uniformly drawn step, as in
DDPM); the padding item is never recommended.
"""

from functools import partial

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.model.layers import HistoryCondition, SequenceEncoder, init_normal_weights, sinusoidal_embedding
from recbole_diffusion.model.sampling import without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import ConfigError, int_in, number, one_of, positive_int

INFERENCE_MODES = ("seeds", "chain")


@register_model
class DiffRec2(SequentialRecommender):
    input_type = InputType.POINTWISE

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        SequenceEncoder.check_config(config)
        if config["hidden_size"] < 4 or config["hidden_size"] % 2:
            raise ConfigError("hidden_size", "an even int >= 4 (sinusoidal step embedding)", config["hidden_size"])
        number("initializer_range", config["initializer_range"], 0, low_open=True)
        number("rec_loss_weight", config["rec_loss_weight"], 0)
        one_of("inference_mode", config["inference_mode"], INFERENCE_MODES)
        positive_int("inference_seeds", config["inference_seeds"])
        check_betas_config(config)
        timestep = config["inference_timestep"]
        if timestep is not None:
            int_in("inference_timestep", timestep, 0, config["diffusion_steps"] - 1, " (diffusion_steps - 1; ~ last)")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.rec_loss_weight = config["rec_loss_weight"]
        self.inference_mode = config["inference_mode"]
        self.inference_seeds = config["inference_seeds"]
        inference_timestep = config["inference_timestep"]

        self.diffusion = diffusion_from_config(config)
        last_step = self.diffusion.num_steps - 1
        self.inference_timestep = last_step if inference_timestep is None else inference_timestep

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.encoder = SequenceEncoder.from_config(config, self.max_seq_length + 1, causal=False)
        self.apply(partial(init_normal_weights, std=self.initializer_range))
        # Unit-variance item embeddings, on the scale of the Gaussian noise they are diffused into.
        nn.init.normal_(self.item_embedding.weight, std=1.0)

    def forward(self, item_seq, item_seq_len):
        """The clean history embeddings ``h_1..h_T-1`` with one more slot, for the target, right after the last item."""
        rows = torch.arange(item_seq.size(0), device=item_seq.device)
        slots = F.pad(item_seq, (0, 1))
        slots[rows, item_seq_len] = 1  # any id > 0: the target slot is a real (attendable) position
        return HistoryCondition(F.pad(self.item_embedding(item_seq), (0, 0, 0, 1)), slots == 0, item_seq_len)

    def denoise(self, x_t, timesteps, history):
        """Denoiser ``f``: predict the clean target embedding ``h_T^0`` from the noised ``h_T^n`` in the target slot;
        every position gets the step embedding ``z_n`` (the encoder adds the position embeddings)."""
        rows = torch.arange(x_t.size(0), device=x_t.device)
        embeddings = history.hidden.clone()
        embeddings[rows, history.last_position] = x_t
        embeddings = embeddings + sinusoidal_embedding(timesteps, self.hidden_size)[:, None, :]
        hidden = self.encoder((~history.padding).long(), embeddings)
        return hidden[rows, history.last_position]

    def item_logits(self, target_embedding):
        """Rounding transition ``p(v | h^0) = softmax(E h^0 + b)``: logits over all items."""
        return target_embedding @ self.item_embedding.weight.t() + self.item_bias

    def calculate_loss(self, interaction):
        target_item = interaction[self.POS_ITEM_ID]
        target_embedding = self.item_embedding(target_item)
        timesteps = self.diffusion.sample_timesteps(target_embedding.size(0), target_embedding.device)
        noisy_target = self.diffusion.q_sample(target_embedding, timesteps)
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        predicted = self.denoise(noisy_target, timesteps, history)
        rec_loss = F.cross_entropy(self.item_logits(predicted), target_item)
        return F.mse_loss(predicted, target_embedding) + self.rec_loss_weight * rec_loss

    @torch.no_grad()
    def generate(self, history):
        """The predicted target embedding ``h_T^0`` for each history, by ``inference_mode``."""
        batch_size, device = history.hidden.size(0), history.hidden.device
        if self.inference_mode == "chain":
            return self.diffusion.sample(
                lambda x_t, timesteps: self.denoise(x_t, timesteps, history), (batch_size, self.hidden_size), device
            )
        # Efficient inference: one denoising step from each of `inference_seeds` noises, averaged (one batched call).
        seeds = self.inference_seeds
        noise = torch.randn(seeds * batch_size, self.hidden_size, device=device)
        timesteps = torch.full((seeds * batch_size,), self.inference_timestep, dtype=torch.long, device=device)
        predicted = self.denoise(noise, timesteps, history.repeat(seeds))
        return predicted.view(seeds, batch_size, self.hidden_size).mean(dim=0)

    def predict(self, interaction):
        predicted = self.generate(self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))
        item = interaction[self.ITEM_ID]
        return (predicted * self.item_embedding(item)).sum(dim=-1) + self.item_bias[item]

    def full_sort_predict(self, interaction):
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return without_padding_item(self.item_logits(self.generate(history)))
