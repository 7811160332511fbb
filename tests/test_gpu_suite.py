"""benchmarks/gpu_suite.sh --smoke: its three steps run on the CPU with tiny budgets, each a resumable comparison,
then one summary table of every stored cell and the packed results; benchmarks/cells_summary.py on a partial run."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks import cells_summary

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def run_suite(tmp_path, *arguments):
    environment = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_SUITE_OUTPUT": str(tmp_path / "gpu"),
        "GPU_SUITE_GENERAL_MODELS": "DiffRec",
        "GPU_SUITE_SEQUENTIAL_MODELS": "DreamRec",
        "OUT": str(tmp_path / "out"),
    }
    (tmp_path / "out").mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(SUITE), *arguments], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900
    )


def test_smoke_run_stores_every_step_and_packs_the_results(tmp_path):
    result = run_suite(tmp_path, "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = (tmp_path / "gpu" / "summary.md").read_text()
    expected = {
        ("general", "Pop"),
        ("general", "DiffRec"),
        ("sequential", "SequentialPop"),
        ("sequential", "DreamRec"),
        ("diffurec", "SequentialPop"),
        ("diffurec", "DiffuRec"),
        ("diffurec", "SASRec"),
    }
    rows = [line.split(" | ") for line in summary.splitlines()[2:]]
    assert {(row[0].strip("| "), row[2]) for row in rows} == expected
    assert all(row[3] == "2020" and row[6] == "1 (0)" for row in rows)
    assert result.stdout.count("| ml-100k |") == len(expected)
    parts = sorted((tmp_path / "out").glob("gpu-results.tgz.part*"))
    assert parts
    (tmp_path / "packed.tgz").write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(tmp_path / "packed.tgz") as archive:
        names = archive.getnames()
    assert "gpu/summary.md" in names and not any(name.endswith("best.pth") for name in names)
    assert any(name.endswith("DreamRec_seed2020/result/cell.json") for name in names)


def test_bad_argument_is_refused(tmp_path):
    result = run_suite(tmp_path, "--fast")
    assert result.returncode == 2 and "allowed: --smoke" in result.stderr


def test_summary_of_a_partial_comparison_names_what_is_missing(tmp_path):
    folder = tmp_path / "sequential" / "ml-100k" / "SequentialPop-DreamRec"
    cell = folder / "cells" / "SequentialPop_seed2020" / "result"
    cell.mkdir(parents=True)
    row = {
        "ndcg@10": 0.02,
        "hit@10": 0.05,
        "train_seconds_per_epoch": 0.5,
        "epochs_trained": 1,
        "best_epoch": 0,
        "train_hours": 0.001,
        "hardware": "CPU, 2 threads",
    }
    record = {"model": "SequentialPop", "seed": 2020, "config": {"valid_metric": "NDCG@10"}, "row": row}
    (cell / "cell.json").write_text(json.dumps(record))
    rows = cells_summary.summary_rows(folder)
    assert rows[0][:6] == ["sequential", "ml-100k", "SequentialPop", "2020", "ndcg@10 0.0200", "hit@10 0.0500"]
    assert rows[1][2:4] == ["DreamRec", "not stored yet"]


@pytest.mark.parametrize("valid, expected", [("ndcg@10", "hit@10"), ("recall@20", "ndcg@20"), ("mrr@5", None)])
def test_second_metric(valid, expected):
    assert cells_summary.second_metric(valid, {"hit@10": 1, "ndcg@20": 1, "recall@20": 1}) == expected
