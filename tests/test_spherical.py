"""Closed-form checks of the spherical diffusion helpers (geodesic maths on the unit hypersphere)."""

import math

import pytest
import torch

from recbole_diffusion.diffusion import (
    GaussianDiffusion,
    exp_map,
    geodesic_distance,
    geodesic_q_sample,
    log_map,
    make_betas,
    project_to_sphere,
    right_angle_noise_scale,
    spherical_sample,
    spherical_step,
    tangent_projection,
)

DIM = 16


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def unit(batch=32, dim=DIM):
    return project_to_sphere(torch.randn(batch, dim, dtype=torch.float64))


def test_tangent_projection_is_orthogonal_and_idempotent():
    x, v = unit(), torch.randn(32, DIM, dtype=torch.float64)
    tangent = tangent_projection(x, v)
    assert torch.allclose((tangent * x).sum(-1), torch.zeros(32, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(tangent_projection(x, tangent), tangent, atol=1e-12)


def test_exp_map_stays_on_sphere_and_distance_equals_tangent_norm():
    x = unit()
    tangent = tangent_projection(x, torch.randn(32, DIM, dtype=torch.float64))
    # Lengths below pi, where the geodesic is the shortest path.
    tangent = tangent / tangent.norm(dim=-1, keepdim=True) * torch.linspace(0.01, 3.0, 32, dtype=torch.float64)[:, None]
    y = exp_map(x, tangent)
    assert torch.allclose(y.norm(dim=-1), torch.ones(32, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(geodesic_distance(x, y), tangent.norm(dim=-1), atol=1e-9)
    assert torch.allclose(log_map(x, y), tangent, atol=1e-8)


def test_exp_map_quarter_circle_and_zero_velocity():
    x = torch.tensor([[1.0, 0.0, 0.0]])
    quarter_turn = exp_map(x, torch.tensor([[0.0, math.pi / 2, 0.0]]))
    assert torch.allclose(quarter_turn, torch.tensor([[0.0, 1.0, 0.0]]), atol=1e-6)
    assert torch.equal(exp_map(x, torch.zeros(1, 3)), x)


def test_geodesic_distance_known_angles():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(geodesic_distance(x, y), torch.tensor([0.0, math.pi / 2, math.pi]), atol=1e-6)


def diffusion(steps=100):
    return GaussianDiffusion(make_betas("linear", steps), prediction_type="x0")


def test_geodesic_q_sample_on_sphere_with_closed_form_angle():
    process = diffusion()
    x0 = unit().float()
    noise = torch.randn_like(x0)
    for step in (0, 10, 99):
        t = torch.full((32,), step)
        x_t = geodesic_q_sample(process, x0, t, noise=noise)
        assert torch.allclose(x_t.norm(dim=-1), torch.ones(32), atol=1e-5)
        length = process.sqrt_one_minus_alphas_cumprod[step] * tangent_projection(x0, noise).norm(dim=-1)
        # The walk folds at the antipode: the angle reached is the length folded into [0, pi].
        folded = torch.remainder(length, 2 * math.pi)
        folded = torch.where(folded > math.pi, 2 * math.pi - folded, folded)
        assert torch.allclose(geodesic_distance(x0, x_t), folded, atol=1e-3)


def test_t0_barely_moves_and_noise_grows_with_t():
    process = diffusion()
    x0 = unit(512).float()
    steps = (0, 5, 20)
    angles = [geodesic_distance(x0, geodesic_q_sample(process, x0, torch.full((512,), step))).mean() for step in steps]
    # sqrt(beta_0) * sqrt(d - 1) = 0.01 * sqrt(15) ~ 0.039 rad.
    assert angles[0] < 0.05
    assert angles[0] < angles[1] < angles[2]


def test_right_angle_noise_scale_reaches_a_right_angle_monotonically():
    process = diffusion()
    scale = right_angle_noise_scale(process, 64)
    x0 = project_to_sphere(torch.randn(2048, 64))
    angles = [
        geodesic_distance(x0, geodesic_q_sample(process, x0, torch.full((2048,), step), noise_scale=scale)).mean()
        for step in (0, 25, 50, 99)
    ]
    assert angles == sorted(angles)
    assert angles[-1] == pytest.approx(math.pi / 2, abs=0.02)
    assert angles[0] < 0.05


def test_noise_scale_only_rescales_the_step_noise():
    """Scaled DDPM step == unscaled mean plus scale times the noise, projected to the sphere."""
    process = diffusion(10)
    x_t, x0_pred, t = unit(8).float(), unit(8).float(), torch.full((8,), 6)
    torch.manual_seed(3)
    scaled = spherical_step(process, x0_pred, x_t, t, noise_scale=0.25)
    torch.manual_seed(3)
    noise = torch.randn(8, DIM)
    mean, _, log_variance, _ = process.p_mean_variance(x0_pred, x_t, t)
    expected = project_to_sphere(mean + 0.25 * torch.exp(0.5 * log_variance) * noise)
    assert torch.allclose(scaled, expected, atol=1e-5)


def test_spherical_step_returns_unit_vectors_and_last_step_is_x0():
    process = diffusion(10)
    x_t, x0_pred = unit(8).float(), unit(8).float()
    for step in (9, 3):
        out = spherical_step(process, x0_pred, x_t, torch.full((8,), step))
        assert torch.allclose(out.norm(dim=-1), torch.ones(8), atol=1e-5)
    final = spherical_step(process, x0_pred, x_t, torch.zeros(8, dtype=torch.long))
    assert torch.allclose(final, x0_pred, atol=1e-5)
    ddim_final = spherical_step(process, x0_pred, x_t, torch.full((8,), 5), t_prev=-1)
    assert torch.allclose(ddim_final, x0_pred, atol=1e-5)


@pytest.mark.parametrize("num_inference_steps, calls", [(None, 20), (4, 4)])
def test_spherical_sample_reaches_a_fixed_target(num_inference_steps, calls):
    process = diffusion(20)
    target = unit(4).float()
    seen = []

    def denoise_fn(x_t, t):
        assert torch.allclose(x_t.norm(dim=-1), torch.ones(4), atol=1e-5)
        seen.append(int(t[0]))
        return target

    sample = spherical_sample(process, denoise_fn, target.shape, "cpu", num_inference_steps=num_inference_steps)
    assert len(seen) == calls and seen[0] == 19 and seen[-1] == 0
    assert torch.allclose(sample, target, atol=1e-5)
