"""DiffuRec.

Reference:
    Zihao Li, Aixin Sun, Chenliang Li. "DiffuRec: A Diffusion Model for Sequential Recommendation."
    ACM Transactions on Information Systems (TOIS), 2023. Official code: WHUIR/DiffuRec.

The target item's embedding ``e_0`` is noised to ``x_t``. The approximator is a bidirectional Transformer over the
history whose inputs carry the noised target as uncertainty: ``z_i = e_i + lambda_i * (x_t + d_t)`` with
``lambda_i ~ N(delta, delta)`` drawn per position and dimension (``delta = lambda_uncertainty``) and ``d_t`` the step
embedding; its output at the last item is the prediction of ``e_0``. Training: cross-entropy of the inner products of
that prediction with all item embeddings (the official loss, no MSE term). Inference: the reverse DDPM chain from
``N(0, I)`` with the "fixed large" variance ``beta_t`` as in the official code, each step calling the approximator on
the history; the final ``x_0`` is "rounded" by inner product with every item embedding. ``inference_steps`` swaps
the chain for DDIM with fewer steps (not in the paper; for speed/accuracy trade-offs).

Config keys (defaults and comments in ``properties/model/DiffuRec.yaml``):
    hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, emb_dropout_prob, hidden_act, layer_norm_eps,
    attention_mask, diffusion_steps, beta_schedule, lambda_uncertainty, inference_steps, valid_inference_steps,
    ddim_eta.

Differences from the official code: padded positions are masked as attention keys by default (``attention_mask:
keys``, a fix: the official mask, ``queries``, only masks padded queries, so real items also attend to padding and a
history scores differently with more or less padding); the Transformer blocks (``DiffuRecTransformer``, shared with
DiQDiff) are PyTorch's pre-LayerNorm ``TransformerEncoderLayer`` (exact GELU instead of the tanh approximation; its
query/key/value projections use PyTorch's init); the step embedding is the plugin's sinusoidal one (frequencies
``10000^(-i/(d/2-1))``, sin before cos) of the step rescaled by ``1000 / T`` as officially; steps are sampled
uniformly (the official "lossaware" sampler is never fed losses, so it samples uniformly too); the padding item keeps
a zero embedding (``padding_idx``) and is never recommended. The official StepLR decay (x0.1 every 100 epochs) is
the yaml's ``lr_step_size`` / ``lr_gamma``, applied by ``DiffusionTrainer``.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.model.layers import DiffuRecTransformer, HistoryCondition, sinusoidal_embedding
from recbole_diffusion.model.sampling import ReverseChainSampling, without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import ConfigError, number, probability

BETA_SCHEDULES = ("trunc_linear", "linear", "cosine", "sqrt", "trunc_cosine")


@register_model
class DiffuRec(ReverseChainSampling, SequentialRecommender):
    input_type = InputType.POINTWISE

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        DiffuRecTransformer.check_config(config)
        hidden_size = config["hidden_size"]
        if hidden_size < 4 or hidden_size % 2:
            raise ConfigError("hidden_size", "an even int >= 4 (sinusoidal step embedding)", hidden_size)
        probability("emb_dropout_prob", config["emb_dropout_prob"])
        check_betas_config(config, BETA_SCHEDULES, variant="diffurec")
        number("lambda_uncertainty", config["lambda_uncertainty"], 0, low_open=True)
        number("ddim_eta", config["ddim_eta"], 0)
        cls.check_sampling_config(config, config["diffusion_steps"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.hidden_size = config["hidden_size"]
        emb_dropout_prob = config["emb_dropout_prob"]
        layer_norm_eps = config["layer_norm_eps"]
        self.lambda_uncertainty = config["lambda_uncertainty"]
        self.ddim_eta = config["ddim_eta"]

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(emb_dropout_prob)
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=layer_norm_eps)
        step_width = 4 * self.hidden_size
        self.step_mlp = nn.Sequential(
            nn.Linear(self.hidden_size, step_width), nn.SiLU(), nn.Linear(step_width, self.hidden_size)
        )
        self.transformer = DiffuRecTransformer.from_config(config)

        # DiffuRec's "linear" is DDPM's linear schedule stretched to T steps (ends scaled by 1000 / T).
        self.diffusion = diffusion_from_config(config, "diffurec", variance_type="fixed_large")
        self.init_sampling(config)

    def forward(self, item_seq, item_seq_len):
        """The embedded history (dropout, LayerNorm), its padding and the position of its last item."""
        history = self.layer_norm(self.emb_dropout(self.item_embedding(item_seq)))
        return HistoryCondition(history, item_seq == 0, item_seq_len - 1)

    def denoise(self, x_t, timesteps, history):
        """The approximator: predict ``e_0`` from the history and the noised target ``x_t`` at step t."""
        step = self.step_mlp(sinusoidal_embedding(self.diffusion.rescaled_timesteps(timesteps), self.hidden_size))
        lambdas = self.lambda_uncertainty * (1.0 + torch.randn_like(history.hidden))  # lambda_i ~ N(delta, delta)
        hidden = self.transformer(history.hidden + lambdas * (x_t + step).unsqueeze(1), history.padding)
        return self.gather_indexes(hidden, history.last_position)

    def calculate_loss(self, interaction):
        target = interaction[self.POS_ITEM_ID]
        target_embedding = self.item_embedding(target)
        timesteps = self.diffusion.sample_timesteps(target.size(0), target.device)
        noisy_target = self.diffusion.q_sample(target_embedding, timesteps)
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        predicted = self.denoise(noisy_target, timesteps, history)
        return F.cross_entropy(predicted @ self.item_embedding.weight.t(), target)

    @torch.no_grad()
    def generate(self, history, num_inference_steps=None):
        """Reverse the chain from ``N(0, I)`` to the predicted target embedding ``x_0``, ``[batch, hidden]``."""
        return self.diffusion.sample(
            lambda x_t, timesteps: self.denoise(x_t, timesteps, history),
            (history.hidden.size(0), self.hidden_size),
            history.hidden.device,
            num_inference_steps=self.sampler_steps(num_inference_steps),
            eta=self.ddim_eta,
        )

    def predict(self, interaction, num_inference_steps=None):
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        predicted = self.generate(history, num_inference_steps)
        return (predicted * self.item_embedding(interaction[self.ITEM_ID])).sum(dim=-1)

    def full_sort_predict(self, interaction, num_inference_steps=None):
        history = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return without_padding_item(self.generate(history, num_inference_steps) @ self.item_embedding.weight.t())
