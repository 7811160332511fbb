"""DiffuRec-specific tests: reverse chain, schedules, predict() and config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import numpy as np
import pytest
import torch

from tests.conftest import N_ITEMS, build_model, count_calls_in_full_sort
from tests.sequential_configs import DIFFUREC_SMALL


def test_reverse_chain_calls_the_approximator_once_per_step_with_fixed_large_variance(tiny_config):
    _, model, _, _, test_data = build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL, "diffusion_steps": 40})
    approximator_calls = count_calls_in_full_sort(model, model.output_norm, test_data)
    assert approximator_calls == 40  # one approximator pass over the history per reverse step (official default)
    betas = np.linspace(0.01 + 25 * 1e-4, 0.01 + 25 * 0.02, 40)  # trunc_linear with T = 40 (scale 1000 / T)
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(model.diffusion.model_variance[1:].double().numpy(), betas[1:], rtol=1e-6)


def test_ddim_inference_steps_shorten_the_chain(tiny_config):
    _, model, _, _, test_data = build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL, "inference_steps": 5})
    assert count_calls_in_full_sort(model, model.output_norm, test_data) == 5


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


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("beta_schedule", "exp", "beta_schedule must be one of"),
        ("lambda_uncertainty", 0.0, "lambda_uncertainty"),
        ("n_heads", 3, "n_heads"),
        ("hidden_act", "tanh", "hidden_act"),
        ("emb_dropout_prob", 1.0, "emb_dropout_prob"),
        ("diffusion_steps", 0, "diffusion_steps"),
    ],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build_model("DiffuRec", {**tiny_config, **DIFFUREC_SMALL, key: value})
