"""benchmarks/parity/ for DiffRec: the harness's general protocol (config file, Recall/NDCG, no dropout scoring, no
norm ratio) next to DreamRec's unchanged defaults, the export of the plugin's training split as the official
``train_list.npy``, ``plugin_config``, and the official training step and scoring on fake official modules. The
official code is not needed; the test that drives it runs only when ``PARITY_OFFICIAL_DIFFREC`` names the
``DiffRec/`` folder of a snapshot of YiyanXu/DiffRec.
"""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import diffrec, dreamrec
from recbole_diffusion import get_model

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_DIFFREC")
HPARAMS = {**diffrec.DEFAULTS, "dims": [16], "steps": 5, "epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def split(general_data_path, tmp_path_factory):
    config_dict = {
        **diffrec.plugin_config(HPARAMS),
        "data_path": general_data_path,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "state": "WARNING",
        "seed": 100,
    }
    return harness.build_split("DiffRec", "random_distinct", config_dict, diffrec.CONFIG_FILES, diffrec.METRICS)


def test_dreamrec_keeps_its_protocol_and_columns():
    assert harness.adapter_protocol(dreamrec) == ((), harness.METRICS, harness.SCORINGS)
    assert (
        harness.COLUMNS
        == harness.columns()
        == (
            "side",
            "seed",
            "hit@10",
            "ndcg@10",
            "hit@20",
            "ndcg@20",
            "dropout_hit@10",
            "dropout_ndcg@10",
            "dropout_hit@20",
            "dropout_ndcg@20",
            "train_seconds_per_epoch",
            "users_per_second",
            "norm_ratio",
        )
    )
    assert harness.EVAL_CONFIG == {
        "metrics": ["Hit", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "show_progress": False,
    }


def test_diffrec_protocol_columns_and_table():
    config_files, metrics, scorings = harness.adapter_protocol(diffrec)
    assert all((run_parity.ROOT / name).is_file() for name in config_files)
    columns = harness.columns(metrics, scorings)
    assert columns[2:6] == ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
    assert not any(column.startswith("dropout_") for column in columns)
    assert harness.eval_config(metrics)["metrics"] == ["Recall", "NDCG"]
    rows = [{"side": "official", "seed": 100, **{column: 0.5 for column in columns[2:]}, "norm_ratio": None}]
    table = harness.markdown_table(rows, ["official"], columns)
    assert "| recall@20 | 0.5000 ± 0.0000 |" in table and "| norm_ratio | n/a |" in table
    args, adapter, hparams = run_parity.parse_args(["--model=DiffRec", "--official=x", "--dims=[64]", "--steps=10"])
    assert adapter is diffrec and hparams["dims"] == [64] and hparams["steps"] == 10


def test_split_is_the_general_protocol(split):
    config, train_data, _, test_data = split
    assert config["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]} and config["eval_args"]["order"] == "RO"
    assert config["metrics"] == ["Recall", "NDCG"] and config["topk"] == [10, 20]
    assert type(train_data).__name__ == "UserDataLoader"


def test_export_round_trip(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    pairs = diffrec.export(dataset)
    assert pairs.dtype == np.int64 and pairs.shape == (len(dataset.inter_feat), 2)
    assert (np.diff(pairs[:, 0]) >= 0).all()  # sorted by user, as the official files
    plugin_pairs = set(zip(dataset.inter_feat["user_id"].tolist(), dataset.inter_feat["item_id"].tolist()))
    assert {(user + 1, item + 1) for user, item in pairs.tolist()} == plugin_pairs
    matrix = diffrec.official_matrix(pairs, dataset.user_num - 1, dataset.item_num - 1)
    assert matrix.sum() == len(plugin_pairs)
    assert matrix.shape == (dataset.user_num - 1, dataset.item_num - 1)
    history = dataset.inter_matrix(form="csr").toarray()[1:, 1:]  # the plugin's training matrix without padding
    np.testing.assert_array_equal(matrix.toarray(), history)


def test_plugin_config_gives_the_intended_model(split):
    config, train_data, _, _ = split
    model = get_model("DiffRec")(config, train_data._dataset)
    linears = [module for module in model.denoiser.mlp if isinstance(module, nn.Linear)]
    n_items, emb = train_data._dataset.item_num, HPARAMS["emb_size"]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(n_items + emb, 16), (16, n_items)]
    assert model.steps == HPARAMS["steps"] and model.sampling_steps == 0 and model.reweight is True
    assert model.mean_type == "x0" and model.denoiser.dropout.p == 0.5
    assert config["learning_rate"] == HPARAMS["learning_rate"] and config["train_batch_size"] == 64
    assert config["noise_scale"] == 0.005 and config["beta_fixed"] is True and config["history_num_per_term"] == 10


class FakeDNN(nn.Module):
    def __init__(self, in_dims, out_dims, emb_size, time_type="cat", norm=False, dropout=0.5):
        super().__init__()
        self.dims = (in_dims, out_dims)
        self.layer = nn.Linear(in_dims[0], out_dims[-1])

    def forward(self, x, timesteps):
        return self.layer(x)


class FakeDiffusion:
    """Records the batches of ``training_losses``; ``p_sample`` returns the input rows (the training history)."""

    def __init__(self, mean_type, schedule, scale, noise_min, noise_max, steps, device):
        self.batches = []

    def to(self, device):
        return self

    def training_losses(self, model, x_start, reweight=False):
        self.batches.append(x_start.clone())
        return {"loss": ((model(x_start, None) - x_start) ** 2).mean(dim=-1)}

    def p_sample(self, model, x_start, steps, sampling_noise=False):
        return x_start.clone()


class FakeGaussianDiffusionModule:
    class ModelMeanType:
        START_X, EPSILON = "x0", "eps"

    GaussianDiffusion = FakeDiffusion


class FakeDNNModule:
    DNN = FakeDNN


FAKE_OFFICIAL = (FakeGaussianDiffusionModule, FakeDNNModule)


def test_official_training_step_and_scoring_on_fake_modules(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    runner = diffrec.OfficialRunner(None, dataset, HPARAMS, seed=100, official=FAKE_OFFICIAL)
    n_users, n_items = dataset.user_num - 1, dataset.item_num - 1
    assert runner.model.dims == ([n_items, 16], [16, n_items])
    before = runner.model.layer.weight.detach().clone()
    assert runner.train_epoch() > 0
    batches = runner.diffusion.batches
    assert len(batches) == math.ceil(n_users / HPARAMS["batch_size"])  # the last batch partial, as the DataLoader
    assert sorted(torch.cat(batches).sum(dim=1).tolist()) == sorted(runner.train.sum(dim=1).tolist())
    assert not torch.equal(before, runner.model.layer.weight)
    interaction = next(iter(test_data))[0]
    scores = runner.full_sort_scores(interaction, False)
    users = interaction["user_id"]
    history = torch.as_tensor(dataset.inter_matrix(form="csr").toarray(), dtype=torch.float)[users]
    assert scores.shape == (len(users), dataset.item_num) and not scores[:, 0].any()
    torch.testing.assert_close(scores[:, 1:], history[:, 1:])  # user u's row, item i in column i
    assert runner.target_embedding_weight() is None
    row, users_per_second = harness.evaluate_both_scorings(
        config, test_data, runner.full_sort_scores, 100, diffrec.METRICS, diffrec.SCORINGS
    )
    assert set(row) == set(diffrec.METRICS) and all(0 <= value <= 1 for value in row.values())
    assert users_per_second > 0


def test_plugin_side_has_no_norm_ratio(split):
    config, train_data, _, test_data = split
    row = harness.run_plugin_side(config, train_data, test_data, 100, diffrec.METRICS, diffrec.SCORINGS)
    assert set(harness.columns(diffrec.METRICS, diffrec.SCORINGS)) - set(row) == {"side", "seed"}
    assert row["norm_ratio"] is None and all(0 <= row[metric] <= 1 for metric in diffrec.METRICS)


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official DiffRec snapshot")
def test_official_side_runs_the_official_code(split):
    config, train_data, _, test_data = split
    row = harness.run_official_side(diffrec, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in diffrec.METRICS) and row["norm_ratio"] is None


def test_missing_official_snapshot_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="gaussian_diffusion.py"):
        diffrec.load_official(tmp_path)
