"""Shared network pieces: the attention masks of the sequence encoder and of DiffuRec's Transformer, and the official
DreamRec and PreferDiff history encoder."""

import pytest
import torch

from recbole_diffusion.model.layers import DiffuRecTransformer, GuidanceEncoder, SequenceEncoder


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


def diffurec_transformer(attention_mask):
    torch.manual_seed(0)  # the same weights for both masks
    return DiffuRecTransformer(8, 2, 2, 16, 0.0, "gelu", 1e-12, attention_mask=attention_mask)


@pytest.mark.parametrize("grad", [True, False])  # with and without PyTorch's inference fast path
def test_diffurec_masks_agree_without_padding_and_differ_with_it(grad):
    keys, queries = diffurec_transformer("keys"), diffurec_transformer("queries")
    hidden = torch.randn(3, 5, 8)
    no_padding = torch.zeros(3, 5, dtype=torch.bool)
    padding = torch.tensor([[False] * 5, [True, True, False, False, False], [True] * 4 + [False]])  # left padding
    with torch.set_grad_enabled(grad):
        for block in (keys, queries):
            block.eval()
        torch.testing.assert_close(keys(hidden, no_padding), queries(hidden, no_padding), rtol=0, atol=0)
        by_keys, by_queries = keys(hidden, padding), queries(hidden, padding)
    torch.testing.assert_close(by_keys[0], by_queries[0])  # an unpadded row is the same under both masks
    for row in (1, 2):  # real items attend to padding under the official mask only
        assert not torch.allclose(by_keys[row, -1], by_queries[row, -1], atol=1e-4)


def test_diffurec_key_mask_ignores_padding_official_query_mask_does_not():
    hidden = torch.randn(1, 4, 8)
    padding = torch.tensor([[True, True, False, False]])
    other_padding_values = hidden.clone()
    other_padding_values[0, :2] = torch.randn(2, 8)
    for attention_mask, ignored in (("keys", True), ("queries", False)):
        block = diffurec_transformer(attention_mask).eval()
        last, last_changed = block(hidden, padding)[0, -1], block(other_padding_values, padding)[0, -1]
        assert torch.allclose(last, last_changed, atol=1e-6) == ignored


def test_diffurec_query_mask_makes_padded_queries_attend_uniformly():
    block = diffurec_transformer("queries")
    mask = block.masks(torch.zeros(1, 3, 8), torch.tensor([[True, False, False]]))["src_mask"]
    assert mask.shape == (2, 3, 3)  # one [length, length] mask per head
    assert (mask[:, 0] == -1e9).all() and (mask[:, 1:] == 0).all()


def test_diffurec_transformer_config_check_rejects_an_unknown_mask():
    settings = {"hidden_size": 8, "n_layers": 2, "n_heads": 2, "inner_size": 16, "hidden_dropout_prob": 0.0}
    settings.update(hidden_act="gelu", layer_norm_eps=1e-12, attention_mask="both")
    with pytest.raises(ValueError, match="attention_mask: one of keys, queries, got 'both'"):
        DiffuRecTransformer.check_config(settings)


def guidance_encoder_config(hidden_size=8, n_layers=2, dropout=0.0):
    return {
        "hidden_size": hidden_size, "n_layers": n_layers, "n_heads": 2, "inner_size": hidden_size,
        "hidden_dropout_prob": dropout, "attn_dropout_prob": dropout, "hidden_act": "relu", "layer_norm_eps": 1e-5,
    }


def guidance_encoder(residual_stream, n_layers=2):
    return GuidanceEncoder(guidance_encoder_config(n_layers=n_layers), 5, residual_stream)


@pytest.mark.parametrize("residual_stream", [False, True])
def test_guidance_encoder_is_causal_and_blind_to_padding(residual_stream):
    torch.manual_seed(0)
    model = guidance_encoder(residual_stream).eval()
    sequence = torch.tensor([[1, 2, 3, 0, 0]])
    embeddings = torch.randn(1, 5, 8)
    hidden = model(sequence, embeddings)
    changed = embeddings.clone()
    changed[0, 2] = torch.randn(8)  # a later item
    changed[0, 3:] = torch.randn(2, 8)  # whatever the padding rows hold
    hidden_changed = model(sequence, changed)
    torch.testing.assert_close(hidden_changed[0, :2], hidden[0, :2])
    assert not torch.allclose(hidden_changed[0, 2], hidden[0, 2])
    shorter = model(sequence[:, :4], embeddings[:, :4])  # less padding after the items
    torch.testing.assert_close(shorter[0, :3], hidden[0, :3])


def test_guidance_encoder_blocks_differ_as_their_official_codes():
    """DreamRec's block has no residual stream: its output forgets the input except through the attention (the
    normalised queries are added back); PreferDiff's adds the input to the attention and feed-forward outputs."""
    torch.manual_seed(0)
    plain, residual = guidance_encoder(False, n_layers=1), guidance_encoder(True, n_layers=1)
    residual.load_state_dict(plain.state_dict())
    sequence, embeddings = torch.tensor([[1, 2, 3]]), torch.randn(1, 3, 8)
    assert not torch.allclose(plain.eval()(sequence, embeddings), residual.eval()(sequence, embeddings))


def test_guidance_encoder_initialisation_is_the_official_one():
    torch.manual_seed(0)
    config = guidance_encoder_config(hidden_size=64, n_layers=1, dropout=0.1)
    model = GuidanceEncoder(config, 50, residual_stream=True)
    assert abs(model.position_embedding.weight.std().item() - 1.0) < 0.05  # nn.Embedding's N(0, 1)
    query = model.blocks[0]["query"]
    assert abs(query.weight.std().item() - (2 / 128) ** 0.5) < 0.01 and not query.bias.any()  # Xavier-uniform
    plain = GuidanceEncoder(config, 50, residual_stream=False)
    assert plain.blocks[0]["query"].bias.any()  # PyTorch's default Linear initialisation
