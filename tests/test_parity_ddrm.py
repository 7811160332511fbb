"""benchmarks/parity/ for DDRM: ``plugin_config`` (the shared backbone tables, the same hyperparameters), the official
flags, the export of the plugin's training split (``train_list.npy`` pairs and the per-user positives of the official
``allPos``) round trip, the shared tables read by both sides, and the import shims restoring ``sys.argv``,
``sys.modules``, the working directory and ``CUDA_VISIBLE_DEVICES``. The official code is not needed.
"""

import os
import sys

import numpy as np
import pytest
import torch

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import ddrm, diffrec
from recbole_diffusion import get_model

HPARAMS = {
    **ddrm.DEFAULTS,
    "dims": [16],
    "steps": 4,
    "sampling_steps": 4,
    "epochs": 1,
    "batch_size": 64,
}


@pytest.fixture(scope="module")
def split(general_data_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddrm")
    hparams = {**HPARAMS, "item_emb_path": "unused.npy", "user_emb_path": "unused.npy"}
    config_dict = {
        **ddrm.plugin_config(hparams),
        "data_path": general_data_path,
        "checkpoint_dir": str(folder / "saved"),
        "state": "WARNING",
        "seed": 100,
    }
    config, train_data, _, test_data = harness.build_split(
        "DDRM", "random_distinct", config_dict, ddrm.CONFIG_FILES, ddrm.METRICS
    )
    dataset = train_data._dataset
    rng = np.random.default_rng(0)
    paths = {}
    for kind, rows in (("user", dataset.user_num - 1), ("item", dataset.item_num - 1)):
        paths[kind] = folder / f"{kind}_emb.npy"
        np.save(paths[kind], rng.standard_normal((rows, 8)).astype(np.float32))
    config["item_emb_path"], config["user_emb_path"] = (
        str(paths["item"]),
        str(paths["user"]),
    )
    return config, train_data, test_data, paths


def test_plugin_config_and_options():
    with pytest.raises(ValueError, match="--item_emb_path"):
        ddrm.plugin_config(ddrm.DEFAULTS)
    _, adapter, hparams = run_parity.parse_args(
        [
            "--model=DDRM",
            "--official=x",
            "--item_emb_path=i.npy",
            "--user_emb_path=u.npy",
            "--alpha=0.2",
        ]
    )
    assert adapter is ddrm and list(hparams)[-1] == "epochs"
    entries = ddrm.plugin_config(hparams)
    assert (
        entries["item_emb_path"] == "i.npy"
        and entries["user_emb_path"] == "u.npy"
        and entries["alpha"] == 0.2
    )
    assert (
        entries["dims_dnn"] == [100, 1000]
        and entries["mlp_act_func"] == "sigmoid"
        and entries["dropout"] == 0.5
    )
    assert (
        entries["steps"] == entries["sampling_steps"] == 20
        and entries["beta_fixed"] is True
    )
    assert (
        entries["train_batch_size"] == 2048
        and entries["learning_rate"] == 0.001
        and entries["beta"] == 1.0
    )
    assert entries["train_neg_sample_args"]["sample_num"] == 1
    with pytest.raises(ValueError, match="sampling_steps >= steps"):
        ddrm.plugin_config({**hparams, "sampling_steps": hparams["steps"] - 1})
    assert ddrm.plugin_config({**hparams, "sampling_steps": hparams["steps"] + 5})["sampling_steps"] == 25
    assert harness.adapter_protocol(ddrm) == (
        diffrec.CONFIG_FILES,
        diffrec.METRICS,
        ("eval",),
    )


def test_official_flags():
    flags = ddrm.official_flags({**ddrm.DEFAULTS, "alpha": 0.2})
    assert flags[0] == "main.py"
    for flag in (
        "--dims=[100,1000]",
        "--act=sigmoid",
        "--alpha=0.2",
        "--diff_lr=0.001",
        "--layer=0",
        "--steps=20",
    ):
        assert flag in flags
    assert not any(
        flag.startswith(("--sampling_noise", "--norm")) for flag in flags
    )  # type=bool: keep False


def test_export_round_trip(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    pairs = diffrec.export(dataset)
    positives = ddrm.official_positives(pairs, dataset.user_num - 1)
    assert len(positives) == dataset.user_num - 1 and sum(map(len, positives)) == len(
        pairs
    ) == len(dataset)
    history, _, lengths = dataset.history_item_matrix()
    for user in range(
        1, dataset.user_num
    ):  # official user u - 1 holds the plugin's training items minus 1
        plugin_items = sorted(history[user, : lengths[user]].tolist())
        assert (positives[user - 1] + 1).tolist() == plugin_items


def test_both_sides_read_the_same_tables(split):
    config, train_data, _, paths = split
    dataset = train_data._dataset
    model = get_model("DDRM")(config, dataset)
    users = ddrm.load_table(paths["user"], dataset.user_num - 1, "user")
    items = ddrm.load_table(paths["item"], dataset.item_num - 1, "item")
    torch.testing.assert_close(model.user_embedding[1:], torch.from_numpy(users))
    torch.testing.assert_close(model.item_embedding[1:], torch.from_numpy(items))
    padded = np.concatenate([np.zeros((1, 8), np.float32), items])
    np.save(paths["item"].with_name("padded.npy"), padded)
    np.testing.assert_array_equal(
        ddrm.load_table(paths["item"].with_name("padded.npy"), len(items), "item"),
        items,
    )
    with pytest.raises(ValueError, match="rows"):
        ddrm.load_table(paths["item"], len(items) + 5, "item")


def test_import_shims_restore_the_process(tmp_path, monkeypatch):
    for name in ddrm.OFFICIAL_FILES:
        (tmp_path / name).write_text("")
    (tmp_path / "world.py").write_text(
        "import os, sys\nos.makedirs('code/checkpoints', exist_ok=True)\nos.environ['CUDA_VISIBLE_DEVICES'] = '0'\n"
        "ARGV = list(sys.argv)\nCWD = os.getcwd()\n"
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    argv, cwd, path = list(sys.argv), os.getcwd(), list(sys.path)
    modules = {name: sys.modules.get(name) for name in ddrm.OFFICIAL_MODULES}
    official = ddrm.load_official(tmp_path, ddrm.DEFAULTS)
    assert (
        official.world.ARGV == ddrm.official_flags(ddrm.DEFAULTS)
        and official.world.CWD != cwd
    )
    assert sys.argv == argv and os.getcwd() == cwd and sys.path == path
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert {name: sys.modules.get(name) for name in ddrm.OFFICIAL_MODULES} == modules
    assert not (tmp_path / "code").exists()
    with pytest.raises(FileNotFoundError, match="DDRM_LightGCN"):
        ddrm.load_official(tmp_path / "missing", ddrm.DEFAULTS)
