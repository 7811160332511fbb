"""PreferDiff-specific tests: the preference and cosine losses and the in-batch negatives of the core, what a training
step does to the positive and negative denoising errors, frozen and whitened file embeddings, the default sampler and
config validation. Training, learnability, save / load and reproducibility are in test_models.py."""

import math

import numpy as np
import pytest
import torch

from recbole_diffusion.diffusion import (
    cosine_regression_loss,
    in_batch_negative_mean,
    preference_loss,
    regression_loss,
    sampled_in_batch_negative_mean,
)
from recbole_diffusion.model.sequential_recommender import preferdiff
from recbole_diffusion.pretrain import whiten_embeddings
from recbole_diffusion.validation import ConfigError
from tests.conftest import build_model, count_calls_in_full_sort, model_on
from tests.sequential_configs import PREFERDIFF_SMALL


def test_cosine_regression_loss_on_hand_computed_cases():
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    prediction = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])  # cosines 1, 0, -1
    assert cosine_regression_loss(prediction, target).item() == pytest.approx((0 + 1 + 4) / 3)
    assert regression_loss(prediction, target, "cosine").item() == pytest.approx(5 / 3)
    assert regression_loss(prediction, target, "l2").item() == pytest.approx((4 + 5 + 4) / 6)  # mean over entries
    with pytest.raises(ValueError, match="loss_type"):
        regression_loss(prediction, target, "huber")


def test_preference_loss_on_hand_computed_cases():
    assert preference_loss(torch.tensor(1.0), torch.tensor(1.0), 5.0, 0.4).item() == pytest.approx(
        0.6 * math.log(2) + 0.4
    )
    value = preference_loss(torch.tensor(0.2), torch.tensor(0.6), 5.0, 0.4).item()
    assert value == pytest.approx(0.6 * math.log1p(math.exp(-2.0)) + 0.4 * 0.2, rel=1e-6)
    assert preference_loss(torch.tensor(0.3), torch.tensor(9.0), 5.0, 1.0).item() == pytest.approx(0.3)


def test_preference_term_lowers_the_positive_error_and_raises_the_negative_one():
    positive, negative = torch.tensor(0.5, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    preference_loss(positive, negative, 5.0, 0.0).backward()
    assert negative.grad < 0 < positive.grad  # gradient descent: negative error up, positive error down
    assert positive.grad == pytest.approx(-negative.grad)


def test_in_batch_negative_mean_excludes_the_rows_own_target():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 6.0], [1.0, 0.0]])  # rows 0 and 3: the same item
    expected = torch.stack([embeddings[[j for j in range(4) if j != i]].mean(dim=0) for i in range(4)])
    torch.testing.assert_close(in_batch_negative_mean(embeddings), expected)
    torch.testing.assert_close(in_batch_negative_mean(embeddings)[0], torch.tensor([1.0, 3.0]))  # duplicate counted
    with pytest.raises(ValueError, match="at least 2 rows"):
        in_batch_negative_mean(embeddings[:1])


def test_sampled_negatives_are_n_other_rows():
    one_hot = torch.eye(6)  # row j of a mean tells how much of row j it holds
    means = sampled_in_batch_negative_mean(one_hot, 3, generator=torch.Generator().manual_seed(0))
    assert torch.all(means.diagonal() == 0)  # never the row itself
    torch.testing.assert_close((means > 0).sum(dim=1), torch.full((6,), 3))
    torch.testing.assert_close(means[means > 0], torch.full((18,), 1 / 3))
    capped = sampled_in_batch_negative_mean(one_hot, 100)  # more than B - 1: all other rows
    torch.testing.assert_close(capped, in_batch_negative_mean(one_hot))


def test_whitening_gives_zero_mean_identity_covariance_and_mahalanobis_inner_products():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    rows = torch.randn(400, 5, generator=generator, dtype=torch.float64) @ mixing + 3.0
    whitened = whiten_embeddings(rows)
    torch.testing.assert_close(whitened.mean(dim=0), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(torch.cov(whitened.T), torch.eye(5, dtype=torch.float64), atol=1e-6, rtol=0)
    centred = rows - rows.mean(dim=0)
    mahalanobis = centred @ torch.linalg.inv(torch.cov(centred.T)) @ centred.T  # rotation-free formula
    torch.testing.assert_close(whitened @ whitened.T, mahalanobis, atol=1e-5, rtol=1e-5)
    assert whiten_embeddings(rows.float()).dtype == torch.float32


@pytest.fixture
def small_config(tiny_config):
    return {**tiny_config, **PREFERDIFF_SMALL}


def recorded_errors(monkeypatch):
    """Record the denoising errors of each loss computation: the positive's, then the negative's."""
    errors = []

    def recording(prediction, target, loss_type):
        loss = regression_loss(prediction, target, loss_type)
        errors.append(loss.item())
        return loss

    monkeypatch.setattr(preferdiff, "regression_loss", recording)
    return errors


def test_a_training_step_of_the_preference_term_raises_the_negative_error(small_config, monkeypatch):
    _, model, train_data, _, _ = build_model("PreferDiff", {**small_config, "preference_weight": 0.0})
    batch = next(iter(train_data))
    errors = recorded_errors(monkeypatch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        torch.manual_seed(0)  # the same steps, noise, dropout and null guidance
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
    positive_before, negative_before, positive_after, negative_after = errors
    assert negative_after > negative_before
    assert positive_after - negative_after < positive_before - negative_before


def test_batch_of_one_has_a_finite_loss(small_config, sequential_dataset):
    model = model_on(sequential_dataset, "PreferDiff", small_config)
    interaction = sequential_dataset.inter_feat[:1]
    loss = model.calculate_loss(interaction)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("whiten", [True, False])
def test_file_embeddings_are_frozen_and_whitened(small_config, tmp_path, whiten):
    _, probe, _, _, _ = build_model("PreferDiff", small_config)
    generator = np.random.default_rng(1)
    rotation = np.linalg.qr(generator.normal(size=(32, 32)))[0]
    mixing = rotation * np.linspace(1.0, 5.0, 32)  # correlated columns of unequal scales
    rows = generator.normal(size=(probe.n_items - 1, 32)) @ mixing + 2.0
    np.save(tmp_path / "items.npy", rows.astype(np.float32))
    settings = {**small_config, "item_emb_path": str(tmp_path / "items.npy"), "whiten_item_embeddings": whiten}
    _, model, train_data, _, _ = build_model("PreferDiff", settings)
    table = model.item_embedding.weight
    assert not table.requires_grad and torch.equal(table[0], torch.zeros(32))  # padding row as loaded
    items = table[1:].double()
    if whiten:
        torch.testing.assert_close(items.mean(dim=0), torch.zeros(32, dtype=torch.float64), atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.cov(items.T), torch.eye(32, dtype=torch.float64), atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(items, torch.from_numpy(rows.astype(np.float32)).double())
    before = table.detach().clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.calculate_loss(next(iter(train_data))).backward()
    optimizer.step()
    assert table.grad is None and torch.equal(model.item_embedding.weight, before)


def test_default_sampler_is_ddim_with_21_steps(small_config):
    # the yaml's sampler over the yaml's 2000 steps: two denoiser calls (guided) per DDIM step
    settings = {key: value for key, value in small_config.items() if key != "diffusion_steps"}
    config, model, _, _, test_data = build_model("PreferDiff", settings)
    assert (config["diffusion_steps"], config["inference_steps"], config["learner"]) == (2000, 21, "adamw")
    assert count_calls_in_full_sort(model, model.denoiser, test_data) == 2 * 21


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("loss_type", "huber", "loss_type: one of cosine, l2, got 'huber'"),
        ("gamma", -1.0, "gamma: a number >= 0, got -1.0"),
        ("preference_weight", 1.5, r"preference_weight: a number in \[0, 1\], got 1.5"),
        ("negative_sampling", "all", "negative_sampling: one of batch, random, got 'all'"),
        ("n_negatives", 0, "n_negatives: a positive int, got 0"),
        ("whiten_item_embeddings", "yes", "whiten_item_embeddings: True or False, got 'yes'"),
        ("inference_steps", 51, "inference_steps: an int in 1..50"),
    ],
)
def test_bad_config_is_rejected(small_config, sequential_dataset, key, value, message):
    with pytest.raises(ConfigError, match=message):
        model_on(sequential_dataset, "PreferDiff", {**small_config, key: value})
