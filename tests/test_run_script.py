"""run_recbole_diffusion.py end to end, the distributed CPU run, and the missing-dataset message."""

import socket

import pytest

import run_recbole_diffusion
from recbole_diffusion import DatasetNotFoundError, run
from tests.conftest import run_script, script_args


@pytest.mark.parametrize("model", ["DreamRec", "SASRec"], ids=["plugin-trainer", "recbole-trainer"])
def test_script_trains_and_tests(model, tiny_config, tmp_path):
    """A plugin model (DiffusionTrainer) and a RecBole model (RecBole's Trainer), two epochs: the best checkpoint
    stays, the epoch checkpoint (written at the start of the second epoch) is gone once the run is complete."""
    arguments = [arg for arg in script_args(tiny_config["data_path"], tmp_path) if not arg.startswith("--epochs=")]
    arguments.append("--epochs=2")
    completed = run_script(tmp_path, f"--model={model}", "--dataset=markov", *arguments)
    assert completed.returncode == 0, completed.stderr[-3000:]
    log = completed.stdout + completed.stderr
    assert "test result" in log and "ndcg@10" in log
    (best,) = (tmp_path / "saved").glob(f"{model}-*.pth")
    assert not best.name.endswith("-last_epoch.pth")


def test_missing_dataset_gives_one_clear_error(tmp_path):
    completed = run_script(tmp_path, "--model=DreamRec", "--dataset=no-such-data", f"--data_path={tmp_path}")
    assert completed.returncode == 2
    expected_file = str(tmp_path / "no-such-data" / "no-such-data.inter")
    assert expected_file in completed.stderr
    assert "Traceback" not in completed.stderr


def test_unknown_model_gives_one_clear_error(tmp_path):
    completed = run_script(tmp_path, "--model=Dreamrec", "--dataset=ml-100k")
    assert completed.returncode == 2
    assert "Did you mean: DreamRec" in completed.stderr and "Traceback" not in completed.stderr


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
