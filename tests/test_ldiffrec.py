"""L-DiffRec and LT-DiffRec end to end on tiny data; the LightGCN pretraining and its cache; annealing."""

import os

import numpy as np
import pytest
import torch

from tests.conftest import build_model, model_on
from tests.sequential_configs import LDIFFREC_SMALL

LDIFFREC_TEST = {**LDIFFREC_SMALL, "pretrain_epochs": 1}  # these tests need a backbone, not a good one


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
    """One checkpoint_dir for the tests that need a pretrained backbone but not its caching: it is pretrained once,
    then served from the cache (keyed by the pretraining settings and the training split)."""
    return str(tmp_path_factory.mktemp("ldiffrec_pretrain"))


@pytest.mark.parametrize("model_name", ["LDiffRec", "LTDiffRec"])
def test_clusters_hold_every_item_once_and_the_latent_adds_up(general_config, pretrain_dir, model_name):
    config, model, _, _, _ = build_model(
        model_name, {**general_config, **LDIFFREC_TEST, "checkpoint_dir": pretrain_dir}
    )
    assert sorted(torch.cat(model.cluster_items).tolist()) == list(range(1, model.n_items))  # every item, once
    assert sum(sizes[0] for sizes in model.latent_sizes) == config["in_dims"][0]


def test_pretraining_is_cached_and_a_given_file_is_validated(general_config, tmp_path):
    config, model, train_data, _, _ = build_model("LDiffRec", {**general_config, **LDIFFREC_TEST})
    cached = [name for name in os.listdir(config["checkpoint_dir"]) if name.startswith("markov-LightGCN")]
    assert len(cached) == 1
    _, again, _, _, _ = build_model(
        "LDiffRec", {**general_config, **LDIFFREC_TEST}
    )  # from the cache: same clusters and weights
    assert torch.equal(again.item_cluster, model.item_cluster)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))

    n_items = train_data._dataset.item_num
    embeddings = np.zeros((n_items - 1, 4), dtype=np.float32)
    embeddings[: (n_items - 1) // 2, 0] = 1.0  # two obvious clusters: the first half of the items and the rest
    good_file = tmp_path / "item_emb.npy"
    np.save(good_file, embeddings)
    _, from_file, _, _, _ = build_model(
        "LDiffRec", {**general_config, **LDIFFREC_TEST, "item_emb_path": str(good_file)}
    )
    first_half = from_file.item_cluster[1 : (n_items - 1) // 2 + 1]
    assert (first_half == first_half[0]).all() and not (
        from_file.item_cluster[n_items // 2 + 1 :] == first_half[0]
    ).any()

    bad_file = tmp_path / "bad.npy"
    np.save(bad_file, np.zeros((n_items + 5, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="item embedding file"):
        build_model("LDiffRec", {**general_config, **LDIFFREC_TEST, "item_emb_path": str(bad_file)})


def test_lamda_is_annealed_per_epoch_and_beta_per_update(general_config, pretrain_dir):
    _, model, train_data, _, _ = build_model(
        "LDiffRec",
        {
            **general_config,
            **LDIFFREC_TEST,
            "checkpoint_dir": pretrain_dir,
            "anneal_steps": 10,
            "lamda": 0.03,
            "anneal_cap": 0.005,
            "vae_anneal_steps": 1000,
        },
    )
    per_epoch = model.batches_per_epoch
    assert per_epoch == -(-train_data._dataset.user_num // 32)
    model.num_updates.fill_(3 * per_epoch + 1)  # in the 4th epoch
    lamda, beta = model.annealed_weights()
    assert lamda == pytest.approx((1 - 3 / 10) * 0.03)
    assert beta == pytest.approx((3 * per_epoch + 1) / 1000)
    model.num_updates.fill_(1000 * per_epoch)
    assert model.annealed_weights() == pytest.approx((0.005, 0.3))


def test_time_aware_model_needs_timestamps(general_config):
    config = {
        **general_config,
        **LDIFFREC_TEST,
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"order": "RO"},
    }
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
def test_bad_config_is_rejected(general_config, general_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(general_dataset, "LDiffRec", {**general_config, **LDIFFREC_TEST, key: value})
