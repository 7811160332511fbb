"""Resumable comparisons: cells stored one by one, a run killed mid-way finishing to the report of an uninterrupted
run, a cell continuing from its last epoch, changed configs refused or forced, ``cells`` and ``report_only``."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.trainer import Trainer

import run_recbole_diffusion
from recbole_diffusion.cells import BEST_CHECKPOINT, EPOCH_CHECKPOINT, RESULT, CellStore, config_snapshot
from recbole_diffusion.cli import INTERRUPTED_STATUS
from recbole_diffusion.compare import CellScores, CompareInputError, compare
from recbole_diffusion.compare import run as compare_run
from recbole_diffusion.config import Config
from recbole_diffusion.run_trainer import run_trainer_class
from tests.conftest import SCRIPT, build_model, script_args
from tests.test_compare import compare_config, report_bytes, write_yaml

EPOCHS = 3
FOLDER = "SequentialPop-GRU4Rec-SASRec"
MEASURED = ("train_hours", "train_seconds_per_epoch", "inference_users_per_second", "peak_memory_mb")


def comparison_arguments(data_path, folder):
    """A three-cell comparison (SequentialPop, GRU4Rec, SASRec; seed 2020) of ``EPOCHS`` epochs into ``folder``."""
    fast = [argument for argument in script_args(data_path, folder) if not argument.startswith("--epochs=")]
    output_dir = f"--output_dir={folder / 'results'}"
    return ["--model=GRU4Rec,SASRec", "--dataset=markov", output_dir, *fast, f"--epochs={EPOCHS}"]


def run_in_process(arguments):
    """``run_recbole_diffusion.main(arguments)`` with ``sys.argv`` set as RecBole's command-line reader expects."""
    saved_argv = sys.argv
    sys.argv = [str(SCRIPT), *arguments]
    try:
        return run_recbole_diffusion.main(arguments)
    finally:
        sys.argv = saved_argv


@pytest.fixture(scope="module")
def uninterrupted(data_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    assert run_in_process(comparison_arguments(data_path, folder)) == 0
    return folder / "results" / "markov" / FOLDER


def assert_same_results(report, expected):
    """Every file of the two reports agrees except the figures that each run measures (the ``MEASURED`` columns of
    ``metrics.csv``, the last four columns of ``table.md``)."""
    metrics, expected_metrics = (
        pd.read_csv(folder / "metrics.csv").drop(columns=list(MEASURED)) for folder in (report, expected)
    )
    pd.testing.assert_frame_equal(metrics, expected_metrics, check_exact=True)
    for name in ["chance.csv", "significance.csv"]:
        assert (report / name).read_bytes() == (expected / name).read_bytes(), name
    table, expected_table = (
        [line.rsplit(" | ", len(MEASURED))[0] for line in (folder / "table.md").read_text().splitlines()]
        for folder in (report, expected)
    )
    assert table == expected_table
    files = sorted(path.name for path in (expected / "per_user").iterdir())
    assert sorted(path.name for path in (report / "per_user").iterdir()) == files
    for name in files:
        with np.load(report / "per_user" / name) as arrays, np.load(expected / "per_user" / name) as expected_arrays:
            assert arrays.files == expected_arrays.files
            for key in arrays.files:
                np.testing.assert_array_equal(arrays[key], expected_arrays[key])


def record_trained_epochs(monkeypatch):
    """From now on, every (model, epoch) that a trainer trains is appended to the returned list."""
    train_epoch = Trainer._train_epoch
    trained = []

    def recorded_train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        trained.append((self.config["model"], epoch_idx))
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", recorded_train_epoch)
    return trained


def test_comparison_killed_during_the_second_model_finishes_to_the_uninterrupted_report(
    data_path, tmp_path, uninterrupted, monkeypatch
):
    """SIGKILL while GRU4Rec trains (after its first epoch checkpoint); the same command again continues GRU4Rec from
    that checkpoint, runs SASRec and writes the report of the uninterrupted run."""
    arguments = comparison_arguments(data_path, tmp_path)
    cell_dir = tmp_path / "results" / "markov" / FOLDER / "cells" / "GRU4Rec_seed2020"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *arguments], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not (cell_dir / EPOCH_CHECKPOINT).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
    store = CellStore(cell_dir.parent)
    assert store.record("SequentialPop", 2020) is not None
    assert store.record("GRU4Rec", 2020) is None and (cell_dir / EPOCH_CHECKPOINT).exists()
    assert not (cell_dir.parent.parent / "metrics.csv").exists()

    trained = record_trained_epochs(monkeypatch)
    assert run_in_process(arguments) == 0
    resumed = [epoch for model, epoch in trained if model == "GRU4Rec"]
    assert resumed and 0 < resumed[0] and resumed == list(range(resumed[0], EPOCHS))
    assert [epoch for model, epoch in trained if model == "SASRec"] == list(range(EPOCHS))
    assert not (cell_dir / EPOCH_CHECKPOINT).exists()  # removed once the cell is stored
    assert_same_results(cell_dir.parent.parent, uninterrupted)


def test_cell_interrupted_mid_training_continues_from_its_last_epoch(data_path, tmp_path, uninterrupted, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) at the start of GRU4Rec's last epoch (2): its checkpoint holds epochs 0 and 1, and
    the rerun trains GRU4Rec's epoch 2 only, to the uninterrupted run's results."""
    train_epoch = Trainer._train_epoch

    def interrupted_train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if self.config["model"] == "GRU4Rec" and epoch_idx == 2:
            raise KeyboardInterrupt
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    arguments = comparison_arguments(data_path, tmp_path)
    monkeypatch.setattr(Trainer, "_train_epoch", interrupted_train_epoch)
    assert run_in_process(arguments) == INTERRUPTED_STATUS  # one line, no traceback
    cells = CellStore(tmp_path / "results" / "markov" / FOLDER / "cells")
    checkpoint = torch.load(cells.cell_dir("GRU4Rec", 2020) / EPOCH_CHECKPOINT, weights_only=True)
    assert checkpoint["epoch"] == 1 and len(checkpoint["epoch_seconds"]) == 2
    assert cells.record("SequentialPop", 2020) is not None and cells.record("GRU4Rec", 2020) is None

    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)
    trained = record_trained_epochs(monkeypatch)
    assert run_in_process(arguments) == 0
    assert trained == [("GRU4Rec", 2), *(("SASRec", epoch) for epoch in range(EPOCHS))]
    assert_same_results(cells.folder.parent, uninterrupted)


def test_an_epoch_checkpoint_is_resumed_only_under_its_own_config(tiny_config, tmp_path, caplog):
    config, model, train_data, valid_data, _ = build_model("GRU4Rec", {**tiny_config, "epochs": 2})
    trainer_class = run_trainer_class(Trainer)
    best, last_epoch = tmp_path / BEST_CHECKPOINT, tmp_path / EPOCH_CHECKPOINT
    trainer = trainer_class(config, model)
    assert not trainer.keep_epoch_checkpoints(train_data, best, last_epoch, "config-a")
    trainer.fit(train_data, valid_data)  # the state after epoch 0 is saved at the start of epoch 1
    assert last_epoch.exists() and best.exists() and len(trainer.epoch_seconds) == 2
    same = trainer_class(config, model)
    assert same.keep_epoch_checkpoints(train_data, best, last_epoch, "config-a")
    assert same.start_epoch == 1 and same.epoch_seconds == trainer.epoch_seconds[:1]
    assert same.saved_model_file == str(best)
    other = trainer_class(config, model)
    assert not other.keep_epoch_checkpoints(train_data, best, last_epoch, "config-b")
    assert other.start_epoch == 0 and not last_epoch.exists()
    assert "belongs to another config: training starts again from epoch 0" in caplog.text


def stub_score_cell(calls):
    """A stand-in for :func:`recbole_diffusion.compare.score_cell` that records each cell it runs; its values depend
    on the model, the seed and the learning rate."""

    def train_and_score(config):
        model, seed = config["model"], config["seed"]
        calls.append(f"{model}:{seed}")
        values = np.random.default_rng([seed, len(model)]).random(8) + config["learning_rate"]
        row = {
            "ndcg@10": float(values.mean()),
            "target_norm_ratio": np.nan,
            "parameters": len(model),
            "train_seconds_per_epoch": 1.0,
            "inference_users_per_second": 1.0,
            "peak_memory_mb": 1.0,
        }
        return CellScores(row, {"user_id": np.arange(8), "ndcg@10": values}, [], {"n_users": 8, "ndcg@10": 0.1})

    return train_and_score


@pytest.fixture
def stubbed(data_path, tmp_path, monkeypatch):
    """``(compare with fast settings into tmp_path, the list of cells it trained)``, training stubbed."""
    calls = []
    monkeypatch.setattr(compare_run, "score_cell", stub_score_cell(calls))
    config = compare_config(data_path, tmp_path / "saved")

    def run(output_dir="results", config_dict=None, **kwargs):
        kwargs = {"seeds": [1, 2], "output_dir": tmp_path / output_dir, **kwargs}
        return compare(["GRU4Rec", "SASRec"], "markov", config_dict={**config, **(config_dict or {})}, **kwargs)

    return run, calls


def test_stored_cells_are_skipped_and_a_changed_config_is_refused_naming_its_keys(stubbed, tmp_path):
    run, calls = stubbed
    report = run()
    assert calls == ["SequentialPop:1", "GRU4Rec:1", "SASRec:1", "SequentialPop:2", "GRU4Rec:2", "SASRec:2"]
    first = report_bytes(report)
    calls.clear()
    # settings of the machine, the device or the logging are not part of a cell's config
    assert run(config_dict={"checkpoint_dir": str(tmp_path / "elsewhere"), "show_progress": True}) == report
    assert calls == [] and report_bytes(report) == first
    own = write_yaml(tmp_path / "sasrec.yaml", {"learning_rate": 0.5, "dropout_prob": 0.1})
    with pytest.raises(CompareInputError, match=r"another config: SASRec:1 \(dropout_prob, learning_rate\), SASRec:2 "):
        run(model_config_files={"SASRec": [own]})
    assert calls == [] and report_bytes(report) == first

    before = pd.read_csv(report / "metrics.csv").set_index(["model", "seed"])["ndcg@10"]
    run(model_config_files={"SASRec": [own]}, force=True)
    assert calls == ["SASRec:1", "SASRec:2"]  # the cells of an unchanged config are kept
    after = pd.read_csv(report / "metrics.csv", keep_default_na=False).set_index(["model", "seed"])
    assert (after.loc["SASRec", "ndcg@10"] != before.loc["SASRec"]).all()
    assert (after.loc["GRU4Rec", "ndcg@10"] == before.loc["GRU4Rec"]).all()
    assert (after.loc["SASRec", "config_files"] == own).all()


def test_cells_and_report_only_assemble_the_report_of_one_run(stubbed):
    run, calls = stubbed
    whole = report_bytes(run(output_dir="whole"))
    calls.clear()
    folder = run(output_dir="spread", cells=[("GRU4Rec", 2)])
    assert calls == ["GRU4Rec:2"] and report_bytes(folder) == {}  # a run of some cells writes no report
    missing = "5 of 6 cells are not stored yet: SequentialPop:1, GRU4Rec:1, SASRec:1, SequentialPop:2, SASRec:2;"
    with pytest.raises(CompareInputError, match=f"report_only: {missing} nothing written"):
        run(output_dir="spread", report_only=True)
    assert report_bytes(folder) == {}
    run(output_dir="spread", cells=[("SASRec", 2), ("SequentialPop", 1)])
    run(output_dir="spread", cells=[("SASRec", 1), ("GRU4Rec", 1), ("SequentialPop", 2)])
    calls.clear()
    assert run(output_dir="spread", report_only=True) == folder
    assert calls == [] and report_bytes(folder) == whole


def test_a_cell_killed_while_being_stored_is_not_taken_as_done(stubbed):
    """The result folder appears in one rename: a cell whose files were written but not yet renamed is run again."""
    run, calls = stubbed
    report = run()
    cell_dir = CellStore(report / "cells").cell_dir("GRU4Rec", 1)
    (cell_dir / RESULT).rename(cell_dir / f"{RESULT}.partial")
    calls.clear()
    run()
    assert calls == ["GRU4Rec:1"] and not (cell_dir / f"{RESULT}.partial").exists()


@pytest.mark.parametrize(
    "cells, message",
    [
        ([], "cells: expected one or more"),
        (["GRU4Rec:1"], "cells: expected (model, seed) pairs, got 'GRU4Rec:1'"),
        ([("SASRec", 1)], "cells: SASRec:1: SASRec is not one of the compared models (SequentialPop, GRU4Rec)"),
        ([("GRU4Rec", 3)], "cells: GRU4Rec:3: 3 is not one of the seeds (1, 2)"),
        ([("GRU4Rec", "1")], "cells: GRU4Rec:1: '1' is not one of the seeds (1, 2)"),
        ([("GRU4Rec", 1), ("GRU4Rec", 1)], "cells: GRU4Rec:1 is named twice"),
    ],
)
def test_bad_cells_are_refused_before_anything_runs(cells, message, tmp_path):
    with pytest.raises(CompareInputError) as refused:
        compare(["GRU4Rec"], "markov", seeds=[1, 2], output_dir=tmp_path, cells=cells)
    assert str(refused.value) == message or str(refused.value).startswith(message)
    assert not list(tmp_path.iterdir())


def test_report_only_takes_neither_cells_nor_force(tmp_path):
    for extra in ({"cells": [("GRU4Rec", 2020)]}, {"force": True}):
        with pytest.raises(CompareInputError, match="report_only: assembles the report from the stored cells"):
            compare(["GRU4Rec"], "markov", output_dir=tmp_path, report_only=True, **extra)


def test_script_passes_cells_report_only_and_force_to_compare(tmp_path, monkeypatch, capsys):
    assert run_recbole_diffusion.parse_cells(" DreamRec:2020, SASRec : 7") == [("DreamRec", 2020), ("SASRec", 7)]
    calls = []

    def recorded_compare(*args, **kwargs):
        calls.append(kwargs)
        return tmp_path

    monkeypatch.setattr(run_recbole_diffusion, "compare", recorded_compare)
    assert run_recbole_diffusion.main(["--model=DreamRec", "--cells=SequentialPop:2020,DreamRec:2020", "--force"]) == 0
    assert run_recbole_diffusion.main(["--model=DreamRec", "--report_only"]) == 0
    some_cells, report_only = calls
    assert some_cells["cells"] == [("SequentialPop", 2020), ("DreamRec", 2020)] and some_cells["force"]
    assert not some_cells["report_only"]
    assert report_only["report_only"] and report_only["cells"] is None and not report_only["force"]
    printed = capsys.readouterr().out
    assert f"cells stored in {tmp_path / 'cells'}\n" in printed
    assert f"comparison report written to {tmp_path}\n" in printed


def test_a_later_key_left_unset_keeps_the_snapshot_of_cells_stored_before_it(tiny_config):
    """``lr_cosine_epochs`` came after cells were stored: unset, it is not in a snapshot (the stored cells' hashes
    still match); set, it is."""
    config = Config(model="DreamRec", dataset="markov", config_dict=tiny_config)
    assert config["lr_cosine_epochs"] is None and "lr_cosine_epochs" not in config_snapshot(config)
    annealed = Config(model="DreamRec", dataset="markov", config_dict={**tiny_config, "lr_cosine_epochs": 9})
    assert config_snapshot(annealed) == {**config_snapshot(config), "lr_cosine_epochs": 9}
