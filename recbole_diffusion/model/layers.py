"""Network pieces shared by the plugin's models: a Transformer sequence encoder, step embeddings and the item table
of the models that denoise item embeddings."""

import math

import torch
from recbole.model.layers import TransformerEncoder
from torch import nn

from recbole_diffusion.model.pretrain import load_embedding_file


class SequenceEncoder(nn.Module):
    """SASRec's encoder: item + learned position embeddings, LayerNorm, dropout, Transformer blocks.

    ``forward(item_seq, item_embeddings)`` returns the hidden state of every position, ``[batch, length, hidden]``;
    padded positions (item id 0) never serve as keys. ``causal=True`` (SASRec, DreamRec) lets position ``i`` attend
    to positions ``j <= i`` only; ``causal=False`` attends over the whole history (BERT4Rec-style).
    """

    def __init__(
        self,
        max_seq_length,
        hidden_size,
        n_layers,
        n_heads,
        inner_size,
        hidden_dropout_prob,
        attn_dropout_prob,
        hidden_act,
        layer_norm_eps,
        causal=True,
    ):
        super().__init__()
        self.causal = causal
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)
        self.transformer = TransformerEncoder(
            n_layers=n_layers,
            n_heads=n_heads,
            hidden_size=hidden_size,
            inner_size=inner_size,
            hidden_dropout_prob=hidden_dropout_prob,
            attn_dropout_prob=attn_dropout_prob,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
        )

    @classmethod
    def from_config(cls, config, max_seq_length, causal=True):
        """Build from the SASRec-style config keys hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob,
        attn_dropout_prob, hidden_act and layer_norm_eps."""
        return cls(
            max_seq_length=max_seq_length,
            hidden_size=config["hidden_size"],
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
            causal=causal,
        )

    def attention_mask(self, item_seq):
        """Additive mask ``[batch, 1, length, length]``: 0 where position i may attend to j, else -10000."""
        length = item_seq.size(1)
        allowed = (item_seq > 0)[:, None, None, :].expand(-1, -1, length, -1)
        if self.causal:
            allowed = allowed & torch.tril(torch.ones(length, length, dtype=torch.bool, device=item_seq.device))
        return torch.where(allowed, 0.0, -10000.0)

    def forward(self, item_seq, item_embeddings):
        positions = torch.arange(item_seq.size(1), device=item_seq.device).expand_as(item_seq)
        hidden = self.dropout(self.layer_norm(item_embeddings + self.position_embedding(positions)))
        return self.transformer(hidden, self.attention_mask(item_seq), output_all_encoded_layers=False)[-1]


def init_normal_weights(module, std):
    """RecBole's SASRec initialisation, for ``model.apply``: Linear and Embedding weights ~ N(0, std), Linear
    biases 0, LayerNorm the identity."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


def init_item_embedding(embedding, item_emb_path, std=1.0):
    """Initialise a model's item table: trainable ``N(0, std^2)`` rows, or the rows of the ``.npy`` file
    ``item_emb_path`` (``[n_items - 1 or n_items, hidden_size]``, RecBole's internal id order), frozen."""
    if not item_emb_path:
        nn.init.normal_(embedding.weight, std=std)
        return
    rows = load_embedding_file(item_emb_path, embedding.num_embeddings, "item")
    if rows.size(1) != embedding.embedding_dim:
        raise ValueError(
            f"item_emb_path: {item_emb_path} has {rows.size(1)} columns; the model's hidden_size is "
            f"{embedding.embedding_dim} (set hidden_size={rows.size(1)})"
        )
    embedding.weight.data.copy_(rows)
    embedding.weight.requires_grad_(False)


def sinusoidal_embedding(timesteps, dim, max_period=10000.0):
    """Transformer-style sinusoidal embedding ``[sin(t f_i), cos(t f_i)]`` of integer steps, shape [batch, dim].

    Frequencies ``f_i = max_period ** (-i / (dim/2 - 1))`` for ``i = 0 .. dim/2 - 1``, as in DreamRec's code.
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"sinusoidal_embedding: dim must be even and >= 4, got {dim}")
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, device=timesteps.device, dtype=torch.float32) / (half - 1)
    )
    angles = timesteps.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class StepEmbedding(nn.Module):
    """Diffusion step embedding: sinusoidal features, then Linear(d, 2d), GELU, Linear(2d, d)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, timesteps):
        return self.mlp(sinusoidal_embedding(timesteps, self.dim))
