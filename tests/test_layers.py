"""Shared network pieces: the sequence encoder's attention masks."""

import torch

from recbole_diffusion.model.layers import SequenceEncoder


def encoder(causal):
    return SequenceEncoder(
        max_seq_length=4, hidden_size=8, n_layers=1, n_heads=1, inner_size=8, hidden_dropout_prob=0.0,
        attn_dropout_prob=0.0, hidden_act="gelu", layer_norm_eps=1e-12, causal=causal,
    )


def test_causal_mask_hides_later_positions_and_padding():
    mask = encoder(causal=True).attention_mask(torch.tensor([[3, 5, 0]]))[0, 0]
    allowed = mask == 0
    assert allowed.tolist() == [[True, False, False], [True, True, False], [True, True, False]]


def test_bidirectional_mask_hides_padding_only():
    mask = encoder(causal=False).attention_mask(torch.tensor([[3, 5, 0]]))[0, 0]
    allowed = mask == 0
    assert allowed.tolist() == [[True, True, False]] * 3


def test_bidirectional_output_depends_on_later_items_causal_does_not():
    torch.manual_seed(0)
    for causal in (True, False):
        model = encoder(causal).eval()
        embeddings = torch.randn(1, 3, 8)
        changed = embeddings.clone()
        changed[0, 2] = torch.randn(8)
        sequence = torch.tensor([[1, 2, 3]])
        first_position = model(sequence, embeddings)[0, 0]
        first_position_changed = model(sequence, changed)[0, 0]
        assert torch.allclose(first_position, first_position_changed) == causal
