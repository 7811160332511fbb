"""benchmarks/parity/ for T-DiffRec: the export of the plugin's training split in the official T-DiffRec input (pairs
in time order per user), the official time weights against the plugin's, ``plugin_config``, and the DiffRec
adapter's training step and scoring on the weighted matrix (fake official modules). The official code is not
needed; the test that drives it runs only when ``PARITY_OFFICIAL_TDIFFREC`` names the ``T-DiffRec/`` folder of a
snapshot of YiyanXu/DiffRec.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import diffrec, tdiffrec
from recbole_diffusion import get_model
from tests.test_parity_diffrec import FAKE_OFFICIAL

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_TDIFFREC")
HPARAMS = {**tdiffrec.DEFAULTS, "dims": [16], "steps": 5, "epochs": 1, "batch_size": 64, "w_min": 0.2}


@pytest.fixture(scope="module")
def split(general_data_path, tmp_path_factory):
    config_dict = {
        **tdiffrec.plugin_config(HPARAMS),
        "data_path": general_data_path,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
        "state": "WARNING",
        "seed": 100,
    }
    return harness.build_split("TDiffRec", "random_distinct", config_dict, tdiffrec.CONFIG_FILES, tdiffrec.METRICS)


def test_protocol_defaults_and_options():
    assert harness.adapter_protocol(tdiffrec) == harness.adapter_protocol(diffrec)
    assert {key: tdiffrec.DEFAULTS[key] for key in diffrec.DEFAULTS} == diffrec.DEFAULTS
    assert tdiffrec.DEFAULTS["w_min"] == 0.1 and tdiffrec.DEFAULTS["w_max"] == 1.0
    assert list(tdiffrec.DEFAULTS)[-1] == "epochs"
    args, adapter, hparams = run_parity.parse_args(["--model=TDiffRec", "--official=x", "--w_min=0.3"])
    assert adapter is tdiffrec and hparams["w_min"] == 0.3 and hparams["w_max"] == 1.0


def test_official_weights_follow_the_stored_order():
    pairs = np.array([[0, 3], [0, 1], [0, 2], [1, 0], [2, 1], [2, 0]])
    matrix = tdiffrec.official_weighted_matrix(pairs, 0.1, 1.0, 4, 5).toarray()
    np.testing.assert_allclose(matrix[0, [3, 1, 2]], [0.1, 0.55, 1.0])
    np.testing.assert_allclose(matrix[1], [0.1, 0, 0, 0, 0])  # a single interaction gets w_min
    np.testing.assert_allclose(matrix[2, [1, 0]], [0.1, 1.0])
    assert not matrix[3].any() and (matrix > 0).sum() == len(pairs)


def test_export_round_trip_with_time_weights(split):
    config, train_data, _, _ = split
    dataset = train_data._dataset
    with_times = tdiffrec.export_with_times(dataset)
    pairs = tdiffrec.export(dataset)
    assert pairs.dtype == np.int64 and pairs.shape == (len(dataset.inter_feat), 2)
    np.testing.assert_array_equal(pairs, with_times[:, :2])
    assert (np.diff(pairs[:, 0]) >= 0).all()
    same_user = np.diff(with_times[:, 0]) == 0
    assert (np.diff(with_times[:, 2])[same_user] >= 0).all()  # time order within a user
    plugin = set(zip(*(dataset.inter_feat[field].tolist() for field in ("user_id", "item_id", "timestamp"))))
    assert {(user + 1, item + 1, time) for user, item, time in with_times.tolist()} == plugin
    n_users, n_items = dataset.user_num - 1, dataset.item_num - 1
    matrix = tdiffrec.official_weighted_matrix(pairs, HPARAMS["w_min"], HPARAMS["w_max"], n_users, n_items)
    weights = matrix.toarray()
    assert np.isclose(weights.max(), HPARAMS["w_max"]) and np.isclose(weights[weights > 0].min(), HPARAMS["w_min"])
    np.testing.assert_array_equal(weights > 0, diffrec.official_matrix(pairs, n_users, n_items).toarray() > 0)
    model = get_model("TDiffRec")(config, dataset)
    plugin_rows = model.get_rating_matrix(torch.arange(1, dataset.user_num)).cpu().numpy()[:, 1:]
    np.testing.assert_allclose(weights, plugin_rows, rtol=0, atol=1e-6)  # the same weight on both sides


def test_plugin_config_gives_the_intended_model(split):
    config, train_data, _, _ = split
    model = get_model("TDiffRec")(config, train_data._dataset)
    assert (model.w_min, model.w_max) == (HPARAMS["w_min"], HPARAMS["w_max"])
    assert model.steps == HPARAMS["steps"] and model.mean_type == "x0" and model.reweight is True
    assert config["train_batch_size"] == 64 and config["beta_fixed"] is True and config["dropout"] == 0.5
    assert type(train_data).__name__ == "UserDataLoader"


def test_official_runner_trains_and_scores_the_weighted_rows(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    runner = tdiffrec.OfficialRunner(None, dataset, HPARAMS, seed=100, official=FAKE_OFFICIAL)
    n_users, n_items = dataset.user_num - 1, dataset.item_num - 1
    expected = tdiffrec.official_weighted_matrix(tdiffrec.export(dataset), 0.2, 1.0, n_users, n_items).toarray()
    torch.testing.assert_close(runner.train, torch.FloatTensor(expected))
    assert runner.train_epoch() > 0
    assert sorted(torch.cat(runner.diffusion.batches).sum(dim=1).tolist()) == sorted(runner.train.sum(dim=1).tolist())
    interaction = next(iter(test_data))[0]
    scores = runner.full_sort_scores(interaction, False)
    users = interaction["user_id"]
    assert scores.shape == (len(users), dataset.item_num) and not scores[:, 0].any()
    torch.testing.assert_close(scores[:, 1:], runner.train[users - 1])  # the fake p_sample returns its input


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official T-DiffRec snapshot")
def test_official_side_runs_the_official_code(split):
    config, train_data, _, test_data = split
    row = harness.run_official_side(tdiffrec, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in tdiffrec.METRICS) and row["norm_ratio"] is None
