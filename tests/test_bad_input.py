"""Bad input and faults: every invalid setting or data file stops a run with one line before the data are loaded
(or before training, for what needs the data); NaN losses and scores stop it; checkpoints never collide; an
interrupted single run resumes to the metrics of an uninterrupted one."""

import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

import run_hyper_search
import run_recbole_diffusion
from recbole_diffusion import Config, cli, create_dataset, get_trainer, plugin_model_names, run
from recbole_diffusion.atomic_files import DataFileError
from recbole_diffusion.preflight import UnknownKeyError, check_config
from recbole_diffusion.quick_start import checkpoint_file
from recbole_diffusion.trainer import NonFiniteError, stop_on_non_finite_values
from recbole_diffusion.validation import ConfigError
from tests.conftest import build_model
from tests.sequential_configs import DREAMREC_SMALL

REPOSITORY = Path(__file__).resolve().parents[1]
README_TEXT = (REPOSITORY / "README.md").read_text()
SCRIPTS = {"run_recbole_diffusion.py": run_recbole_diffusion, "run_hyper_search.py": run_hyper_search}


def script_main(script, arguments, monkeypatch):
    """``script.main`` with ``sys.argv`` as RecBole's command-line reader expects it."""
    monkeypatch.setattr(sys, "argv", [f"{script.__name__}.py", *arguments])
    return script.main(arguments)


@pytest.mark.parametrize(
    "model, key, value, message",
    [
        ("DreamRec", "p_uncond", 1.5, "p_uncond: a number in [0, 1), got 1.5"),
        ("DreamRec", "inference_steps", -3, "inference_steps: an int in 1..200 (DDIM steps"),
        ("DreamRec", "hidden_size", "abc", "hidden_size: an int, got 'abc'"),
        ("DreamRec", "encoder_block", "bert", "encoder_block: one of official, sasrec, got 'bert'"),
        ("PreferDiff", "initializer_range", 0.0, "initializer_range: a number > 0, got 0.0"),
        ("DiffuRec", "valid_inference_steps", 33, "valid_inference_steps: an int in 1..32"),
        ("DimeRec", "n_interests", 99, "n_interests: an int in 1..50 (MAX_ITEM_LIST_LENGTH), got 99"),
        ("DiQDiff", "num_codes", 0, "num_codes: a positive int, got 0"),
        ("DiffDiv", "divergence", "kl", "divergence: one of beta, gamma, mse, got 'kl'"),
        ("DiffRec2", "inference_timestep", 1000, "inference_timestep: an int in 0..999"),
        ("DiffuASR", "hidden_size", 60, "hidden_size: a perfect square"),
        ("DiffRec", "sampling_steps", 41, "sampling_steps: an int in 0..40 (steps), got 41"),
        ("TDiffRec", "w_max", 0.01, "w_max: a number >= w_min (0.1), got 0.01"),
        ("LDiffRec", "in_dims", [1], "in_dims: a non-empty list of ints >= n_cate (2), got [1]"),
        ("DDRM", "alpha", 2.0, "alpha: a number in [0, 1], got 2.0"),
        ("SASRec", "learning_rate", -1.0, "learning_rate: a number > 0, got -1.0"),
    ],
)
def test_a_bad_value_is_refused_before_any_data_is_loaded(model, key, value, message, tmp_path):
    settings = {"data_path": str(tmp_path), "checkpoint_dir": str(tmp_path / "saved"), key: value}
    with pytest.raises(ConfigError) as raised:
        run(model, "no-such-data", config_dict=settings)  # the data would be missing: the check comes first
    assert message in str(raised.value)


def test_every_plugin_model_checks_its_resolved_defaults_without_data():
    for model in plugin_model_names():
        check_config(Config(model=model, dataset="ml-100k"))


def test_the_run_script_prints_one_line_and_exits_with_status_2(monkeypatch, capsys, tmp_path):
    arguments = ["--model=DreamRec", "--dataset=ml-100k", "--p_uncond=1.5", f"--checkpoint_dir={tmp_path}"]
    assert script_main(run_recbole_diffusion, arguments, monkeypatch) == 2
    assert capsys.readouterr().err == "error: p_uncond: a number in [0, 1), got 1.5\n"
    with pytest.raises(ConfigError):  # --debug: the exception, with its traceback
        script_main(run_recbole_diffusion, [*arguments, "--debug"], monkeypatch)
    monkeypatch.setenv("RECBOLE_DIFFUSION_DEBUG", "1")
    with pytest.raises(ConfigError):
        script_main(run_recbole_diffusion, arguments, monkeypatch)


def test_compare_and_the_hyper_search_check_before_anything_runs(monkeypatch, capsys, tmp_path):
    compare_arguments = ["--model=DreamRec,SASRec", "--dataset=ml-100k", "--epochs=0", f"--output_dir={tmp_path}"]
    assert script_main(run_recbole_diffusion, compare_arguments, monkeypatch) == 2
    assert capsys.readouterr().err == "error: epochs: a positive int, got 0\n"
    search_arguments = ["--model=DreamRec", "--dataset=ml-100k", "--guidance_weight=x", f"--output_file={tmp_path}/s"]
    assert script_main(run_hyper_search, search_arguments, monkeypatch) == 2
    assert capsys.readouterr().err == "error: guidance_weight: a number, got 'x'\n"
    space = tmp_path / "space.hyper"
    space.write_text("learning_rate choice [0.001]\np_uncond choice [0.1,1.0]\n")
    assert script_main(run_hyper_search, ["--model=DreamRec", f"--params_file={space}"], monkeypatch) == 2
    assert capsys.readouterr().err == "error: p_uncond: a number in [0, 1), got 1.0\n"


def test_an_unknown_key_is_refused_with_the_closest_known_keys(monkeypatch, capsys, tmp_path):
    with pytest.raises(UnknownKeyError, match=r"learning_rat \(config dict, did you mean learning_rate"):
        check_config(Config(model="SASRec", dataset="ml-100k", config_dict={"learning_rat": 0.01}))
    check_config(Config(model="SASRec", dataset="ml-100k", config_dict={"learning_rat": 0, "allow_unknown_keys": True}))
    arguments = ["--model=DreamRec", "--dataset=ml-100k", "--learning_rat=0.01", "--epochs=0"]
    assert script_main(run_recbole_diffusion, arguments, monkeypatch) == 2
    assert "learning_rat (command line, did you mean learning_rate" in capsys.readouterr().err
    assert script_main(run_recbole_diffusion, [*arguments, "--allow_unknown_keys"], monkeypatch) == 2
    assert capsys.readouterr().err == "error: epochs: a positive int, got 0\n"  # the next check


def repository_yaml_files():
    """Every yaml file of the repository with the model it is meant for."""
    files = {path: path.stem for path in (REPOSITORY / "properties" / "model").glob("*.yaml")}
    files.update({path: "DreamRec" for path in (REPOSITORY / "dataset_configs").glob("*.yaml")})
    files[REPOSITORY / "properties" / "overall.yaml"] = "DreamRec"
    files[REPOSITORY / "properties" / "protocol" / "general.yaml"] = "DiffRec"
    files[REPOSITORY / "benchmarks" / "gpu-smoke.yaml"] = "DreamRec"
    for path in (REPOSITORY / "benchmarks" / "configs").rglob("*.yaml"):
        files[path] = path.stem.split("-")[0]
    return [pytest.param(path, model, id=str(path.relative_to(REPOSITORY))) for path, model in sorted(files.items())]


@pytest.mark.parametrize("path, model", repository_yaml_files())
def test_no_yaml_of_the_repository_trips_a_check(path, model):
    check_config(Config(model=model, dataset="ml-100k", config_file_list=[str(path)]))


def readme_commands():
    """Every command of the two run scripts in the README and in the reports' README, code blocks and inline,
    continuation lines joined (the Slurm example's shell variable ``$CELL`` set to one of its cells)."""
    results_text = (REPOSITORY / "benchmarks" / "results" / "README.md").read_text()
    text = (README_TEXT + results_text).replace("\\\n", " ").replace("$CELL", "SASRec:2020")
    commands = re.findall(r"^ *(python run_(?:recbole_diffusion|hyper_search)\.py .*)$", text, flags=re.MULTILINE)
    commands += re.findall(r"`(python run_(?:recbole_diffusion|hyper_search)\.py [^`]*)`", text)
    return sorted({command for command in commands if "..." not in command})


@pytest.mark.parametrize("command", readme_commands())
def test_no_readme_command_trips_a_check(command, monkeypatch):
    words = shlex.split(command, comments=True)
    arguments = [word for word in words[2:] if word not in run_recbole_diffusion.FLAGS]
    monkeypatch.chdir(REPOSITORY)
    monkeypatch.setattr(sys, "argv", [words[1], *arguments])
    args = SCRIPTS[words[1]].parse_args(arguments)
    files = args.config_files.split() if args.config_files else []
    for model in args.model.split(","):
        own_files = getattr(args, "model_config_files", {}).get(model, [])
        check_config(Config(model=model, dataset=args.dataset, config_file_list=[*files, *own_files]))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epochs", 0, "epochs: a positive int, got 0"),
        ("eval_step", 5, "eval_step: an int in 0..1 (epochs; 0: no validation), got 5"),
        ("valid_metric", "NDCG@20", "valid_metric: one of metrics at a cut-off of topk: Hit@10, NDCG@10, got 'NDCG@2"),
        ("metrics", ["Hit", "Foo"], "metrics: a list of metric names among"),
        ("metrics", ["Hit", "RMSE"], "metrics: ranking metrics only or value metrics"),
        ("topk", [10, 0], "topk: a positive int or a list of them, got [10, 0]"),
    ],
)
def test_contradicting_settings_are_refused_up_front(tiny_config, key, value, message):
    with pytest.raises(ConfigError) as raised:
        check_config(Config(model="SASRec", dataset="markov", config_dict={**tiny_config, key: value}))
    assert message in str(raised.value)


def test_a_topk_beyond_the_item_count_is_refused_before_training(tiny_config):
    with pytest.raises(ConfigError, match=r"topk: cut-offs up to the number of items \(60\), got \[10, 100\]"):
        run("SASRec", "markov", config_dict={**tiny_config, "topk": [10, 100]})


HEADER = "user_id:token\titem_id:token\ttimestamp:float"
ROWS = [f"u{user}\ti{(7 * user + step) % 30}\t{step}" for user in range(20) for step in range(6)]
BAD_FILES = {
    "no_suffix": (["user_id:token\titem_id\ttimestamp:float", *ROWS], "line 1, column 2 ('item_id'): no type suffix"),
    "unknown_type": ([HEADER.replace("item_id:token", "item_id:tokn"), *ROWS], "unknown type 'tokn'"),
    "comma": ([HEADER.replace("\t", ","), *(row.replace("\t", ",") for row in ROWS)], "separated by ','"),
    "text_in_float": ([HEADER, *ROWS[:3], "u0\ti3\tyesterday", *ROWS[3:]], "line 5, column timestamp (float)"),
    "empty": ([], "the file is empty"),
    "no_user": ([HEADER.replace("user_id", "uid"), *ROWS], "line 1: no column 'user_id' (USER_ID_FIELD)"),
    "too_short": ([HEADER, *(row for row in ROWS if row.endswith(("\t0", "\t1")))], "no user has the 3 interactions"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_data_file_gives_one_line_naming_the_file_and_place(name, tiny_config, tmp_path):
    lines, message = BAD_FILES[name]
    (tmp_path / name).mkdir()
    (tmp_path / name / f"{name}.inter").write_text("".join(f"{line}\n" for line in lines))
    settings = {**tiny_config, "data_path": str(tmp_path), "user_inter_num_interval": None}
    with pytest.raises(DataFileError) as raised:
        create_dataset(Config(model="SASRec", dataset=name, config_dict=settings))
    assert str(raised.value).startswith(str(tmp_path / name / f"{name}.inter"))
    assert message in str(raised.value)


def test_checkpoint_names_are_unique_per_process_and_run(tiny_config):
    config = Config(model="SASRec", dataset="markov", config_dict=tiny_config)
    first, second = checkpoint_file(config), checkpoint_file(config)
    assert first != second
    assert re.fullmatch(r"SASRec-markov-\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-.+-p\d+(-r\d+)?\.pth", first.name)


def test_an_interrupted_run_resumes_to_the_uninterrupted_metrics(tiny_config, tmp_path, monkeypatch):
    settings = {**tiny_config, **DREAMREC_SMALL, "epochs": 3, "learning_rate": 0.0003}  # Hit@10 below 1
    settings["checkpoint_dir"] = str(tmp_path / "saved")
    uninterrupted = run("DreamRec", "markov", config_dict={**settings, "checkpoint_dir": str(tmp_path / "whole")})
    trainer_class = get_trainer(None, "DreamRec")
    train_epoch = trainer_class._train_epoch

    def killed_in_epoch_two(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            raise KeyboardInterrupt
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(trainer_class, "_train_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run("DreamRec", "markov", config_dict=settings)
    monkeypatch.setattr(trainer_class, "_train_epoch", train_epoch)
    (epoch_checkpoint,) = (tmp_path / "saved").glob("*-last_epoch.pth")
    with pytest.raises(ConfigError, match="resume: a checkpoint of a run with this config"):
        run("DreamRec", "markov", config_dict={**settings, "learning_rate": 0.01}, resume=str(epoch_checkpoint))
    resumed = run("DreamRec", "markov", config_dict=settings, resume=str(epoch_checkpoint))
    assert resumed["test_result"] == uninterrupted["test_result"]
    assert resumed["best_valid_result"] == uninterrupted["best_valid_result"]
    assert not epoch_checkpoint.exists()  # a finished run leaves nothing to resume
    (whole_best,) = (tmp_path / "whole").glob("*.pth")
    (resumed_best,) = (tmp_path / "saved").glob("*.pth")
    whole_weights, resumed_weights = (torch.load(path, weights_only=True) for path in (whole_best, resumed_best))
    assert whole_weights["epoch"] == resumed_weights["epoch"]
    for name, weight in whole_weights["state_dict"].items():
        assert torch.equal(resumed_weights["state_dict"][name], weight), name


def test_a_nan_loss_and_nan_scores_stop_with_one_line(tiny_config):
    config, model, train_data, valid_data, test_data = build_model("DreamRec", {**tiny_config, **DREAMREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    stop_on_non_finite_values(trainer)
    model.calculate_loss = lambda interaction: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(NonFiniteError, match=r"DreamRec: the training loss is nan in epoch 0 .*learning_rate \(now"):
        trainer.fit(train_data, valid_data, saved=False)
    model.full_sort_predict = lambda interaction: torch.full((len(interaction), model.n_items), float("nan"))
    with pytest.raises(NonFiniteError, match="DreamRec: NaN scores in"):
        trainer.evaluate(test_data, load_best_model=False)


def test_the_rows_of_the_bad_files_load_without_their_fault(tiny_config, tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "good.inter").write_text("".join(f"{line}\n" for line in [HEADER, *ROWS]))
    settings = {**tiny_config, "data_path": str(tmp_path), "user_inter_num_interval": None}
    assert create_dataset(Config(model="SASRec", dataset="good", config_dict=settings)).inter_num == len(ROWS)


def test_an_interruption_is_one_line_and_status_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert cli.exit_status(interrupted) == cli.INTERRUPTED_STATUS
    assert capsys.readouterr().err == cli.INTERRUPTED + "\n"
    with pytest.raises(KeyboardInterrupt):
        cli.exit_status(interrupted, debug_flag=True)
