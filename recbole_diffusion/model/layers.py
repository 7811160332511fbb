"""Network pieces shared by the plugin's models: a Transformer sequence encoder, the official DreamRec and PreferDiff
history encoder, DiffuRec's approximator Transformer, ADRec's causal Transformer, step embeddings, the item table of
the models that denoise item embeddings, and DiffRec's MLP denoiser with its step features (DiffRec, L-DiffRec,
DDRM)."""

import math
from functools import partial
from itertools import pairwise
from typing import NamedTuple

import torch
from recbole.model.layers import TransformerEncoder
from torch import nn

from recbole_diffusion.pretrain import load_embedding_file
from recbole_diffusion.validation import ConfigError, is_positive_int, number, one_of, positive_int, probability

# RecBole's FeedForward activations, as modules for GuidanceEncoder
ENCODER_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
ENCODER_ACTS = tuple(ENCODER_ACTIVATIONS)
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}  # DiffRec's MLP activations


def check_attention_sizes(config):
    """Check hidden_size, n_layers, n_heads (a divisor of hidden_size), inner_size and layer_norm_eps."""
    hidden_size = positive_int("hidden_size", config["hidden_size"])
    positive_int("n_layers", config["n_layers"])
    n_heads = positive_int("n_heads", config["n_heads"])
    if hidden_size % n_heads:
        raise ConfigError("n_heads", f"a positive divisor of hidden_size ({hidden_size})", n_heads)
    positive_int("inner_size", config["inner_size"])
    number("layer_norm_eps", config["layer_norm_eps"], 0, low_open=True)


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

    @staticmethod
    def check_config(config):
        """Check the config keys that :meth:`from_config` reads."""
        check_attention_sizes(config)
        probability("hidden_dropout_prob", config["hidden_dropout_prob"])
        probability("attn_dropout_prob", config["attn_dropout_prob"])
        one_of("hidden_act", config["hidden_act"], ENCODER_ACTS)

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


ENCODER_BLOCKS = ("official", "sasrec")


class GuidanceEncoder(nn.Module):
    """The history encoder of the official DreamRec and PreferDiff code (both share one SASRec variant).

    Item + position embeddings (no LayerNorm), dropout, padded positions set to zero, then ``n_layers`` blocks. A
    block: causal attention whose queries are the LayerNorm of its input and whose keys and values are the input
    itself, scaled by ``sqrt(hidden_size)`` (not per head), padded keys masked, no output projection, the normalised
    queries added back; then a feed-forward ``Linear - act - Linear`` with dropout, its own residual and LayerNorm,
    zero at padded positions; a final LayerNorm. ``residual_stream=False`` is DreamRec's block (the feed-forward
    reads the LayerNorm of the attention output; the block returns the LayerNorm of the feed-forward);
    ``residual_stream=True`` PreferDiff's (the attention and feed-forward outputs are added to the block input).
    Padded positions never reach a real one (the official code also zeroes their attention weights; their outputs
    are not read). Initialisation as officially: PyTorch's defaults, position embeddings N(0, 1); with
    ``residual_stream`` the attention projections Xavier-uniform with zero biases.

    ``forward(item_seq, item_embeddings)`` returns the hidden state of every position, ``[batch, length, hidden]``.
    """

    def __init__(self, config, max_seq_length, residual_stream):
        """``config``: a mapping with hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob,
        attn_dropout_prob, hidden_act and layer_norm_eps (checked by :func:`check_guidance_encoder_config`)."""
        super().__init__()
        hidden_size, inner_size, eps = config["hidden_size"], config["inner_size"], config["layer_norm_eps"]
        self.n_heads = config["n_heads"]
        self.residual_stream = residual_stream
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.attn_dropout = nn.Dropout(config["attn_dropout_prob"])
        self.blocks = nn.ModuleList()
        for _ in range(config["n_layers"]):
            block = nn.ModuleDict(
                {
                    "query_norm": nn.LayerNorm(hidden_size, eps=eps),
                    "query": nn.Linear(hidden_size, hidden_size),
                    "key": nn.Linear(hidden_size, hidden_size),
                    "value": nn.Linear(hidden_size, hidden_size),
                    "feed_forward_norm": nn.LayerNorm(hidden_size, eps=eps),
                    "feed_forward": nn.Sequential(
                        nn.Linear(hidden_size, inner_size),
                        ENCODER_ACTIVATIONS[config["hidden_act"]](),
                        nn.Linear(inner_size, hidden_size),
                        nn.Dropout(config["hidden_dropout_prob"]),
                    ),
                    "feed_forward_residual_norm": nn.LayerNorm(hidden_size, eps=eps),
                    "output_norm": nn.LayerNorm(hidden_size, eps=eps),
                }
            )
            if residual_stream:
                for name in ("query", "key", "value"):
                    nn.init.xavier_uniform_(block[name].weight)
                    nn.init.zeros_(block[name].bias)
            self.blocks.append(block)

    def attention(self, block, queries, keys, allowed):
        """Multi-head attention of ``queries`` over ``keys`` (both ``[batch, length, hidden]``) where ``allowed``
        ``[batch, length, length]``; the queries are added to the result."""
        batch, length, hidden = queries.shape

        def heads(tensor):
            return tensor.view(batch, length, self.n_heads, hidden // self.n_heads).transpose(1, 2)

        scores = heads(block["query"](queries)) @ heads(block["key"](keys)).transpose(-1, -2) / math.sqrt(hidden)
        scores = scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min)
        weights = self.attn_dropout(torch.softmax(scores, dim=-1))
        attended = (weights @ heads(block["value"](keys))).transpose(1, 2).reshape(batch, length, hidden)
        return attended + queries

    def forward(self, item_seq, item_embeddings):
        length = item_seq.size(1)
        not_padding = (item_seq > 0).unsqueeze(-1).to(item_embeddings.dtype)
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=item_seq.device))
        allowed = (item_seq > 0)[:, None, :] & causal
        positions = torch.arange(length, device=item_seq.device)
        hidden = self.dropout(item_embeddings + self.position_embedding(positions))
        for block in self.blocks:
            hidden = hidden * not_padding
            attended = self.attention(block, block["query_norm"](hidden), hidden, allowed)
            if self.residual_stream:
                hidden = hidden + attended
                hidden = hidden + self.feed_forward(block, block["feed_forward_norm"](hidden)) * not_padding
            else:
                hidden = self.feed_forward(block, block["feed_forward_norm"](attended)) * not_padding
            hidden = block["output_norm"](hidden)
        return hidden

    @staticmethod
    def feed_forward(block, hidden):
        """The block's feed-forward with its own residual and LayerNorm."""
        return block["feed_forward_residual_norm"](hidden + block["feed_forward"](hidden))


def guidance_encoder_from_config(config, max_seq_length, residual_stream):
    """The history encoder of ``encoder_block`` (one of :data:`ENCODER_BLOCKS`): ``official``, the
    :class:`GuidanceEncoder` of the official DreamRec (``residual_stream=False``) or PreferDiff (``True``) code;
    ``sasrec``, RecBole's SASRec block (:class:`SequenceEncoder`, causal)."""
    if config["encoder_block"] == "official":
        return GuidanceEncoder(config, max_seq_length, residual_stream)
    return SequenceEncoder.from_config(config, max_seq_length)


def check_guidance_encoder_config(config):
    """Check ``encoder_block``, the keys of both encoders (:meth:`SequenceEncoder.check_config`) and
    ``initializer_range``: ``~`` (the official code's initialisation: PyTorch's defaults) or the positive std of
    :func:`init_normal_weights`."""
    one_of("encoder_block", config["encoder_block"], ENCODER_BLOCKS)
    SequenceEncoder.check_config(config)
    if config["initializer_range"] is not None:
        number("initializer_range", config["initializer_range"], 0, low_open=True)


class HistoryCondition(NamedTuple):
    """A history as the condition of a Transformer denoiser: ``hidden`` ``[batch, length, hidden]``, ``padding``
    ``[batch, length]`` (True at padded positions) and ``last_position`` ``[batch]``, where the output is read."""

    hidden: torch.Tensor
    padding: torch.Tensor
    last_position: torch.Tensor

    def repeat(self, times):
        """The batch repeated ``times`` times (copy ``k`` of row ``i`` is row ``k * batch + i``)."""
        return HistoryCondition(
            self.hidden.repeat(times, 1, 1), self.padding.repeat(times, 1), self.last_position.repeat(times)
        )


ATTENTION_MASKS = ("keys", "queries")
HIDDEN_ACTS = ("gelu", "relu")
QUERY_MASK_VALUE = -1e9  # Score of every key for a padded query (official masked_fill value): uniform attention.


class DiffuRecTransformer(nn.Module):
    """DiffuRec's approximator Transformer, also DiQDiff's denoiser (both official codes share it).

    Pre-LayerNorm blocks (PyTorch's ``TransformerEncoderLayer(norm_first=True)``) without position embeddings, dropout
    after every block, then ``LayerNorm(dropout(.))``. ``forward(hidden, padding)`` returns ``[batch, length, hidden]``
    for inputs ``hidden`` ``[batch, length, hidden]`` and the boolean ``padding`` ``[batch, length]``.

    ``attention_mask``: ``"keys"`` hides padded positions from every query (ours); ``"queries"`` is the official
    mask, which only blanks the scores of padded queries (they attend uniformly to every position), so real items
    also attend to padding and their output depends on how much padding the row has.
    The feed-forward and attention output weights get the official ``xavier_normal_`` init; the query / key / value
    projections keep PyTorch's.
    """

    def __init__(
        self,
        hidden_size,
        n_layers,
        n_heads,
        inner_size,
        dropout_prob,
        hidden_act,
        layer_norm_eps,
        attention_mask="keys",
    ):
        super().__init__()
        self.n_heads = n_heads
        self.attention_mask = attention_mask
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden_size,
                n_heads,
                inner_size,
                dropout_prob,
                hidden_act,
                layer_norm_eps,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(n_layers)
        )
        for layer in self.layers:  # official init of the feed-forward and attention output weights
            for linear in (layer.linear1, layer.linear2, layer.self_attn.out_proj):
                nn.init.xavier_normal_(linear.weight)
        self.dropout = nn.Dropout(dropout_prob)
        self.output_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    @staticmethod
    def check_config(config):
        """Check the config keys that :meth:`from_config` reads."""
        check_attention_sizes(config)
        probability("hidden_dropout_prob", config["hidden_dropout_prob"])
        one_of("hidden_act", config["hidden_act"], HIDDEN_ACTS)
        one_of("attention_mask", config["attention_mask"], ATTENTION_MASKS)

    @classmethod
    def from_config(cls, config):
        """Build from the config keys hidden_size, n_layers, n_heads, inner_size, hidden_dropout_prob, hidden_act,
        layer_norm_eps and attention_mask."""
        return cls(
            config["hidden_size"],
            config["n_layers"],
            config["n_heads"],
            config["inner_size"],
            config["hidden_dropout_prob"],
            config["hidden_act"],
            config["layer_norm_eps"],
            config["attention_mask"],
        )

    def masks(self, hidden, padding):
        """The keyword masks of ``TransformerEncoderLayer`` for ``padding`` under ``self.attention_mask``."""
        if self.attention_mask == "keys":
            return {"src_key_padding_mask": padding}
        length = padding.size(1)
        padded_queries = padding[:, None, :, None].expand(-1, self.n_heads, -1, length).flatten(0, 1)
        additive = torch.zeros(padded_queries.shape, dtype=hidden.dtype, device=hidden.device)
        return {"src_mask": additive.masked_fill(padded_queries, QUERY_MASK_VALUE)}

    def forward(self, hidden, padding):
        masks = self.masks(hidden, padding)
        for layer in self.layers:
            hidden = self.dropout(layer(hidden, **masks))
        return self.output_norm(self.dropout(hidden))


class CausalTransformer(nn.Module):
    """ADRec's Transformer (its history encoder and its denoiser): post-LayerNorm blocks (PyTorch's
    ``TransformerEncoderLayer(norm_first=False)``, feed-forward GELU in the tanh form) with causal attention and no
    position embeddings. ``forward(hidden)`` maps ``[batch, length, hidden]`` to the same shape; position ``i`` sees
    positions ``j <= i`` only, so with right-padded histories (RecBole's) a real item never attends to padding.
    Every projection gets the official ``xavier_normal_`` init (query, key and value each as its own matrix).
    """

    def __init__(self, hidden_size, n_layers, n_heads, inner_size, dropout_prob, layer_norm_eps):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden_size,
                n_heads,
                inner_size,
                dropout_prob,
                partial(nn.functional.gelu, approximate="tanh"),
                layer_norm_eps,
                batch_first=True,
                norm_first=False,
            )
            for _ in range(n_layers)
        )
        for layer in self.layers:
            for weight in (*layer.self_attn.in_proj_weight.data.chunk(3), layer.self_attn.out_proj.weight):
                nn.init.xavier_normal_(weight)
            for linear in (layer.linear1, layer.linear2):
                nn.init.xavier_normal_(linear.weight)

    def forward(self, hidden):
        causal = nn.Transformer.generate_square_subsequent_mask(hidden.size(1), device=hidden.device)
        for layer in self.layers:
            hidden = layer(hidden, src_mask=causal, is_causal=True)
        return hidden


def next_item_targets(item_seq, item_seq_len, last_items):
    """The next item at every position of right-padded histories ``item_seq`` ``[batch, length]``: the history
    shifted left by one, ``last_items`` ``[batch]`` at position ``item_seq_len - 1``, padding (0) after it."""
    targets = torch.cat([item_seq[:, 1:], item_seq.new_zeros(len(item_seq), 1)], dim=1)
    targets[torch.arange(len(item_seq), device=item_seq.device), item_seq_len - 1] = last_items
    return targets


def left_aligned(rows, lengths):
    """Right-padded ``rows`` ``[batch, length]`` with ``lengths`` real entries each, moved right so that every row's
    entries end at the last position and its padding comes first (left padding)."""
    length = rows.size(1)
    shift = (length - lengths).unsqueeze(1)
    index = (torch.arange(length, device=rows.device).unsqueeze(0) - shift) % length
    return rows.gather(1, index)


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
        raise ConfigError(
            "item_emb_path",
            f"a file of hidden_size ({embedding.embedding_dim}) columns (or set hidden_size={rows.size(1)})",
            f"{item_emb_path} with {rows.size(1)} columns",
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


def step_features(timesteps, dim, max_period=10000.0):
    """DiffRec's sinusoidal step features ``[cos(t f_i), sin(t f_i)]``, ``f_i = max_period ** (-i / (dim // 2))``.

    (:func:`sinusoidal_embedding` puts sin first and divides by ``dim/2 - 1``; this keeps DiffRec's
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

    @staticmethod
    def check_config(config):
        """Check the config keys dims_dnn, embedding_size, mlp_act_func and dropout of DiffRec's denoiser."""
        dims = config["dims_dnn"]
        if not (isinstance(dims, list) and dims and all(map(is_positive_int, dims))):
            raise ConfigError("dims_dnn", "a non-empty list of positive ints", dims)
        embedding_size = config["embedding_size"]
        if not (is_positive_int(embedding_size) and embedding_size >= 4 and embedding_size % 2 == 0):
            raise ConfigError("embedding_size", "an even int >= 4 (sinusoidal step features)", embedding_size)
        one_of("mlp_act_func", config["mlp_act_func"], tuple(ACTIVATIONS))
        probability("dropout", config["dropout"])

    def forward(self, x_t, timesteps, condition=None):
        step = self.step_layer(step_features(timesteps, self.step_embedding_size))
        if self.norm:
            x_t = nn.functional.normalize(x_t, dim=-1)
        inputs = [self.dropout(x_t), step] + ([] if condition is None else [condition])
        return self.mlp(torch.cat(inputs, dim=-1))
