"""benchmarks/: every command of benchmarks/README.md loads with the documented protocol, and the datasets it builds
have the documented sizes.

The README is the source of truth: its ``python run_recbole_diffusion.py ...`` lines are parsed with the run script's
own argument parser, and its "Datasets after filtering" table gives the expected counts. A benchmark protocol file
(``benchmarks/configs/*.yaml``, the only file of ``--config_files``) reaches every model of a command, so it may hold no
key of any of those models' own yaml; a per-model file (``benchmarks/configs/models/<Model>-<setting>.yaml``) holds
only keys of its model's yaml and is given to that model only, with ``--model_config_files``. Each model's config is
the one the comparison harness builds (its training replaced by a stub).
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

import run_recbole_diffusion
from recbole_diffusion import Config, create_dataset
from recbole_diffusion.compare import CellScores, compare
from recbole_diffusion.compare import run as compare_run
from recbole_diffusion.config import RECBOLE_MODEL_PROPERTIES
from recbole_diffusion.resources import model_yaml
from recbole_diffusion.utils import get_model, is_plugin_model
from tests.conftest import SHARED_DATASETS

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
README_TEXT = (BENCHMARKS / "README.md").read_text()
PROTOCOL_FILES = sorted((BENCHMARKS / "configs").glob("*.yaml"))
MODEL_FILES = sorted((BENCHMARKS / "configs" / "models").glob("*.yaml"))

# Keys that Config computes itself: a value for them in a yaml file would be overwritten, so they count as unknown.
DERIVED_KEYS = {
    "device",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "local_rank",
    "single_spec",
    "valid_neg_sample_args",
    "test_neg_sample_args",
    "model",
    "dataset",
}
FULL = {"valid": "full", "test": "full"}
LEAVE_ONE_OUT = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": FULL}
DIFFUREC_LOOP = {
    "eval_args": LEAVE_ONE_OUT,
    "MAX_ITEM_LIST_LENGTH": 50,
    "metrics": ["Hit", "NDCG"],
    "topk": [5, 10, 20],
    "valid_metric": "NDCG@10",
    "epochs": 500,
    "eval_step": 20,
    "stopping_step": 4,
}
DREAMREC_LOOP = {
    "eval_args": LEAVE_ONE_OUT,
    "MAX_ITEM_LIST_LENGTH": 10,
    "metrics": ["Hit", "NDCG"],
    "topk": [10, 20, 50],
    "valid_metric": "NDCG@20",
    "epochs": 1000,
    "eval_step": 10,
    "stopping_step": 10,
}
DIFFREC_LOOP = {
    "metrics": ["Recall", "NDCG"],
    "topk": [10, 20],
    "valid_metric": "Recall@20",
    "epochs": 1000,
    "eval_step": 5,
    "stopping_step": 2,
}
ALL_OF_ML_1M = {"val_interval": None, "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)"}
FIVE_CORE = {"val_interval": None, "user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "[5,inf)"}
# The protocol each file must give, as benchmarks/README.md documents it; a command without --config_files runs on
# the plugin's own protocol of its dataset, dataset_configs/<dataset>.yaml (key: the dataset's name).
EXPECTED = {
    "ml-100k": {"eval_args": LEAVE_ONE_OUT, "MAX_ITEM_LIST_LENGTH": 50, **FIVE_CORE},
    "DiffuRec-ml-1m": {**DIFFUREC_LOOP, **ALL_OF_ML_1M},
    "DiffuRec-beauty": {**DIFFUREC_LOOP, **FIVE_CORE},
    "DiffuRec-toys": {**DIFFUREC_LOOP, **FIVE_CORE},
    "DiffuRec-steam": {**DIFFUREC_LOOP, **FIVE_CORE, "ITEM_ID_FIELD": "product_id"},
    "DreamRec-ml-1m": {**DREAMREC_LOOP, **ALL_OF_ML_1M},
    "DreamRec-beauty": {**DREAMREC_LOOP, **FIVE_CORE},
    "DiffRec-ml-1m": {
        **DIFFREC_LOOP,
        "eval_args": {"split": {"RS": [0.7, 0.1, 0.2]}, "order": "TO", "group_by": "user", "mode": FULL},
        "val_interval": {"rating": "[4,inf)"},
        "user_inter_num_interval": "[10,inf)",
        "item_inter_num_interval": "[10,inf)",
        "rm_dup_inter": None,
    },
    "DiffRec-yelp": {
        **DIFFREC_LOOP,
        "eval_args": {"split": {"RS": [0.7, 0.1, 0.2]}, "order": "TO", "group_by": None, "mode": FULL},
        **FIVE_CORE,
        "rm_dup_inter": "first",
    },
}


def readme_commands():
    """Every `` `python run_recbole_diffusion.py ...` `` of the README, parsed by the run script's own parser."""
    commands = []
    for command in re.findall(r"`(python run_recbole_diffusion\.py [^`]*)`", README_TEXT):
        args = run_recbole_diffusion.parse_args(shlex.split(command)[2:])
        files = args.config_files.split() if args.config_files else []
        own_files = "+".join(sorted(args.model_config_files))
        test_id = f"{'+'.join(args.models)}:{args.dataset}:{len(files)}:{own_files}"
        commands.append(pytest.param(args.models, args.dataset, files, args.model_config_files, id=test_id))
    return commands


def readme_dataset_rows():
    """Rows ``| `<protocol>.yaml` | dataset | users | items | interactions | train / valid / test |`` of the README."""
    rows = []
    pattern = re.compile(r"^\| `([\w.-]+)\.yaml` \| ([\w-]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([^|]*)\|")
    for line in README_TEXT.splitlines():
        match = pattern.match(line)
        if match:
            name, dataset, users, items, inters, split = match.groups()
            numbers = [int(number.replace(",", "")) for number in re.findall(r"[\d,]+", split)]
            counts = [int(value.replace(",", "")) for value in (users, items, inters)]
            rows.append(pytest.param(name, dataset, counts, numbers, id=name))
    return rows


COMMANDS = readme_commands()
DATASET_ROWS = readme_dataset_rows()


def load_yaml(path, config):
    """A yaml file read as RecBole reads it (its loader turns e.g. ``1e-12`` into a float)."""
    return yaml.load(Path(path).read_text(), Loader=config.yaml_loader) or {}


def own_yaml(model_name):
    """The yaml only ``model_name`` reads: the plugin's for a plugin model, RecBole's for a RecBole model."""
    if is_plugin_model(get_model(model_name)):
        return model_yaml(model_name)
    return RECBOLE_MODEL_PROPERTIES / f"{model_name}.yaml"


def own_keys(model_name, config):
    path = own_yaml(model_name)
    return set(load_yaml(path, config)) if path.is_file() else set()


def known_keys(model_name, dataset):
    """Every key Config knows for the model and dataset without benchmark files: RecBole's defaults, the plugin's
    overall.yaml, the model's yaml and the dataset config."""
    return set(Config(model=model_name, dataset=dataset).final_config_dict) - DERIVED_KEYS


def commands_using(protocol_path):
    return [p.values for p in COMMANDS if str(protocol_path.relative_to(ROOT)) in p.values[2]]


def test_readme_has_commands_and_counts():
    assert len(COMMANDS) >= len(PROTOCOL_FILES) and DATASET_ROWS


@pytest.mark.parametrize("protocol", PROTOCOL_FILES, ids=lambda path: path.stem)
def test_every_protocol_file_is_documented(protocol):
    assert protocol.stem in EXPECTED, f"{protocol.name}: add its protocol to EXPECTED"
    assert commands_using(protocol), f"{protocol.name} is in no command of benchmarks/README.md"
    _, dataset, *_ = commands_using(protocol)[0]
    assert protocol.stem.endswith(f"-{dataset}")
    raw_eval_args = yaml.safe_load(protocol.read_text())["eval_args"]
    assert set(raw_eval_args) == {"split", "order", "group_by", "mode"}, "spell eval_args out in full"
    for line in protocol.read_text().splitlines():
        if line and not line.startswith("#"):
            assert "# (" in line, f"{protocol.name}: uncommented line {line!r}"


@pytest.mark.parametrize("models, dataset, files, model_files", COMMANDS)
def test_command_files_and_models(models, dataset, files, model_files):
    """--config_files is the protocol of this dataset alone (or absent: the plugin's protocol of the dataset, which
    the run reads by itself); each per-model file exists and goes to its model."""
    assert len(files) <= 1, "a benchmark command names only its protocol with --config_files"
    if files:
        protocol = ROOT / files[0]
        assert protocol.is_file() and protocol.parent == BENCHMARKS / "configs"
        assert protocol.stem.endswith(f"-{dataset}")
    else:
        assert (ROOT / "dataset_configs" / f"{dataset}.yaml").is_file() and dataset in EXPECTED
    for name, paths in model_files.items():
        for path in map(ROOT.joinpath, paths):
            assert path.is_file() and path.parent == BENCHMARKS / "configs" / "models", path
            assert path.stem.split("-")[0] == name, f"{path.name} given to {name}"
    for name in models:
        get_model(name)


def harness_configs(models, dataset, files, model_files, tmp_path, monkeypatch):
    """The config of each model as :func:`compare` builds it for the command, with training replaced by a stub."""
    configs = {}

    def stub_score_cell(config):
        configs[config["model"]] = config
        values = np.linspace(0.0, 1.0, 5)
        row = {config["valid_metric"].lower(): 0.5, "parameters": 1, "train_seconds_per_epoch": 1.0}
        per_user = {"user_id": np.arange(5), config["valid_metric"].lower(): values}
        row = {**row, "inference_users_per_second": 1.0, "peak_memory_mb": 1.0}
        return CellScores(row, per_user, [], {"n_users": 5})

    monkeypatch.setattr(compare_run, "score_cell", stub_score_cell)
    compare(
        models,
        dataset,
        config_file_list=[str(ROOT / name) for name in files],
        config_dict={"data_path": str(SHARED_DATASETS)},
        output_dir=tmp_path,
        model_config_files={name: [str(ROOT / path) for path in paths] for name, paths in model_files.items()},
    )
    return configs


@pytest.mark.parametrize("models, dataset, files, model_files", COMMANDS)
def test_command_config_has_the_protocol_and_each_models_own_keys(
    models, dataset, files, model_files, tmp_path, monkeypatch
):
    """For each model of the command, as the harness configures it: the documented protocol, every key of its own
    yaml (overridden only by its per-model file) untouched by the shared file, and no key of another model's
    per-model file."""
    protocol = Path(files[0]).stem if files else dataset
    configs = harness_configs(models, dataset, files, model_files, tmp_path, monkeypatch)
    for name in models:
        config = configs[name]
        for key, value in EXPECTED[protocol].items():
            assert config[key] == value, (name, protocol, key)
        own = load_yaml(own_yaml(name), config) if own_yaml(name).is_file() else {}
        for path in model_files.get(name, []):
            own.update(load_yaml(ROOT / path, config))
        for key, value in own.items():
            if key != "train_neg_sample_args":  # RecBole rewrites it into its dict form
                assert config[key] == value, (name, key)
        others = {
            key
            for other, paths in model_files.items()
            if other != name
            for path in paths
            for key in load_yaml(ROOT / path, config)
        }
        protocol_only = Config(
            model=name,
            dataset=dataset,
            config_file_list=[str(ROOT / path) for path in files],
            config_dict={"data_path": str(SHARED_DATASETS)},
        )
        for key in others - set(own):
            assert config[key] == protocol_only[key], (name, key)


@pytest.mark.parametrize("protocol", PROTOCOL_FILES, ids=lambda path: path.stem)
def test_protocol_keys_are_known_to_every_model_and_own_to_none(protocol):
    """A typo cannot hide (every key is one RecBole or the plugin knows for each model of the commands), and no key
    of a model's own yaml sits in the shared file, where it would reach the other models."""
    uses = commands_using(protocol)
    dataset = uses[0][1]
    models = sorted({name for command_models, *_ in uses for name in command_models})
    config = Config(model=models[0], dataset=dataset)
    keys = set(load_yaml(protocol, config))
    for name in models:
        assert keys <= known_keys(name, dataset), (name, sorted(keys - known_keys(name, dataset)))
        assert not keys & own_keys(name, config), (name, sorted(keys & own_keys(name, config)))


@pytest.mark.parametrize("model_file", MODEL_FILES, ids=lambda path: path.stem)
def test_model_file_holds_only_its_models_keys(model_file):
    model_name = model_file.stem.split("-")[0]
    assert is_plugin_model(get_model(model_name))
    config = Config(model=model_name, dataset="ml-100k")
    keys = set(load_yaml(model_file, config))
    assert keys and keys <= own_keys(model_name, config), sorted(keys - own_keys(model_name, config))
    relative = str(model_file.relative_to(ROOT))
    assert any(relative in p.values[3].get(model_name, []) for p in COMMANDS), f"{relative} is given to no model"
    for line in model_file.read_text().splitlines():
        if line and not line.startswith("#"):
            assert "# (" in line, f"{model_file.name}: uncommented line {line!r}"


FILTERING = ("load_col", "rm_dup_inter", "val_interval", "user_inter_num_interval", "item_inter_num_interval")
_FILTERED_DATASETS = {}


def filtered_dataset(config):
    """``create_dataset(config)``, built once per test session for each data folder, dataset, model type and
    filtering: the protocols and dataset configs that filter alike share one (test_config.py uses it too)."""
    key = (config["data_path"], config["dataset"], config["MODEL_TYPE"], repr([config[name] for name in FILTERING]))
    if key not in _FILTERED_DATASETS:
        _FILTERED_DATASETS[key] = create_dataset(config)
    return _FILTERED_DATASETS[key]


@pytest.mark.parametrize("protocol, dataset, counts, split", DATASET_ROWS)
def test_dataset_sizes_match_the_readme(protocol, dataset, counts, split, tmp_path):
    """Users, items and interactions after filtering (and, where documented, the train / valid / test sizes)."""
    if not (SHARED_DATASETS / dataset).is_dir():
        pytest.skip("shared/datasets is not beside the checkout")
    path = BENCHMARKS / "configs" / f"{protocol}.yaml"
    assert protocol.endswith(f"-{dataset}")
    model_name = commands_using(path)[0][0][0]
    config = Config(
        model=model_name,
        dataset=dataset,
        config_file_list=[str(path)],
        config_dict={"data_path": str(SHARED_DATASETS), "checkpoint_dir": str(tmp_path), "state": "WARNING"},
    )
    # build() below changes the dataset in place, so a dataset that is split is not shared
    built = create_dataset(config) if split else filtered_dataset(config)
    assert [built.user_num - 1, built.item_num - 1, built.inter_num] == counts
    if split:
        assert [len(part) for part in built.build()] == split
