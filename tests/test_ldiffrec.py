"""L-DiffRec and LT-DiffRec end to end on tiny data; the LightGCN pretraining and its cache; annealing."""

import os

import numpy as np
import pytest
import torch

from recbole_diffusion import run_recbole_diffusion
from tests.conftest import build_model, fit_and_reload, fit_test_and_full_sort
from tests.general_data import RANDOM_DISTINCT_CHANCE

pytest_plugins = ["tests.general_data"]  # fixtures general_config, general_data_path

SMALL = {
    "train_batch_size": 32,
    "learning_rate": 0.005,
    "steps": 10,
    "pretrain_epochs": 20,
    "eval_batch_size": 100000,
}


@pytest.mark.parametrize("model_name", ["LDiffRec", "LTDiffRec"])
def test_one_epoch_and_full_sort(general_config, model_name):
    config, model, train_data, valid_data, test_data = build_model(model_name, {**general_config, **SMALL})
    assert sorted(torch.cat(model.cluster_items).tolist()) == list(range(1, model.n_items))  # every item, once
    assert sum(sizes[0] for sizes in model.latent_sizes) == config["in_dims"][0]
    fit_test_and_full_sort(config, model, train_data, valid_data, test_data)


def test_learns_collaborative_pattern_and_stays_at_chance_on_random(general_config):
    config = {**general_config, **SMALL, "epochs": 10}
    markov = run_recbole_diffusion("LDiffRec", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("LDiffRec", "random_distinct", config_dict=dict(config), saved=False)
    assert markov["test_result"]["hit@10"] > 0.8
    assert noise["test_result"]["hit@10"] < RANDOM_DISTINCT_CHANCE + 0.1


def test_pretraining_is_cached_and_a_given_file_is_validated(general_config, tmp_path):
    config, model, train_data, _, _ = build_model("LDiffRec", {**general_config, **SMALL})
    cached = [name for name in os.listdir(config["checkpoint_dir"]) if name.startswith("markov-LightGCN")]
    assert len(cached) == 1
    _, again, _, _, _ = build_model(
        "LDiffRec", {**general_config, **SMALL}
    )  # from the cache: same clusters and weights
    assert torch.equal(again.item_cluster, model.item_cluster)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))

    n_items = train_data._dataset.item_num
    embeddings = np.zeros((n_items - 1, 4), dtype=np.float32)
    embeddings[: (n_items - 1) // 2, 0] = 1.0  # two obvious clusters: the first half of the items and the rest
    good_file = tmp_path / "item_emb.npy"
    np.save(good_file, embeddings)
    _, from_file, _, _, _ = build_model("LDiffRec", {**general_config, **SMALL, "item_emb_path": str(good_file)})
    first_half = from_file.item_cluster[1 : (n_items - 1) // 2 + 1]
    assert (first_half == first_half[0]).all() and not (
        from_file.item_cluster[n_items // 2 + 1 :] == first_half[0]
    ).any()

    bad_file = tmp_path / "bad.npy"
    np.save(bad_file, np.zeros((n_items + 5, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="item embedding file"):
        build_model("LDiffRec", {**general_config, **SMALL, "item_emb_path": str(bad_file)})


def test_lamda_is_annealed_per_epoch_and_beta_per_update(general_config):
    _, model, train_data, _, _ = build_model(
        "LDiffRec",
        {**general_config, **SMALL, "anneal_steps": 10, "lamda": 0.03, "anneal_cap": 0.005, "vae_anneal_steps": 1000},
    )
    per_epoch = model.batches_per_epoch
    assert per_epoch == -(-train_data._dataset.user_num // 32)
    model.num_updates.fill_(3 * per_epoch + 1)  # in the 4th epoch
    lamda, beta = model.annealed_weights()
    assert lamda == pytest.approx((1 - 3 / 10) * 0.03)
    assert beta == pytest.approx((3 * per_epoch + 1) / 1000)
    model.num_updates.fill_(1000 * per_epoch)
    assert model.annealed_weights() == pytest.approx((0.005, 0.3))


def test_save_load_gives_identical_scores(general_config):
    config, model, train_data, valid_data, test_data = build_model("LDiffRec", {**general_config, **SMALL})
    _, reloaded = fit_and_reload(config, model, train_data, valid_data)
    batch = next(iter(test_data))[0]
    assert torch.equal(model.full_sort_predict(batch), reloaded.full_sort_predict(batch))


def test_same_seed_same_metrics(general_config):
    config = {**general_config, **SMALL, "epochs": 2}
    first = run_recbole_diffusion("LDiffRec", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("LDiffRec", "markov", config_dict=dict(config), saved=False)  # cached backbone
    other_seed = run_recbole_diffusion("LDiffRec", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


def test_time_aware_model_needs_timestamps(general_config):
    config = {**general_config, **SMALL, "load_col": {"inter": ["user_id", "item_id"]}, "eval_args": {"order": "RO"}}
    with pytest.raises(ValueError, match="timestamp"):
        build_model("LTDiffRec", config, dataset="no_time")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("n_cate", 0, "n_cate"),
        ("in_dims", [1], "in_dims"),
        ("ae_act_func", "swish", "ae_act_func"),
        ("anneal_steps", -1, "anneal_steps"),
        ("pretrain_backbone", "NGCF", "pretrain_backbone"),
        ("noise_schedule", "binomial", "noise_schedule"),
    ],
)
def test_bad_config_is_rejected(general_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build_model("LDiffRec", {**general_config, **SMALL, key: value})
