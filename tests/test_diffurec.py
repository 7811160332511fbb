"""DiffuRec end to end on tiny synthetic data: training, full-sort evaluation, learnability, leakage, I/O."""

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, run_recbole_diffusion
from tests.conftest import N_ITEMS

DIFFUREC_SMALL = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 2}


def build(config_dict, dataset="markov"):
    config = Config(model="DiffuRec", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("DiffuRec")(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def test_one_epoch_and_full_sort(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIFFUREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), test_data._dataset.item_num)
    assert (scores[:, 0] == -torch.inf).all()  # the padding item is never recommended
    assert torch.isfinite(scores[:, 1:]).all()


def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config):
    config = {**tiny_config, **DIFFUREC_SMALL, "epochs": 10}
    markov = run_recbole_diffusion("DiffuRec", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DiffuRec", "random", config_dict=dict(config), saved=False)
    chance = 10 / N_ITEMS
    assert markov["test_result"]["hit@10"] > 0.8 > 4 * chance
    # 300 test users: chance 0.167, std ~0.022; 0.27 is more than four standard deviations above chance.
    assert noise["test_result"]["hit@10"] < 0.27


def test_reverse_chain_calls_the_approximator_once_per_step_with_fixed_large_variance(tiny_config):
    config, model, _, _, test_data = build({**tiny_config, **DIFFUREC_SMALL, "diffusion_steps": 40})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = []
    model.output_norm.register_forward_hook(lambda *args: calls.append(1))
    model.full_sort_predict(batch)
    assert len(calls) == 40  # one approximator pass over the history per reverse step, no DDIM shortcut
    betas = np.linspace(0.01 + 25 * 1e-4, 0.01 + 25 * 0.02, 40)  # trunc_linear with T = 40 (scale 1000 / T)
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(model.diffusion.model_variance[1:].double().numpy(), betas[1:], rtol=1e-6)


def test_linear_schedule_is_diffurecs_scaled_linear(tiny_config):
    _, model, _, _, _ = build({**tiny_config, **DIFFUREC_SMALL, "beta_schedule": "linear", "diffusion_steps": 40})
    expected = np.linspace(25 * 1e-4, 25 * 0.02, 40)  # DDPM's ends scaled by 1000 / T
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), expected, rtol=1e-6)


def test_predict_matches_full_sort_scores(tiny_config):
    config, model, _, _, test_data = build({**tiny_config, **DIFFUREC_SMALL})
    model.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(3)
    full_scores = model.full_sort_predict(batch)
    batch[model.ITEM_ID] = torch.randint(1, N_ITEMS + 1, (len(batch),))
    torch.manual_seed(3)
    scores = model.predict(batch)
    torch.testing.assert_close(scores, full_scores.gather(1, batch[model.ITEM_ID][:, None]).squeeze(1))


def test_save_load_gives_identical_scores(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIFFUREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    reloaded = get_model("DiffuRec")(config, train_data._dataset)
    reloaded.load_state_dict(checkpoint["state_dict"])
    model.eval()
    reloaded.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(7)
    original_scores = model.full_sort_predict(batch)
    torch.manual_seed(7)
    reloaded_scores = reloaded.full_sort_predict(batch)
    assert torch.equal(original_scores, reloaded_scores)


def test_same_seed_same_metrics(tiny_config):
    config = {**tiny_config, **DIFFUREC_SMALL, "epochs": 2}
    first = run_recbole_diffusion("DiffuRec", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("DiffuRec", "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion("DiffuRec", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


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
        build({**tiny_config, **DIFFUREC_SMALL, key: value})
