"""DiffuRec-specific tests: reverse chain, schedules, predict() and config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import numpy as np
import pytest
import torch

from tests.conftest import N_ITEMS, build_model, count_calls_in_full_sort, model_on
from tests.sequential_configs import DIFFUREC_SMALL


def test_reverse_chain_calls_the_approximator_once_per_step_with_fixed_large_variance(tiny_config):
    _, model, _, _, test_data = build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL, "diffusion_steps": 40})
    approximator_calls = count_calls_in_full_sort(model, model.transformer, test_data)
    assert approximator_calls == 40  # one approximator pass over the history per reverse step (official default)
    betas = np.linspace(0.01 + 25 * 1e-4, 0.01 + 25 * 0.02, 40)  # trunc_linear with T = 40 (scale 1000 / T)
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(model.diffusion.model_variance[1:].double().numpy(), betas[1:], rtol=1e-6)


def test_ddim_inference_steps_shorten_the_chain(tiny_config):
    _, model, _, _, test_data = build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL, "inference_steps": 5})
    assert count_calls_in_full_sort(model, model.transformer, test_data) == 5


def test_linear_schedule_is_diffurecs_scaled_linear(tiny_config):
    linear = {"beta_schedule": "linear", "diffusion_steps": 40}
    _, model, _, _, _ = build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL, **linear})
    expected = np.linspace(25 * 1e-4, 25 * 0.02, 40)  # DDPM's ends scaled by 1000 / T
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), expected, rtol=1e-6)


def test_predict_matches_full_sort_scores(tiny_config):
    _, model, _, _, test_data = build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL})
    model.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(3)
    full_scores = model.full_sort_predict(batch)
    batch[model.ITEM_ID] = torch.randint(1, N_ITEMS + 1, (len(batch),))
    torch.manual_seed(3)
    scores = model.predict(batch)
    torch.testing.assert_close(scores, full_scores.gather(1, batch[model.ITEM_ID][:, None]).squeeze(1))


def loss_and_scores(model, train_data, test_data):
    """The training loss of the first (padded) training batch and the scores of the first (unpadded) test batch."""
    torch.manual_seed(0)
    model.train()
    loss = model.calculate_loss(next(iter(train_data)))
    model.eval()
    torch.manual_seed(1)
    return loss, model.full_sort_predict(next(iter(test_data))[0])


def test_scores_are_unchanged_by_the_move_of_the_transformer_to_layers(tiny_config):
    config = {**tiny_config, **DIFFUREC_SMALL, "attention_mask": "keys"}
    _, model, train_data, _, test_data = build_model("DiffuRec", config)
    loss, scores = loss_and_scores(model, train_data, test_data)
    # Computed with the model's own Transformer code before it became layers.DiffuRecTransformer (commit 076e9cc).
    torch.testing.assert_close(loss, torch.tensor(19.202672958374023))
    expected = [
        [7.65941858291626, -5.156270503997803, -0.0767303854227066, 0.22920706868171692, 5.815980434417725],
        [2.2731893062591553, -5.938979625701904, 7.68524694442749, 5.975818634033203, -4.8378400802612305],
    ]
    torch.testing.assert_close(scores[:2, 1:6], torch.tensor(expected))


def test_official_query_mask_changes_padded_training_batches_only(tiny_config):
    results = {}
    for attention_mask in ("keys", "queries"):
        _, model, train_data, _, test_data = build_model(
            "DiffuRec", {**tiny_config, **DIFFUREC_SMALL, "attention_mask": attention_mask}
        )
        results[attention_mask] = loss_and_scores(model, train_data, test_data)
    test_histories = next(iter(test_data))[0][model.ITEM_SEQ]
    assert (test_histories > 0).all()  # full test histories: no padding
    assert (next(iter(train_data))[model.ITEM_SEQ] == 0).any()  # training prefixes are padded
    assert abs(results["keys"][0].item() - results["queries"][0].item()) > 1e-3
    torch.testing.assert_close(results["keys"][1], results["queries"][1], rtol=0, atol=0)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("beta_schedule", "exp", "beta_schedule: one of"),
        ("lambda_uncertainty", 0.0, "lambda_uncertainty"),
        ("n_heads", 3, "n_heads"),
        ("hidden_act", "tanh", "hidden_act"),
        ("emb_dropout_prob", 1.0, "emb_dropout_prob"),
        ("diffusion_steps", 0, "diffusion_steps"),
        ("attention_mask", "padding", "attention_mask"),
    ],
)
def test_bad_config_is_rejected(tiny_config, sequential_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(sequential_dataset, "DiffuRec", {**tiny_config, **DIFFUREC_SMALL, key: value})
