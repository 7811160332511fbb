"""Core additions for DiffRec: importance sampling of timesteps, the mean-only reverse chain, the SNR."""

import pytest
import torch

from recbole_diffusion.diffusion import GaussianDiffusion, make_betas
from recbole_diffusion.diffusion.timestep_sampler import LossAwareSampler


def filled_sampler(losses_per_step, history=3, uniform_prob=0.001):
    sampler = LossAwareSampler(len(losses_per_step), history, uniform_prob)
    for _ in range(history):
        sampler.update(torch.arange(len(losses_per_step)), torch.tensor(losses_per_step))
    return sampler


def test_uniform_until_every_step_has_a_full_history():
    sampler = LossAwareSampler(4, history_per_step=2)
    sampler.update(torch.tensor([0, 1, 2, 3, 0, 1, 2]), torch.tensor([9.0, 1, 1, 1, 9, 1, 1]))
    assert not sampler.is_warm()
    t, weights = sampler.sample(1000, "cpu")
    assert torch.equal(weights, torch.ones(1000))
    assert set(t.tolist()) == {0, 1, 2, 3}
    sampler.update(torch.tensor([3]), torch.tensor([1.0]))
    assert sampler.is_warm()


def test_probabilities_follow_root_mean_square_loss():
    sampler = LossAwareSampler(3, history_per_step=2, uniform_prob=0.1)
    sampler.update(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([3.0, 4.0, 1.0, 1.0, 0.0, 2.0]))
    rms = torch.tensor([(12.5) ** 0.5, 1.0, 2.0**0.5], dtype=torch.float64)
    expected = 0.9 * rms / rms.sum() + 0.1 / 3
    torch.testing.assert_close(sampler.probabilities(), expected)
    generator = torch.Generator().manual_seed(0)
    t, weights = sampler.sample(200_000, "cpu", generator=generator)
    frequencies = torch.bincount(t, minlength=3).double() / len(t)
    torch.testing.assert_close(frequencies, expected, atol=5e-3, rtol=0)
    torch.testing.assert_close(weights, (1.0 / (3 * expected[t])).float())


def test_weighted_loss_is_unbiased():
    """E_t~p[L_t / (T p_t)] = mean_t L_t: importance sampling keeps the expected loss of uniform steps."""
    losses = [5.0, 1.0, 0.5, 0.1]
    sampler = filled_sampler(losses)
    probabilities = sampler.probabilities()
    weights = 1.0 / (len(losses) * probabilities)
    expected_loss = (probabilities * weights * torch.tensor(losses, dtype=torch.float64)).sum()
    torch.testing.assert_close(expected_loss, torch.tensor(sum(losses) / len(losses), dtype=torch.float64))


def test_history_keeps_the_last_losses_of_each_step():
    sampler = LossAwareSampler(2, history_per_step=3)
    sampler.update(torch.tensor([0, 0, 0, 0, 0, 1]), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 7.0]))
    assert sampler.loss_history[0].tolist() == [3.0, 4.0, 5.0]
    assert sampler.loss_history[1].tolist() == [7.0, 0.0, 0.0]
    assert sampler.loss_count.tolist() == [3, 1]


def test_sampler_state_round_trips():
    sampler = filled_sampler([2.0, 1.0])
    copy = LossAwareSampler(2, 3)
    copy.load_state_dict(sampler.state_dict())
    torch.testing.assert_close(copy.probabilities(), sampler.probabilities())


@pytest.mark.parametrize(
    "kwargs", [{"num_steps": 0}, {"num_steps": 3, "history_per_step": 0}, {"num_steps": 3, "uniform_prob": 2.0}]
)
def test_bad_sampler_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        LossAwareSampler(**kwargs)


def test_snr_closed_form():
    betas = make_betas("linear-var", 5, noise_scale=0.1, noise_min=0.001, noise_max=0.02)
    diffusion = GaussianDiffusion(betas)
    alpha_bar = 1 - torch.linspace(1e-4, 2e-3, 5, dtype=torch.float64)
    torch.testing.assert_close(diffusion.snr(torch.arange(5)).double(), alpha_bar / (1 - alpha_bar), rtol=1e-5, atol=0)


@pytest.mark.parametrize("start_step", [6, 12])
def test_mean_chain_is_the_ddpm_chain_without_noise(start_step):
    """From a start past T - 1 (12; DDRM's official runs with more sampling than diffusion steps) the steps past
    T - 1 take step T - 1's coefficients (the official _extract_into_tensor clamps its index), while the denoiser
    sees the step itself."""
    diffusion = GaussianDiffusion(make_betas("linear", 10, beta_start=0.01, beta_end=0.2), prediction_type="x0")
    weight = torch.randn(3, 3)
    visited = []

    def denoise(x_t, t):
        visited.append(int(t[0]))
        return torch.tanh(x_t @ weight) + 0.01 * t[:, None]

    x_start = torch.randn(4, 3)
    result = diffusion.sample_mean(denoise, x_start, start_step=start_step)
    assert visited == list(range(start_step, -1, -1))
    expected = x_start
    for step in range(start_step, -1, -1):
        t = torch.full((4,), step)
        expected = diffusion.ddpm_step(denoise(expected, t), expected, t.clamp(max=9), noise=torch.zeros(4, 3))
    torch.testing.assert_close(result, expected)
    visited.clear()
    diffusion.sample_mean(denoise, x_start)
    assert visited == list(range(9, -1, -1))


def test_mean_chain_ends_on_the_last_x0_prediction():
    """At t = 0 the posterior mean is x0 itself, so a perfect x0-denoiser is returned exactly."""
    diffusion = GaussianDiffusion(make_betas("linear-var", 5, noise_scale=0.5), prediction_type="x0")
    target = torch.randn(2, 4)
    result = diffusion.sample_mean(lambda x_t, t: target, torch.randn(2, 4))
    torch.testing.assert_close(result, target)
