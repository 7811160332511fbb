"""DiQDiff-specific tests: its codebook (SVQ), discrepancy loss (CDM), DDIM inference and config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import pytest
import torch

from tests.conftest import build_model, count_calls_in_full_sort, model_on
from tests.sequential_configs import DIQDIFF_SMALL


def test_codebook_update_is_mean_of_assigned_sequences(tiny_config):
    _, model, *_ = build_model("DiQDiff", {**tiny_config, **DIQDIFF_SMALL})
    codes, size = model.codebook.shape[0], model.codebook[0].numel()
    model.codebook.fill_(7.0)
    histories = torch.arange(4 * size, dtype=torch.float).view(4, size)
    assignment = torch.zeros(4, codes)
    assignment[[0, 1, 2, 3], [0, 2, 0, 0]] = 1.0  # code 0: histories 0, 2, 3; code 2: history 1; codes 1, 3 unused
    codebook = model.update_codebook(histories, assignment).flatten(1)
    assert torch.allclose(codebook[0], histories[[0, 2, 3]].mean(dim=0))
    assert torch.equal(codebook[2], histories[1])
    assert (codebook[[1, 3]] == 7.0).all()  # an unused code keeps its value
    assert torch.equal(model.codebook.flatten(1), codebook)  # stored for evaluation


def test_quantize_picks_one_code_and_evaluation_ignores_the_rest_of_the_batch(tiny_config):
    _, model, _, _, test_data = build_model("DiQDiff", {**tiny_config, **DIQDIFF_SMALL})
    history = torch.randn(16, model.max_seq_length, model.hidden_size)
    model.train()
    codes = model.quantize(history)  # each training history gets the mean of the histories sharing its code
    assert all(any(torch.allclose(code, c) for c in model.codebook) for code in codes)
    assert len({tuple(code.flatten().tolist()) for code in codes}) <= model.num_codes
    model.eval()
    batch = next(iter(test_data))[0]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    whole = model.forward(item_seq, item_seq_len).hidden
    part = model.forward(item_seq[:5], item_seq_len[:5]).hidden
    assert torch.equal(whole[:5], part)


def test_discrepancy_loss_falls_when_generated_items_are_pushed_apart(tiny_config):
    _, model, *_ = build_model("DiQDiff", {**tiny_config, **DIQDIFF_SMALL})
    torch.manual_seed(0)
    close = torch.randn(1, 32) + 0.05 * torch.randn(8, 32)  # eight nearly identical generated items
    assert model.discrepancy_loss(torch.eye(8, 32)) < model.discrepancy_loss(close)
    generated = close.clone().requires_grad_(True)
    losses = []
    for _ in range(20):  # gradient descent on L_c alone
        loss = model.discrepancy_loss(generated)
        losses.append(loss.item())
        (gradient,) = torch.autograd.grad(loss, generated)
        generated = (generated - 5.0 * gradient).detach().requires_grad_(True)
    assert losses[-1] < 0.1 * losses[0]
    assert mean_cosine(generated.detach()) < 0.8 < 0.95 < mean_cosine(close)  # the items were pushed apart


def mean_cosine(vectors):
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    return ((unit @ unit.t()).sum() - len(unit)) / (len(unit) * (len(unit) - 1))


def test_align_right_moves_histories_to_the_end():
    from recbole_diffusion.model.sequential_recommender.diqdiff import align_right

    item_seq = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]])
    aligned = align_right(item_seq, torch.tensor([3, 5, 1]))
    assert aligned.tolist() == [[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]]


def test_ddim_inference_steps(tiny_config):
    _, model, _, _, test_data = build_model("DiQDiff", {**tiny_config, **DIQDIFF_SMALL, "inference_steps": 3})
    denoiser_calls = count_calls_in_full_sort(model, model.transformer, test_data)
    assert denoiser_calls == 3  # one denoiser call per DDIM step (no classifier-free guidance)


def test_denoiser_is_diffurecs_transformer_with_the_chosen_mask(tiny_config):
    from recbole_diffusion.model.layers import DiffuRecTransformer

    losses = {}
    for attention_mask in ("keys", "queries"):
        config = {**tiny_config, **DIQDIFF_SMALL, "attention_mask": attention_mask}
        _, model, train_data, *_ = build_model("DiQDiff", config)
        assert isinstance(model.transformer, DiffuRecTransformer) and model.transformer.attention_mask == attention_mask
        assert not any("position" in name for name, _ in model.named_parameters())  # no position embeddings
        batch = next(iter(train_data))
        assert (batch[model.ITEM_SEQ] == 0).any()  # padded training prefixes
        torch.manual_seed(0)
        losses[attention_mask] = model.calculate_loss(batch).item()
    assert abs(losses["keys"] - losses["queries"]) > 1e-3


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("num_codes", 0, "num_codes"),
        ("gumbel_temperature", 0.0, "gumbel_temperature"),
        ("contrast_temperature", -1.0, "contrast_temperature"),
        ("lambda_contrast", -0.1, "lambda_contrast"),
        ("emb_dropout_prob", 1.0, "emb_dropout_prob"),
        ("inference_steps", 0, "inference_steps"),
        ("beta_schedule", "foo", "schedule"),
        ("attention_mask", "padding", "attention_mask"),
        ("n_heads", 3, "n_heads"),
    ],
)
def test_bad_config_is_rejected(tiny_config, sequential_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(sequential_dataset, "DiQDiff", {**tiny_config, **DIQDIFF_SMALL, key: value})
