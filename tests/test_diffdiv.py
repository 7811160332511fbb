"""DiffDiv end to end on tiny synthetic data, plus its robust divergences and multi-channel inference."""

import math

import pytest
import torch
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, run_recbole_diffusion
from recbole_diffusion.model.sequential_recommender.diffdiv import beta_cross_entropy, gamma_cross_entropy
from tests.conftest import N_ITEMS

DIFFDIV_SMALL = {
    "hidden_size": 32,
    "inner_size": 32,
    "latent_size": 32,
    "diffusion_steps": 50,
    "learning_rate": 0.005,
}


def build(config_dict, dataset="markov"):
    config = Config(model="DiffDiv", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("DiffDiv")(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def test_one_epoch_and_full_sort(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIFFDIV_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), test_data._dataset.item_num)
    assert torch.isfinite(scores[:, 1:]).all()
    assert (scores[:, 0] == -torch.inf).all()  # the padding item is never recommended


def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config):
    config = {**tiny_config, **DIFFDIV_SMALL, "epochs": 8}
    markov = run_recbole_diffusion("DiffDiv", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DiffDiv", "random", config_dict=dict(config), saved=False)
    chance = 10 / N_ITEMS
    assert markov["test_result"]["hit@10"] > 0.8 > 4 * chance  # 0.96 to 1.0 over seeds 1, 7, 42, 2020
    # 300 test users: chance 0.167, std ~0.022; 0.27 is more than four standard deviations above chance.
    assert noise["test_result"]["hit@10"] < 0.27


def test_full_sort_score_is_max_over_channels(tiny_config):
    config, model, _, _, test_data = build({**tiny_config, **DIFFDIV_SMALL, "num_channels": 3, "inference_steps": 5})
    model.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(3)
    per_channel = model.channel_scores(batch)
    torch.manual_seed(3)
    scores = model.full_sort_predict(batch)
    torch.manual_seed(3)
    target_scores = model.predict(batch)
    assert per_channel.shape == (3, len(batch), test_data._dataset.item_num)
    assert torch.equal(scores[:, 1:], per_channel.max(dim=0).values[:, 1:])
    # Each channel draws its own guidance z, so the channels disagree.
    assert not torch.allclose(per_channel[0], per_channel[1])
    # predict() scores the given items the same way.
    targets = batch[model.ITEM_ID]
    torch.testing.assert_close(target_scores, scores[torch.arange(len(batch)), targets])


def test_channels_share_one_denoiser_call_per_step(tiny_config):
    config, model, _, _, test_data = build({**tiny_config, **DIFFDIV_SMALL, "num_channels": 3, "inference_steps": 5})
    model.eval()
    batch = next(iter(test_data))[0]
    rows = []
    model.denoiser.register_forward_hook(lambda module, args, output: rows.append(output.size(0)))
    model.full_sort_predict(batch)
    assert rows == [3 * len(batch)] * 5  # one batched call over all channels per DDIM step


def test_robust_divergences_closed_form():
    prediction = torch.zeros(2, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # log N(target_i; 0, I) in 2-D: -||target_i||^2 / 2 - log(2 pi).
    log_p = [-0.5 - math.log(2 * math.pi), -2.0 - math.log(2 * math.pi)]
    nll = -(log_p[0] + log_p[1]) / 2

    beta = 0.5
    expected_beta = sum(-(beta + 1) / beta * (math.exp(beta * lp) - 1) for lp in log_p) / 2
    assert beta_cross_entropy(prediction, target, beta).item() == pytest.approx(expected_beta, rel=1e-6)
    gamma = 0.5
    mean_p_gamma = (math.exp(gamma * log_p[0]) + math.exp(gamma * log_p[1])) / 2
    integral = (2 * math.pi) ** (-gamma) * (1 + gamma) ** (-1)  # integral of N(x; 0, I_2)^(1 + gamma)
    expected_gamma = -math.log(mean_p_gamma) / gamma + math.log(integral) / (1 + gamma)
    assert gamma_cross_entropy(prediction, target, gamma).item() == pytest.approx(expected_gamma, rel=1e-6)

    # Both tend to the Gaussian negative log-likelihood (MSE / 2 + const) as beta, gamma -> 0.
    prediction64 = prediction.double()
    target64 = target.double()
    assert beta_cross_entropy(prediction64, target64, 1e-7).item() == pytest.approx(nll, rel=1e-5)
    assert gamma_cross_entropy(prediction64, target64, 1e-7).item() == pytest.approx(nll, rel=1e-5)


def test_robust_divergence_down_weights_outliers():
    prediction = torch.zeros(2, 4, requires_grad=True)
    target = torch.tensor([[0.5, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])  # the second is an outlier
    for divergence in (beta_cross_entropy, gamma_cross_entropy):
        (grad,) = torch.autograd.grad(divergence(prediction, target, 0.5), prediction)
        # The plain NLL's gradient is proportional to the residual (ratio 10); robust ones shrink the outlier's.
        assert grad[1, 0].abs() / grad[0, 0].abs() < 1.0


def test_save_load_gives_identical_scores(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIFFDIV_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    reloaded = get_model("DiffDiv")(config, train_data._dataset)
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
    config = {**tiny_config, **DIFFDIV_SMALL, "epochs": 2}
    first = run_recbole_diffusion("DiffDiv", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("DiffDiv", "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion("DiffDiv", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("divergence", "kl", "divergence"),
        ("divergence_param", 0.0, "divergence_param"),
        ("num_channels", 0, "num_channels"),
        ("latent_size", 0, "latent_size"),
        ("kl_weight", -1.0, "kl_weight"),
        ("beta_schedule", "foo", "schedule"),
    ],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build({**tiny_config, **DIFFDIV_SMALL, key: value})
