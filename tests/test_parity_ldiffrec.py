"""benchmarks/parity/ for L-DiffRec: ``plugin_config`` (the official beta_fixed=False, the shared item table), the
fixed random item table read by both sides, the ``kmeans_pytorch`` stand-in (the plugin's clustering, removed from
``sys.modules`` after loading), and the missing-table message. The official code is not needed; the test that
drives it runs only when ``PARITY_OFFICIAL_LDIFFREC`` names the ``L-DiffRec/`` folder of a snapshot of
YiyanXu/DiffRec.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import ldiffrec
from recbole_diffusion import get_model
from recbole_diffusion.pretrain import cluster_items

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_LDIFFREC")
HPARAMS = {**ldiffrec.DEFAULTS, "in_dims": [20], "dims": [16], "steps": 5, "epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def split(general_data_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ldiffrec")
    config_dict = {
        **ldiffrec.plugin_config({**HPARAMS, "item_emb_path": "unused.npy"}),
        "item_emb_path": None,
        "n_cate": 1,
        "data_path": general_data_path,
        "checkpoint_dir": str(folder / "saved"),
        "state": "WARNING",
        "seed": 100,
    }
    config, train_data, valid_data, test_data = harness.build_split(
        "LDiffRec", "random_distinct", config_dict, ldiffrec.CONFIG_FILES, ldiffrec.METRICS
    )
    path = folder / "item_emb.npy"
    np.save(path, ldiffrec.random_item_embeddings(train_data._dataset.item_num - 1))
    config["item_emb_path"], config["n_cate"] = str(path), HPARAMS["n_cate"]
    return config, train_data, test_data, {**HPARAMS, "item_emb_path": str(path)}


def test_defaults_options_and_missing_table():
    assert ldiffrec.DEFAULTS["n_cate"] == 2 and list(ldiffrec.DEFAULTS)[-1] == "epochs"
    with pytest.raises(ValueError, match="--item_emb_path"):
        ldiffrec.plugin_config(ldiffrec.DEFAULTS)
    args, adapter, hparams = run_parity.parse_args(["--model=LDiffRec", "--official=x", "--item_emb_path=a.npy"])
    assert adapter is ldiffrec and hparams["item_emb_path"] == "a.npy"
    entries = ldiffrec.plugin_config(hparams)
    assert entries["beta_fixed"] is False and entries["item_emb_path"] == "a.npy" and entries["ae_dropout"] == 0.1
    assert entries["dims_dnn"] == [300] and entries["in_dims"] == [300] and entries["steps"] == 40


def test_random_table_is_fixed():
    table = ldiffrec.random_item_embeddings(7)
    assert table.shape == (7, ldiffrec.EMBEDDING_SIZE) and table.dtype == np.float32
    np.testing.assert_array_equal(table, ldiffrec.random_item_embeddings(7))


def test_both_sides_cluster_alike(split):
    config, train_data, _, hparams = split
    model = get_model("LDiffRec")(config, train_data._dataset)
    table = torch.from_numpy(np.load(hparams["item_emb_path"]))
    labels, _ = ldiffrec.plugin_clustering(config["seed"])(table, hparams["n_cate"], "euclidean", "cpu")
    torch.testing.assert_close(labels, model.item_cluster[1:].cpu())  # official item i = plugin item i + 1
    torch.testing.assert_close(labels, cluster_items({"seed": 100}, torch.cat([torch.zeros(1, 64), table]), 2)[1:])
    assert model.diffusion.betas[0] != 1e-5  # beta_fixed False, as the official L-DiffRec


def test_kmeans_stand_in_is_removed_after_loading(tmp_path):
    (tmp_path / "models").mkdir()
    for name in ("gaussian_diffusion.py", "DNN.py"):
        (tmp_path / "models" / name).write_text("")
    (tmp_path / "models" / "Autoencoder.py").write_text("from kmeans_pytorch import kmeans\n")
    before = sys.modules.get("kmeans_pytorch")
    _, _, autoencoder = ldiffrec.load_official(tmp_path)
    assert callable(autoencoder.kmeans) and sys.modules.get("kmeans_pytorch") is before
    with pytest.raises(FileNotFoundError, match="Autoencoder.py"):
        ldiffrec.load_official(tmp_path / "models")


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official L-DiffRec snapshot")
def test_official_side_runs_the_official_code(split):
    config, train_data, test_data, hparams = split
    runner = ldiffrec.OfficialRunner(OFFICIAL_DIR, train_data._dataset, hparams, seed=100)
    model = get_model("LDiffRec")(config, train_data._dataset)
    assert runner.autoencoder.category_len == [len(items) for items in model.cluster_items]
    row = harness.run_official_side(ldiffrec, OFFICIAL_DIR, config, train_data, test_data, hparams, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in ldiffrec.METRICS) and row["norm_ratio"] is None
