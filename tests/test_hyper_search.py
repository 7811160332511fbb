"""Hyperparameter search: the shipped search spaces, the input checks, the message without the tune extra, and real
searches through run_hyper_search.py and the Python API (DreamRec, and the two-stage DiffuASR)."""

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

import run_hyper_search
from recbole_diffusion import Config, plugin_model_names, resources
from recbole_diffusion import hyper_search as hyper_search_module
from recbole_diffusion.hyper_search import HyperSearchError, check_space_keys, hyper_search, read_space

MAX_GRID_POINTS = 54
FAST_DREAMREC = {"hidden_size": 8, "inner_size": 8, "diffusion_steps": 10, "train_batch_size": 1024}
FAST_DIFFUASR = {  # stage 1: 4 x 4 maps, one downsampling, 2 DDIM steps; the backbone SASRec: one 16-wide layer
    "hidden_size": 16,
    "unet_channel_mult": [1, 2],
    "unet_res_blocks": 1,
    "aug_epochs": 1,
    "diffusion_steps": 10,
    "inference_steps": 2,
    "n_layers": 1,
    "inner_size": 16,
    "train_batch_size": 1024,
}


def write_space(folder, text):
    params_file = folder / "space.hyper"
    params_file.write_text(text)
    return params_file


@pytest.mark.parametrize("model_name", [name for name in plugin_model_names() if name != "SequentialPop"])
def test_every_plugin_model_ships_a_small_grid_of_its_own_keys(model_name):
    """Every plugin model but SequentialPop, which has nothing to tune."""
    params_file = resources.hyper_space(model_name)
    space = read_space(params_file)
    assert all(kind == "choice" for kind, _ in space.values()), "shipped spaces are grids (the default algo)"
    assert math.prod(len(values) for _, values in space.values()) <= MAX_GRID_POINTS
    config = Config(model=model_name, dataset="no-dataset-yaml")  # RecBole's, overall.yaml's and the model's keys
    check_space_keys(space, config, params_file)
    for key, (_, values) in space.items():
        default = config[key]
        if isinstance(default, int) and not isinstance(default, bool):
            assert all(isinstance(value, int) for value in values), f"{model_name}: {key} takes integers"


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate choice [0.001]\nlerning_rate choice [0.1]\n", "lerning_rate: not a config key of DreamRec"),
        ("learning_rate logunif -9,-2\n", "unknown kind 'logunif'; allowed: choice, uniform, quniform, loguniform"),
        ("learning_rate choice 0.001\n", r"line 1: learning_rate choice: expected a non-empty Python list"),
        ("# a comment\n\nlearning_rate uniform 0.1\n", r"line 3: learning_rate uniform: expected low,high"),
        ("learning_rate loguniform -9,-2\n", "algo exhaustive searches a grid, but .* draws learning_rate"),
        ("learning_rate choice [0.001]\nlearning_rate choice [0.01]\n", "line 2: learning_rate appears twice"),
        ("# only a comment\n", "no parameters to search"),
    ],
)
def test_bad_space_files_are_rejected_naming_file_and_key(text, message, tmp_path):
    params_file = write_space(tmp_path, text)
    with pytest.raises(HyperSearchError, match=message):
        hyper_search("DreamRec", "markov", params_file=params_file)


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        ("SASRec", {}, r"SASRec has no shipped search space \(expected .*SASRec\.hyper\); give one with --params_file"),
        ("DreamRec", {"params_file": "no/such.hyper"}, "params_file: no such file no/such.hyper"),
        ("DreamRec", {"algo": "grid"}, "algo: expected one of exhaustive, random, bayes, got 'grid'"),
        ("DreamRec", {"max_evals": 0}, "max_evals: expected a positive integer, got 0"),
        ("DreamRec", {"config_dict": {"learning_rate": 0.01}}, "learning_rate: searched by .* but also fixed"),
        ("DiffuASR", {"config_dict": {"augmented_data_path": "aug"}}, "--model=SASRec --data_path=aug"),
    ],
)
def test_bad_search_arguments_are_rejected_before_training(model, kwargs, message):
    with pytest.raises(HyperSearchError, match=message):
        hyper_search(model, "markov", **kwargs)


def test_searched_key_on_the_command_line_is_rejected(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["run_hyper_search.py", "--model=DreamRec", "--learning_rate=0.01"])
    assert run_hyper_search.main() == 2
    assert "learning_rate: searched by" in capsys.readouterr().err


def test_without_hyperopt_the_script_prints_one_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hyperopt", None)  # import hyperopt now raises ImportError
    monkeypatch.setattr(sys, "argv", ["run_hyper_search.py", "--model=DreamRec"])
    assert run_hyper_search.main() == 2
    error = capsys.readouterr().err
    assert error.strip().splitlines() == [
        'error: hyperparameter search needs hyperopt, which is not installed: pip install -e ".[tune]"'
    ]


def recorded_runs(monkeypatch):
    """The config dicts of every run the search starts (the real run still happens)."""
    config_dicts = []
    run = hyper_search_module.run_recbole_diffusion

    def recording_run(model, dataset, config_file_list, config_dict):
        config_dicts.append(config_dict)
        return run(model, dataset, config_file_list, config_dict)

    monkeypatch.setattr(hyper_search_module, "run_recbole_diffusion", recording_run)
    return config_dicts


def test_script_runs_every_grid_point_and_reports_the_best(tiny_config, tmp_path, monkeypatch, capsys):
    pytest.importorskip("hyperopt")
    monkeypatch.chdir(tmp_path)  # RecBole's logger writes ./log
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({**tiny_config, **FAST_DREAMREC}))
    params_file = write_space(tmp_path, "# two trials\nlearning_rate choice [0.001,0.01]\n")
    output_file = tmp_path / "report.json"
    argv = [f"--config_files={config_file}", f"--params_file={params_file}", f"--output_file={output_file}"]
    monkeypatch.setattr(sys, "argv", ["run_hyper_search.py", "--model=DreamRec", "--dataset=markov", *argv])
    runs = recorded_runs(monkeypatch)

    assert run_hyper_search.main() == 0

    assert sorted(run["learning_rate"] for run in runs) == [0.001, 0.01]
    report = json.loads(output_file.read_text())
    assert sorted(trial["params"]["learning_rate"] for trial in report["trials"]) == [0.001, 0.01]
    best = max(report["trials"], key=lambda trial: trial["best_valid_score"])
    assert report["best_params"] == best["params"]
    assert report["best_valid_score"] == best["best_valid_result"]["hit@10"]
    assert report["best_test_result"] == best["test_result"] and "ndcg@10" in best["test_result"]
    assert report["valid_metric"] == "Hit@10" and report["algo"] == "exhaustive"
    assert f"best parameters: {best['params']}" in capsys.readouterr().out


def test_max_evals_caps_an_exhaustive_search_of_the_two_stage_diffuasr(tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("hyperopt")
    monkeypatch.chdir(tmp_path)
    params_file = write_space(tmp_path, "aug_num choice [2,3]\n")
    runs = recorded_runs(monkeypatch)

    config_dict = {**tiny_config, **FAST_DIFFUASR}
    output_file = hyper_search("DiffuASR", "markov", params_file=params_file, max_evals=1, config_dict=config_dict)

    assert len(runs) == 1 and runs[0]["aug_num"] in (2, 3)
    report = json.loads(output_file.read_text())
    assert output_file.parent == Path("results", "markov") and output_file.name.startswith("hyper-DiffuASR-")
    assert [trial["params"] for trial in report["trials"]] == [report["best_params"]]
    assert "hit@10" in report["best_test_result"]
