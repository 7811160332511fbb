"""Tests for the shared diffusion core (schedules, GaussianDiffusion, guidance)."""

import math

import numpy as np
import pytest
import torch

from recbole_diffusion.diffusion import (
    SCHEDULES,
    GaussianDiffusion,
    betas_from_config,
    drop_condition,
    guided_output,
    make_betas,
)

T = 100


@pytest.fixture(autouse=True)
def seeded_single_thread_torch():
    """Seed torch and run single-threaded: the sampling chains are thousands of tiny ops,
    for which intra-op threading only adds overhead (and stalls badly on a busy machine)."""
    torch.manual_seed(0)
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


def numpy_linear_alphas_cumprod(num_steps, beta_start=1e-4, beta_end=0.02):
    return np.cumprod(1.0 - np.linspace(beta_start, beta_end, num_steps))


def float64(tensor):
    return tensor.double().numpy()


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_is_valid(schedule):
    betas = make_betas(schedule, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert ((betas > 0) & (betas < 1)).all()
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all()


def test_linear_schedule_matches_numpy():
    betas = make_betas("linear", T, beta_start=2e-4, beta_end=0.03)
    np.testing.assert_allclose(betas.numpy(), np.linspace(2e-4, 0.03, T), rtol=1e-12)
    diffusion = GaussianDiffusion(make_betas("linear", T))
    np.testing.assert_allclose(float64(diffusion.alphas_cumprod), numpy_linear_alphas_cumprod(T), rtol=1e-5)


def test_cosine_schedule_follows_cosine_alpha_bar():
    s = 0.008

    def alpha_bar(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    alphas_cumprod = torch.cumprod(1 - make_betas("cosine", T), 0).numpy()
    for i in (0, 10, T // 2, T - 5):  # alphas_cumprod[i] = alpha_bar((i+1)/T) / alpha_bar(0) before clipping
        assert alphas_cumprod[i] == pytest.approx(alpha_bar((i + 1) / T) / alpha_bar(0), rel=1e-10)


def test_sqrt_schedule_follows_sqrt_alpha_bar():
    s = 1e-4
    alphas_cumprod = torch.cumprod(1 - make_betas("sqrt", T), 0).numpy()
    expected = (1 - np.sqrt(np.arange(1, T) / T + s)) / (1 - math.sqrt(s))
    np.testing.assert_allclose(alphas_cumprod[:-1], expected, rtol=1e-9)
    assert make_betas("sqrt", T)[-1] == pytest.approx(0.999)  # alpha_bar(1) < 0 is clipped


def test_trunc_cosine_schedule_starts_at_alpha_bar_zero():
    alphas_cumprod = torch.cumprod(1 - make_betas("trunc_cosine", T), 0).numpy()
    expected = np.cos((np.arange(T) / T + 0.1) / 1.1 * np.pi / 2) ** 2
    np.testing.assert_allclose(alphas_cumprod, expected, rtol=1e-9)


def test_trunc_linear_schedule_matches_diffurec():
    scale = 1000 / T
    expected = np.linspace(scale * 1e-4 + 0.01, scale * 0.02 + 0.01, T)
    np.testing.assert_allclose(make_betas("trunc_linear", T).numpy(), expected, rtol=1e-12)
    short = make_betas("trunc_linear", 10)  # scaled beta_end > 1 falls back to scale * 0.001 + 0.01
    assert short[0].item() == pytest.approx(100 * 1e-4 + 0.01)
    assert short[-1].item() == pytest.approx(100 * 0.001 + 0.01)


def diffurec_betas(alpha_bar, num_steps, left=False, max_beta=0.999):
    """DiffuRec's get_named_beta_schedule loops (betas_for_alpha_bar and its "_left" variant), step by step."""
    betas = [min(1 - alpha_bar(0.0), max_beta)] if left else []
    for i in range(num_steps - 1 if left else num_steps):
        betas.append(min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta))
    return np.array(betas)


@pytest.mark.parametrize("num_steps", [32, 200])
def test_diffurec_schedules_match_its_reference_loops(num_steps):
    """DiffuRec's default is T = 32: sqrt, trunc_cos and trunc_lin must give its betas exactly (clipping included)."""
    sqrt = diffurec_betas(lambda u: 1 - math.sqrt(u + 1e-4), num_steps)
    np.testing.assert_allclose(make_betas("sqrt", num_steps).numpy(), sqrt, rtol=1e-12)
    trunc_cos = diffurec_betas(lambda u: math.cos((u + 0.1) / 1.1 * math.pi / 2) ** 2, num_steps, left=True)
    np.testing.assert_allclose(make_betas("trunc_cosine", num_steps).numpy(), trunc_cos, rtol=1e-12)
    scale = 1000 / num_steps
    trunc_lin = np.linspace(scale * 1e-4 + 0.01, scale * 0.02 + 0.01, num_steps)
    np.testing.assert_allclose(make_betas("trunc_linear", num_steps).numpy(), trunc_lin, rtol=1e-12)
    # DiffuRec's "linear" is DDPM's scaled by 1000 / T: our "linear" with those ends.
    linear = make_betas("linear", num_steps, beta_start=scale * 1e-4, beta_end=scale * 0.02)
    np.testing.assert_allclose(linear.numpy(), np.linspace(scale * 1e-4, scale * 0.02, num_steps), rtol=1e-12)


def test_linear_variance_schedule_is_linear_in_one_minus_alpha_bar():
    betas = make_betas("linear-var", T, noise_scale=0.5, noise_min=1e-3, noise_max=0.01)
    one_minus_alpha_bar = 1 - torch.cumprod(1 - betas, 0).numpy()
    np.testing.assert_allclose(one_minus_alpha_bar, np.linspace(0.5 * 1e-3, 0.5 * 0.01, T), rtol=1e-9)


def test_exp_schedule_matches_dreamrec_formula():
    beta_min, beta_max = 0.1, 10.0
    x = np.linspace(1, 2 * T + 1, T)
    expected = 1 - np.exp(-beta_min / T - x * 0.5 * (beta_max - beta_min) / T**2)
    np.testing.assert_allclose(make_betas("exp", T).numpy(), expected, rtol=1e-12)


def test_bad_schedule_arguments_raise():
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_betas("quadratic", T)
    with pytest.raises(ValueError, match="num_steps"):
        make_betas("linear", 0)
    with pytest.raises(ValueError, match="unknown arguments"):
        make_betas("linear", T, noise_scale=0.1)
    with pytest.raises(ValueError, match=r"outside \(0, 1\)"):
        make_betas("linear", T, beta_start=0.0)


# ----------------------------------------------------------------------------- closed forms


def test_buffers_are_float32_and_not_saved():
    diffusion = GaussianDiffusion(make_betas("linear", T))
    assert diffusion.num_steps == T
    assert diffusion.posterior_mean_coef1.dtype == torch.float32
    assert diffusion.state_dict() == {}


def test_posterior_coefficients_match_hand_formulas():
    betas = np.linspace(1e-4, 0.02, T)
    alphas_cumprod = np.cumprod(1 - betas)
    diffusion = GaussianDiffusion(make_betas("linear", T))
    for t in (1, 37, T - 1):
        ab, ab_prev = alphas_cumprod[t], alphas_cumprod[t - 1]
        coef1 = betas[t] * math.sqrt(ab_prev) / (1 - ab)
        coef2 = (1 - ab_prev) * math.sqrt(1 - betas[t]) / (1 - ab)
        variance = betas[t] * (1 - ab_prev) / (1 - ab)
        assert diffusion.posterior_mean_coef1[t].item() == pytest.approx(coef1, rel=1e-5)
        assert diffusion.posterior_mean_coef2[t].item() == pytest.approx(coef2, rel=1e-5)
        assert diffusion.posterior_variance[t].item() == pytest.approx(variance, rel=1e-5)
    assert diffusion.posterior_mean_coef1[0].item() == pytest.approx(1.0)
    assert diffusion.posterior_variance[0].item() == 0.0
    assert torch.isfinite(diffusion.posterior_log_variance_clipped).all()


def test_q_sample_matches_formula_and_broadcasts():
    diffusion = GaussianDiffusion(make_betas("linear", T))
    x0, noise = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    t = torch.tensor([0, 10, 50, T - 1])
    alphas_cumprod = torch.tensor(numpy_linear_alphas_cumprod(T), dtype=torch.float32)[t].view(4, 1, 1)
    expected = alphas_cumprod.sqrt() * x0 + (1 - alphas_cumprod).sqrt() * noise
    torch.testing.assert_close(diffusion.q_sample(x0, t, noise), expected)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_x0_eps_round_trip(schedule):
    diffusion = GaussianDiffusion(make_betas(schedule, T))
    x0, x_t = torch.randn(6, 8), torch.randn(6, 8)
    t = torch.tensor([0, 1, 20, 50, 90, T - 1])
    eps = diffusion.eps_from_x0(x_t, t, x0)
    torch.testing.assert_close(diffusion.x0_from_eps(x_t, t, eps), x0, atol=1e-4, rtol=1e-4)


def test_q_posterior_is_bayes_posterior():
    betas = np.linspace(1e-4, 0.02, T)
    alphas_cumprod = np.cumprod(1 - betas)
    diffusion = GaussianDiffusion(make_betas("linear", T))
    x0, x_t = torch.tensor([[0.7], [-1.2], [2.0]]), torch.tensor([[0.1], [0.4], [-0.9]])
    t = torch.tensor([1, 40, T - 1])
    mean, variance, _ = diffusion.q_posterior(x0, x_t, t)
    for i, step in enumerate(t.tolist()):
        # prior x_{t-1} ~ N(sqrt(ab_prev) x0, 1 - ab_prev); likelihood x_t ~ N(sqrt(alpha) x_{t-1}, beta)
        ab_prev, alpha, beta = alphas_cumprod[step - 1], 1 - betas[step], betas[step]
        precision = 1 / (1 - ab_prev) + alpha / beta
        weighted = math.sqrt(ab_prev) * x0[i].item() / (1 - ab_prev) + math.sqrt(alpha) * x_t[i].item() / beta
        bayes_mean = weighted / precision
        assert mean[i].item() == pytest.approx(bayes_mean, rel=1e-4, abs=1e-5)
        assert variance[i].item() == pytest.approx(1 / precision, rel=1e-4)
    mean0, variance0, _ = diffusion.q_posterior(x0, x_t, 0)
    torch.testing.assert_close(mean0, x0)
    assert variance0.item() == 0.0


# ----------------------------------------------------------------------------- reverse steps


def test_ddpm_step_adds_no_noise_at_t0():
    diffusion = GaussianDiffusion(make_betas("linear", T))
    x_t, x0_pred = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(diffusion.ddpm_step(x0_pred, x_t, torch.zeros(3, dtype=torch.long)), x0_pred)


def test_fixed_large_variance_is_beta_with_posterior_variance_at_t0():
    betas = np.linspace(1e-4, 0.02, T)
    alphas_cumprod = np.cumprod(1 - betas)
    small = GaussianDiffusion(make_betas("linear", T))
    large = GaussianDiffusion(make_betas("linear", T), variance_type="fixed_large")
    posterior_variance_1 = betas[1] * (1 - alphas_cumprod[0]) / (1 - alphas_cumprod[1])
    expected = np.concatenate([[posterior_variance_1], betas[1:]])  # improved-diffusion / DiffuRec FIXED_LARGE
    np.testing.assert_allclose(float64(large.model_variance), expected, rtol=1e-6)
    np.testing.assert_allclose(float64(large.model_log_variance), np.log(expected), rtol=1e-6)
    # the default stays the posterior ("fixed small") variance
    torch.testing.assert_close(small.model_variance, small.posterior_variance)
    torch.testing.assert_close(small.model_log_variance, small.posterior_log_variance_clipped)
    x_t, x0_pred = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 1, 50, T - 1])
    mean_small, variance_small, _, _ = small.p_mean_variance(x0_pred, x_t, t)
    mean_large, variance_large, log_variance_large, _ = large.p_mean_variance(x0_pred, x_t, t)
    torch.testing.assert_close(mean_large, mean_small)  # only the variance differs
    torch.testing.assert_close(variance_large[:, 0], torch.tensor(expected[t.numpy()], dtype=torch.float32))
    torch.testing.assert_close(variance_small[:, 0], small.posterior_variance[t])
    # a DDPM step adds sqrt(variance) * noise to the same mean, nothing at t = 0
    noise = torch.randn(4, 3)
    step = large.ddpm_step(x0_pred, x_t, t, noise=noise)
    expected_step = mean_large + (t != 0).float()[:, None] * torch.exp(0.5 * log_variance_large) * noise
    torch.testing.assert_close(step, expected_step)
    torch.testing.assert_close(step[0], x0_pred[0])


def test_ddim_with_eta_one_on_consecutive_steps_is_ddpm():
    diffusion = GaussianDiffusion(make_betas("linear", T))
    x_t, model_output = torch.randn(4, 5), torch.randn(4, 5)
    t = torch.tensor([1, 2, 50, T - 1])
    ddpm = diffusion.ddpm_step(model_output, x_t, t, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    ddim = diffusion.ddim_step(model_output, x_t, t, t - 1, eta=1.0, generator=generator)
    torch.testing.assert_close(ddim, ddpm, atol=1e-4, rtol=1e-4)


def test_ddim_step_to_minus_one_returns_x0_prediction():
    diffusion = GaussianDiffusion(make_betas("linear", T), prediction_type="eps")
    x_t, eps = torch.randn(2, 3), torch.randn(2, 3)
    t = torch.tensor([5, 60])
    torch.testing.assert_close(diffusion.ddim_step(eps, x_t, t, -1), diffusion.x0_from_eps(x_t, t, eps))


def test_ddim_timesteps():
    diffusion = GaussianDiffusion(make_betas("linear", T))
    assert diffusion.ddim_timesteps(T) == list(range(T - 1, -1, -1))
    assert diffusion.ddim_timesteps(1) == [T - 1]
    steps = diffusion.ddim_timesteps(10)
    assert len(steps) == 10 and steps[0] == T - 1 and steps[-1] == 0
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert diffusion.ddim_timesteps(3, start_step=40) == [40, 20, 0]
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match="num_inference_steps"):
            diffusion.ddim_timesteps(bad)


@pytest.mark.parametrize(
    "num_inference_steps, start_step, expected",
    [
        (None, None, list(range(T - 1, -1, -1))),
        (T, None, list(range(T - 1, -1, -1))),
        (4, None, [99, 66, 33, 0]),
        (None, 30, list(range(30, -1, -1))),
        (4, 30, [30, 20, 10, 0]),
    ],
)
def test_sample_visits_expected_timesteps(num_inference_steps, start_step, expected):
    diffusion = GaussianDiffusion(make_betas("linear", T))
    visited = []

    def record(x_t, t):
        assert t.shape == (3,) and t.dtype == torch.long and (t == t[0]).all()
        visited.append(t[0].item())
        return torch.zeros_like(x_t)

    diffusion.sample(record, (3, 2), "cpu", num_inference_steps, x_T=torch.randn(3, 2), start_step=start_step)
    assert visited == expected


def test_sample_keeps_gradients():
    diffusion = GaussianDiffusion(make_betas("linear", 10))
    scale = torch.tensor(0.5, requires_grad=True)
    out = diffusion.sample(lambda x, t: scale * x, (3, 2), "cpu", num_inference_steps=3)
    out.sum().backward()
    assert scale.grad != 0  # the output depends on the denoiser through the kept graph


def test_guided_output():
    cond, uncond = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])
    torch.testing.assert_close(guided_output(cond, uncond, 0.0), cond)
    # w = 2: 3 * cond - 2 * uncond
    torch.testing.assert_close(guided_output(cond, uncond, 2.0), torch.tensor([-3.0, 8.0]))
    torch.testing.assert_close(guided_output(cond, uncond, 2.0), uncond + 3.0 * (cond - uncond))


def test_drop_condition_replaces_whole_rows_at_rate_p_uncond():
    condition, null = torch.randn(4000, 3, 2), torch.full((3, 2), 9.0)
    assert torch.equal(drop_condition(condition, null, 0.0), condition)
    torch.manual_seed(0)
    dropped = drop_condition(condition, null, 0.3)
    replaced = (dropped == 9.0).all(dim=(1, 2))
    assert torch.equal(dropped[~replaced], condition[~replaced])  # a row is dropped whole or kept whole
    assert replaced.float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_bad_module_arguments_raise():
    with pytest.raises(ValueError, match="prediction_type"):
        GaussianDiffusion(make_betas("linear", T), prediction_type="v")
    with pytest.raises(ValueError, match="variance_type"):
        GaussianDiffusion(make_betas("linear", T), variance_type="learned")
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(torch.tensor([0.1, 1.0]))
    diffusion = GaussianDiffusion(make_betas("linear", T))
    with pytest.raises(ValueError, match="x_T is required"):
        diffusion.sample(lambda x, t: x, (2, 1), "cpu", start_step=10)
    with pytest.raises(ValueError, match="start_step"):
        diffusion.sample(lambda x, t: x, (2, 1), "cpu", start_step=T, x_T=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="x_T has shape"):
        diffusion.sample(lambda x, t: x, (2, 1), "cpu", x_T=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="eta"):
        diffusion.ddim_step(torch.zeros(2, 1), torch.zeros(2, 1), 5, 4, eta=-0.5)


# ----------------------------------------------------------------------------- Gaussian toy problem
#
# For data x0 ~ N(mu, s^2) (independent dims) the optimal denoiser is
# E[x0 | x_t] = mu + sqrt(ab) s^2 / (ab s^2 + 1 - ab) * (x_t - sqrt(ab) mu). Every reverse
# step is then affine in x_t plus independent noise, so the exact output mean/std of
# each sampler can be propagated in float64 and compared with the samples.

TOY_STEPS, TOY_BETA_END, NUM_SAMPLES = 200, 0.1, 20_000
MU, STD = np.array([2.0, -1.0]), np.array([0.5, 2.0])


def toy_setup(prediction_type, mu=MU, std=STD):
    betas = np.linspace(1e-4, TOY_BETA_END, TOY_STEPS)
    alphas_cumprod = np.cumprod(1 - betas)
    diffusion = GaussianDiffusion(make_betas("linear", TOY_STEPS, beta_end=TOY_BETA_END), prediction_type)
    ab_table = torch.tensor(alphas_cumprod)
    mu_t, std_t = torch.tensor(mu), torch.tensor(std)

    def denoise(x_t, t):
        ab = ab_table[t].unsqueeze(-1)
        x = x_t.double()
        x0 = mu_t + ab.sqrt() * std_t**2 / (ab * std_t**2 + 1 - ab) * (x - ab.sqrt() * mu_t)
        out = x0 if prediction_type == "x0" else (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return out.float()

    return diffusion, denoise, betas, alphas_cumprod


def exact_output_stats(betas, alphas_cumprod, steps, ddim, mu=MU, std=STD, mean=0.0, var=1.0):
    """Propagate the output mean/std of the DDPM (ddim=False) or eta=0 DDIM chain exactly."""
    mean, var = np.full_like(mu, mean), np.full_like(mu, var)
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        ab = alphas_cumprod[t]
        gain = math.sqrt(ab) * std**2 / (ab * std**2 + 1 - ab)

        def x0_hat(x):
            return mu + gain * (x - math.sqrt(ab) * mu)

        if ddim:
            ab_prev = alphas_cumprod[t_prev] if t_prev >= 0 else 1.0

            def step(x):
                eps = (x - math.sqrt(ab) * x0_hat(x)) / math.sqrt(1 - ab)
                return math.sqrt(ab_prev) * x0_hat(x) + math.sqrt(1 - ab_prev) * eps

            noise_var = 0.0
        else:
            ab_prev = alphas_cumprod[t - 1] if t > 0 else 1.0
            coef1 = betas[t] * math.sqrt(ab_prev) / (1 - ab)
            coef2 = (1 - ab_prev) * math.sqrt(1 - betas[t]) / (1 - ab)

            def step(x):
                return coef1 * x0_hat(x) + coef2 * x

            noise_var = betas[t] * (1 - ab_prev) / (1 - ab)
        slope, offset = step(np.ones_like(mu)) - step(np.zeros_like(mu)), step(np.zeros_like(mu))
        mean, var = slope * mean + offset, slope**2 * var + noise_var
    return mean, np.sqrt(var)


def assert_stats(samples, mean, std, mean_tol, std_rtol):
    samples = samples.double().numpy()
    np.testing.assert_allclose(samples.mean(0), mean, atol=mean_tol)
    np.testing.assert_allclose(samples.std(0), std, rtol=std_rtol)


def sampling_tolerances(std):
    """Four standard errors of the sample mean and (relative) sample std."""
    return 4 * std.max() / math.sqrt(NUM_SAMPLES), 4 / math.sqrt(2 * NUM_SAMPLES)


@pytest.mark.parametrize("prediction_type", ["x0", "eps"])
def test_ddpm_chain_recovers_gaussian_data(prediction_type):
    diffusion, denoise, betas, alphas_cumprod = toy_setup(prediction_type)
    generator = torch.Generator().manual_seed(0)
    samples = diffusion.sample(denoise, (NUM_SAMPLES, 2), "cpu", generator=generator)
    assert_stats(samples, MU, STD, mean_tol=0.05, std_rtol=0.05)
    mean, std = exact_output_stats(betas, alphas_cumprod, list(range(TOY_STEPS - 1, -1, -1)), ddim=False)
    assert_stats(samples, mean, std, *sampling_tolerances(std))


def test_ddpm_chain_recovers_1d_gaussian():
    mu, std = np.array([0.5]), np.array([1.5])
    diffusion, denoise, _, _ = toy_setup("x0", mu, std)
    samples = diffusion.sample(denoise, (NUM_SAMPLES, 1), "cpu", generator=torch.Generator().manual_seed(1))
    assert_stats(samples, mu, std, mean_tol=0.05, std_rtol=0.05)


@pytest.mark.parametrize("prediction_type", ["x0", "eps"])
def test_ddim_chain_matches_exact_ddim_and_data(prediction_type):
    diffusion, denoise, betas, alphas_cumprod = toy_setup(prediction_type)
    generator = torch.Generator().manual_seed(2)
    samples = diffusion.sample(denoise, (NUM_SAMPLES, 2), "cpu", num_inference_steps=10, generator=generator)
    # 10 DDIM steps shrink the std (a discretisation error of DDIM itself), so the std
    # is checked against the exact 10-step DDIM output; the mean against the data.
    mean, std = exact_output_stats(betas, alphas_cumprod, diffusion.ddim_timesteps(10), ddim=True)
    assert_stats(samples, mean, std, *sampling_tolerances(std))
    np.testing.assert_allclose(samples.double().mean(0).numpy(), MU, atol=0.05)


def test_ddim_with_many_steps_recovers_data():
    diffusion, denoise, _, _ = toy_setup("x0")
    generator = torch.Generator().manual_seed(4)
    samples = diffusion.sample(denoise, (NUM_SAMPLES, 2), "cpu", num_inference_steps=150, generator=generator)
    assert_stats(samples, MU, STD, mean_tol=0.05, std_rtol=0.05)


def test_eps_and_x0_prediction_give_the_same_chain():
    samples = {}
    for prediction_type in ("x0", "eps"):
        diffusion, denoise, _, _ = toy_setup(prediction_type)
        generator = torch.Generator().manual_seed(5)
        samples[prediction_type] = diffusion.sample(denoise, (1000, 2), "cpu", generator=generator)
    torch.testing.assert_close(samples["eps"], samples["x0"], atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("num_inference_steps", [None, 20])
def test_partial_chain_from_noised_data_recovers_data(num_inference_steps):
    diffusion, denoise, betas, alphas_cumprod = toy_setup("x0")
    generator = torch.Generator().manual_seed(6)
    standard = torch.randn(NUM_SAMPLES, 2, generator=generator, dtype=torch.float64)
    x0 = torch.tensor(MU) + torch.tensor(STD) * standard
    start_step = 60
    x_start = diffusion.q_sample(x0.float(), start_step, torch.randn(NUM_SAMPLES, 2, generator=generator))
    samples = diffusion.sample(
        denoise, (NUM_SAMPLES, 2), "cpu", num_inference_steps, x_T=x_start, generator=generator,
        start_step=start_step,
    )
    assert_stats(samples, MU, STD, mean_tol=0.05, std_rtol=0.05 if num_inference_steps is None else 0.15)
    ab = alphas_cumprod[start_step]
    if num_inference_steps is None:
        steps, ddim = list(range(start_step, -1, -1)), False
    else:
        steps, ddim = diffusion.ddim_timesteps(num_inference_steps, start_step), True
    mean, std = exact_output_stats(
        betas, alphas_cumprod, steps, ddim, mean=math.sqrt(ab) * MU, var=ab * STD**2 + 1 - ab
    )
    assert_stats(samples, mean, std, *sampling_tolerances(std))


def test_betas_from_config_uses_the_linear_ends_only_for_linear():
    config = {"beta_schedule": "linear", "diffusion_steps": 10, "beta_start": 0.001, "beta_end": 0.05}
    torch.testing.assert_close(betas_from_config(config), make_betas("linear", 10, beta_start=0.001, beta_end=0.05))
    torch.testing.assert_close(betas_from_config({**config, "beta_schedule": "cosine"}), make_betas("cosine", 10))
