"""run_recbole_diffusion.py end to end, the distributed CPU run, and the missing-dataset message."""

import socket
import sys
from pathlib import Path

import pytest

import run_recbole_diffusion
from recbole_diffusion import DatasetNotFoundError, run
from tests.conftest import run_script, script_args


def test_script_trains_and_tests(tiny_config, tmp_path):
    """A plugin model (DiffusionTrainer) through the script, two epochs: exit status 0, the test result printed, the
    best checkpoint stays, the epoch checkpoint (written at the start of the second epoch) is gone once the run is
    complete."""
    arguments = [arg for arg in script_args(tiny_config["data_path"], tmp_path) if not arg.startswith("--epochs=")]
    completed = run_script(tmp_path, "--model=DreamRec", "--dataset=markov", *arguments, "--epochs=2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    log = completed.stdout + completed.stderr
    assert "test result" in log and "ndcg@10" in log
    (best,) = (tmp_path / "saved").glob("DreamRec-*.pth")
    assert not best.name.endswith("-last_epoch.pth")


def test_a_recbole_model_runs_through_the_plugins_run(tiny_config):
    """A RecBole model (RecBole's Trainer, subclassed by the run trainer), two epochs, in the process (the script is
    the same for every model): the same checkpoints as the plugin model's."""
    config = {**tiny_config, "hidden_size": 16, "inner_size": 16, "n_layers": 1, "epochs": 2}
    result = run("SASRec", "markov", config_dict=config)
    assert "ndcg@10" in result["test_result"]
    (best,) = Path(config["checkpoint_dir"]).glob("SASRec-*.pth")
    assert not best.name.endswith("-last_epoch.pth")


def test_missing_dataset_gives_one_clear_error(tmp_path):
    completed = run_script(tmp_path, "--model=DreamRec", "--dataset=no-such-data", f"--data_path={tmp_path}")
    assert completed.returncode == 2
    expected_file = str(tmp_path / "no-such-data" / "no-such-data.inter")
    assert expected_file in completed.stderr
    assert "Traceback" not in completed.stderr


def test_unknown_model_gives_one_clear_error(monkeypatch, capsys):
    """In the process: the script's exit status and its one line (the subprocess test above covers the process)."""
    monkeypatch.setattr(sys, "argv", ["run_recbole_diffusion.py", "--model=Dreamrec", "--dataset=ml-100k"])
    assert run_recbole_diffusion.main(sys.argv[1:]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "Did you mean: DreamRec" in error


def test_missing_dataset_raises_from_python(tiny_config):
    with pytest.raises(DatasetNotFoundError, match=r"no-such-data\.inter"):
        run("DreamRec", "no-such-data", config_dict=tiny_config)


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return str(probe.getsockname()[1])


def test_two_process_gloo_run_on_cpu(tiny_config, tmp_path):
    config = {**tiny_config, "hidden_size": 16, "inner_size": 16, "diffusion_steps": 20, "gpu_id": ""}
    result = run("DreamRec", "markov", config_dict=config, nproc=2, port=free_port())
    assert result is not None
    assert 0.0 <= result["test_result"]["hit@10"] <= 1.0


def test_a_config_key_that_begins_like_a_script_option_is_not_taken_for_it():
    """``--seed`` is RecBole's seed, not an abbreviation of the comparison's ``--seeds``."""
    args = run_recbole_diffusion.parse_args(["--model=SASRec", "--seed=5", "--report=x"])
    assert args.seeds is None and not args.report_only
