"""DiffDiv-specific tests: robust divergences, multi-channel inference and config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import math

import pytest
import torch

from recbole_diffusion.model.sequential_recommender.diffdiv import beta_cross_entropy, gamma_cross_entropy
from tests.conftest import build_model, model_on
from tests.sequential_configs import DIFFDIV_SMALL


def test_full_sort_score_is_max_over_channels(tiny_config):
    channels = {"num_channels": 3, "inference_steps": 5}
    _, model, _, _, test_data = build_model("DiffDiv", {**tiny_config, **DIFFDIV_SMALL, **channels})
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
    channels = {"num_channels": 3, "inference_steps": 5}
    _, model, _, _, test_data = build_model("DiffDiv", {**tiny_config, **DIFFDIV_SMALL, **channels})
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
def test_bad_config_is_rejected(tiny_config, sequential_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(sequential_dataset, "DiffDiv", {**tiny_config, **DIFFDIV_SMALL, key: value})
