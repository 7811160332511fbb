"""Embedding collapse: the norm ratio, the check during training (a collapsing and a healthy run), and the two
options that stop it (``detach_target``, frozen ``item_emb_path``) in DreamRec and DiffDiv."""

import logging

import numpy as np
import pytest
import torch

from recbole_diffusion import get_trainer
from recbole_diffusion.collapse import CollapseMonitor, popularity_norm_ratio, target_norm_ratio
from tests.conftest import N_USERS, SEQUENCE_LENGTH, build_model, write_atomic_inter
from tests.sequential_configs import DIFFDIV_SMALL, DREAMREC_SMALL

TARGET_MODELS = [("DreamRec", DREAMREC_SMALL), ("DiffDiv", DIFFDIV_SMALL)]


POPULAR_N_ITEMS = 500


def popular_sequences(seed=0):
    """Items drawn independently with Zipf popularity (item k has weight 1 / (k + 1)) from a long tail of items."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, POPULAR_N_ITEMS + 1)
    return {
        user: rng.choice(POPULAR_N_ITEMS, size=SEQUENCE_LENGTH, p=weights / weights.sum()).tolist()
        for user in range(N_USERS)
    }


@pytest.fixture(scope="module")
def popular_data_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("popular_datasets")
    write_atomic_inter(folder, "popular", popular_sequences())
    return str(folder)


@pytest.fixture
def popular_config(tiny_config, popular_data_path):
    """DreamRec's default loss, made to collapse in a few epochs of the tiny data by many fast steps."""
    return {
        **tiny_config,
        **DREAMREC_SMALL,
        "data_path": popular_data_path,
        "epochs": 3,
        "learning_rate": 0.04,
        "train_batch_size": 32,
        "eval_step": 0,  # the check follows each training epoch; nothing here reads a validation
    }


def test_ratio_compares_the_most_and_least_popular_quarters_of_training_targets():
    counts = np.array([0, 8, 7, 6, 5, 4, 3, 2, 1, 0])  # item 0 (padding) and item 9 are never targets
    weight = torch.ones(10, 3)
    weight[1:3] *= 0.2  # the two most popular targets (quarter of 8 targets = 2)
    weight[7:9] *= 2.0  # the two least popular
    weight[9] *= 100.0  # not a target: ignored
    assert popularity_norm_ratio(weight, counts) == pytest.approx(0.1)
    # ties are broken by id: items 1..4 equally popular, the quarter is {1} against {4}
    tied = torch.tensor([[1.0], [3.0], [5.0], [5.0], [6.0]])
    assert popularity_norm_ratio(tied, np.array([0, 2, 2, 2, 2])) == pytest.approx(0.5)
    assert popularity_norm_ratio(torch.ones(4, 2), np.array([0, 1, 1, 1])) is None  # fewer than four targets


def test_collapsing_run_warns_once(popular_config, caplog):
    config, model, train_data, valid_data, _ = build_model("DreamRec", popular_config, dataset="popular")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    with caplog.at_level(logging.INFO):
        trainer.fit(train_data, valid_data, saved=False)
    ratio = trainer.collapse_monitor.last_ratio
    assert ratio < 0.4  # measured: 0.57, 0.35, 0.25 over the epochs (below the threshold twice, warned once)
    assert ratio == pytest.approx(target_norm_ratio(model, train_data._dataset))
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    collapse_warnings = [message for message in warnings if "embedding collapse" in message]
    assert len(collapse_warnings) == 1
    assert collapse_warnings[0].startswith("DreamRec: embedding collapse")
    assert "detach_target" in collapse_warnings[0] and "item_emb_path" in collapse_warnings[0]
    assert sum("target embedding norm ratio" in record.getMessage() for record in caplog.records) == 3


def test_detached_target_run_stays_healthy(popular_config, caplog):
    config, model, train_data, valid_data, _ = build_model(
        "DreamRec", {**popular_config, "detach_target": True}, dataset="popular"
    )
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    with caplog.at_level(logging.INFO):
        trainer.fit(train_data, valid_data, saved=False)
    assert trainer.collapse_monitor.last_ratio > 0.9  # measured: 1.02, 1.01, 0.995
    assert not any("embedding collapse" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("name, small", TARGET_MODELS)
def test_detach_target_stops_the_gradient_into_the_target_rows(tiny_config, popular_data_path, name, small):
    gradients = {}
    for detach in (False, True):
        _, model, train_data, _, _ = build_model(
            name, {**tiny_config, **small, "data_path": popular_data_path, "detach_target": detach}, dataset="popular"
        )
        batch = next(iter(train_data))
        model.calculate_loss(batch).backward()
        # rows of items that are targets of this batch but appear in none of its histories
        only_targets = sorted(set(batch[model.POS_ITEM_ID].tolist()) - set(batch[model.ITEM_SEQ].flatten().tolist()))
        assert only_targets
        gradients[detach] = model.item_embedding.weight.grad[only_targets].abs().sum()
    assert gradients[False] > 0
    assert gradients[True] == 0


@pytest.mark.parametrize("name, small", TARGET_MODELS)
def test_frozen_item_embeddings_from_file(tiny_config, tmp_path, name, small):
    _, probe, _, _, _ = build_model(name, {**tiny_config, **small})
    rows = np.random.default_rng(1).normal(size=(probe.n_items - 1, small["hidden_size"])).astype(np.float32)
    np.save(tmp_path / "items.npy", rows)
    config, model, train_data, valid_data, _ = build_model(
        name, {**tiny_config, **small, "item_emb_path": str(tmp_path / "items.npy")}
    )
    expected = torch.cat([torch.zeros(1, rows.shape[1]), torch.from_numpy(rows)])
    assert torch.equal(model.item_embedding.weight, expected)
    assert not model.item_embedding.weight.requires_grad
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    assert torch.equal(model.item_embedding.weight, expected)  # unchanged by training
    assert target_norm_ratio(model, train_data._dataset) is None  # a frozen table is not monitored


@pytest.mark.parametrize("name, small", TARGET_MODELS)
def test_bad_item_embedding_file_and_detach_value_are_rejected(tiny_config, tmp_path, name, small):
    _, probe, _, _, _ = build_model(name, {**tiny_config, **small})
    np.save(tmp_path / "wide.npy", np.zeros((probe.n_items - 1, small["hidden_size"] + 1), dtype=np.float32))
    with pytest.raises(ValueError, match=r"item_emb_path: a file of hidden_size \(32\) columns .* with 33 columns"):
        build_model(name, {**tiny_config, **small, "item_emb_path": str(tmp_path / "wide.npy")})
    with pytest.raises(ValueError, match="item_emb_path: an existing .npy item embedding file, got .*missing.npy"):
        build_model(name, {**tiny_config, **small, "item_emb_path": str(tmp_path / "missing.npy")})
    with pytest.raises(ValueError, match="detach_target: True or False, got 'yes'"):
        build_model(name, {**tiny_config, **small, "detach_target": "yes"})


@pytest.mark.parametrize("threshold", [0, 1, 1.5, "0.5", True])
def test_bad_threshold_is_rejected(threshold):
    with pytest.raises(ValueError, match="collapse_norm_ratio must be a number in \\(0, 1\\) or ~"):
        CollapseMonitor(torch.nn.Linear(1, 1), threshold)

