"""Checks of a run's resolved config before any data is loaded, and of the loaded data before anything trains.

:func:`check_config` runs, in this order: unknown keys (a key no configuration layer knows, e.g. a typo, is refused
with the closest known keys unless ``allow_unknown_keys`` is set), the types that the yaml layers declare in their
comments (``# (int)``, ``# (float)``, ``# (bool)``), the training and evaluation settings (``epochs``, ``eval_step``,
``metrics``, ``topk``, ``valid_metric``, ...) and the model's own ``check_config`` classmethod. Every failure is a
:class:`~recbole_diffusion.validation.ConfigError`: one line naming the key, what is allowed and what was given.
"""

import difflib
import re
from functools import lru_cache
from pathlib import Path

import recbole
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.evaluator.register import metrics_dict
from recbole.utils import ModelType

from recbole_diffusion import resources
from recbole_diffusion.utils import get_model, is_plugin_model
from recbole_diffusion.validation import (
    ConfigError,
    InputError,
    boolean,
    history_length,
    int_in,
    is_int,
    is_number,
    number,
    positive_int,
)

ALLOW_UNKNOWN_KEYS = "allow_unknown_keys"
RECBOLE_PROPERTIES = Path(recbole.__file__).resolve().parent / "properties"
# Options of run_recbole_diffusion.py and run_hyper_search.py: RecBole's Config reads them from the command line too.
RUN_SCRIPT_OPTIONS = frozenset(
    {
        "model", "dataset", "config_files", "model_config_files", "nproc", "ip", "port", "world_size",
        "group_offset", "seeds", "output_dir", "cells", "report_only", "force", "resume", "debug",
        "params_file", "algo", "max_evals", "early_stop", "output_file",
    }
)  # fmt: skip
# Keys that RecBole 1.2.1's code reads (some only under some settings) or sets, but no yaml of RecBole defines; and
# the keys the plugin sets for a run (distributed runs, a comparison's cell folder).
KEYS_WITHOUT_DEFAULT = frozenset(
    {
        "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device", "single_spec", "local_rank", "offset", "verbose",
        "valid_metric_bigger", "eval_neg_sample_args", "valid_neg_sample_args", "test_neg_sample_args", "repeatable",
        "additional_feat_suffix", "encoding", "token_num_threshold", "tail_ratio", "neg_sampling",
        "training_neg_sample_num", "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "INVERSE_ITEM_SEQ", "MASK_INDEX",
        "MASK_ITEM_SEQ", "NEG_ITEMS", "POS_ITEMS", "REORDER_ITEM_SEQ", "eta", "cin", "contrast", "feature_num",
        "has_residual", "norm", "sim", "use_filter", "xgb_early_stopping_rounds", "cell_dir",
    }
)  # fmt: skip
DECLARED_TYPE = re.compile(r"^(\w+):[^#]*#\s*\(([^)]*)\)")
CHECKED_TYPES = {"int": is_int, "float": is_number, "bool": lambda value: isinstance(value, bool)}
TYPE_NAMES = {"int": "an int", "float": "a number", "bool": "True or False"}
NONE_NAMES = ("~", "None")


class UnknownKeyError(InputError):
    """Keys that no configuration layer knows, given as ``(key, where it was set)`` pairs; the message names the
    closest known keys."""

    def __init__(self, unknown):
        parts = []
        for key, source in unknown:
            close = difflib.get_close_matches(key, known_keys(), n=3, cutoff=0.6)
            hint = f", did you mean {' or '.join(close)}?" if close else ""
            parts.append(f"{key} ({source}{hint})")
        super().__init__(
            f"unknown config key: {'; '.join(parts)}; no configuration layer knows it. "
            f"--{ALLOW_UNKNOWN_KEYS} (or {ALLOW_UNKNOWN_KEYS}: True) keeps unknown keys"
        )
        self.keys = [key for key, _ in unknown]


def _yaml_files():
    plugin_properties = resources.resource_dir("properties")
    return [
        *sorted(RECBOLE_PROPERTIES.rglob("*.yaml")),
        *sorted(plugin_properties.rglob("*.yaml")),
        *sorted(resources.resource_dir("dataset_configs").glob("*.yaml")),
    ]


@lru_cache(maxsize=None)
def _read_yaml(path):
    """A yaml layer as RecBole reads it (its loader takes ``1e-5`` for a float)."""
    return yaml.load(Path(path).read_text(), Loader=RecBoleConfig._build_yaml_loader(None)) or {}


@lru_cache(maxsize=None)
def known_keys():
    """Every key of every configuration layer (RecBole's and the plugin's yaml files, for any model or dataset),
    the keys RecBole reads without a default and the run scripts' options."""
    keys = set(KEYS_WITHOUT_DEFAULT | RUN_SCRIPT_OPTIONS)
    for path in _yaml_files():
        keys.update(_read_yaml(path))
    return frozenset(keys)


@lru_cache(maxsize=None)
def declared_types(path):
    """``{key: (test, allowed)}`` for the top-level keys of a yaml file whose comment declares a checked type
    (:func:`_value_check`) that the file's own default satisfies (a few of RecBole's declarations are wrong)."""
    defaults = _read_yaml(path)
    declared = {}
    for line in Path(path).read_text().splitlines():
        match = DECLARED_TYPE.match(line)
        value_check = _value_check(match.group(2)) if match else None
        if value_check is not None and value_check[0](defaults.get(match.group(1))):
            declared[match.group(1)] = value_check
    return declared


def _layer_files(model_name, dataset):
    """The yaml layers of ``model_name`` on ``dataset``, lowest precedence first (as :class:`Config` reads them)."""
    files = [RECBOLE_PROPERTIES / "overall.yaml", RECBOLE_PROPERTIES / "dataset" / "sample.yaml"]
    if not is_plugin_model(get_model(model_name)):
        files.append(RECBOLE_PROPERTIES / "model" / f"{model_name}.yaml")
    files += [resources.overall_yaml(), resources.model_yaml(model_name), resources.dataset_yaml(dataset)]
    return [path for path in files if path.is_file()]


def _value_check(type_text):
    """A test for values of a declared type (``int``, ``float``, ``bool``, each maybe ``or ~``), with what it
    allows; None for other types, which are not checked."""
    names = [name.strip() for name in type_text.split(" or ")]
    checked = [name for name in names if name not in NONE_NAMES]
    if not checked or not all(name in CHECKED_TYPES for name in checked):
        return None
    allowed = " or ".join([TYPE_NAMES[name] for name in checked] + (["~"] if len(checked) < len(names) else []))
    return (lambda value: value is None or any(CHECKED_TYPES[name](value) for name in checked)), allowed


def check_unknown_keys(config):
    """Refuse the keys given on the command line, in a config dict or in a user's yaml that no layer knows."""
    if config[ALLOW_UNKNOWN_KEYS]:
        return
    sources = (
        ("command line", config.cmd_config_dict),
        ("config dict", config.variable_config_dict),
        ("config file", config.file_config_dict),
    )
    unknown, seen = [], set()
    for source, values in sources:
        for key in values:
            if key not in known_keys() and key not in seen:
                unknown.append((key, source))
                seen.add(key)
    if unknown:
        raise UnknownKeyError(unknown)


class ConfigValues(dict):
    """Resolved config values that read a missing key as None, as RecBole's ``Config`` does."""

    def __missing__(self, key):
        return None


def check_declared_types(values, keys):
    """Check the ``keys`` of ``values`` against the type that the highest yaml layer defining each declares."""
    declared = {}
    for path in _layer_files(values["model"], values["dataset"]):
        declared.update(declared_types(path))
    for key in keys:
        if key in declared and not declared[key][0](values[key]):
            raise ConfigError(key, declared[key][1], values[key])


def _names(value):
    """A config value that may be one name or a list of names, as a list."""
    return [value] if isinstance(value, (str, int)) else list(value or [])


def check_run_settings(config):
    """Check the training and evaluation settings for values and contradictions RecBole would accept silently or
    only fail on after loading the data."""
    epochs = positive_int("epochs", config["epochs"])
    int_in("eval_step", config["eval_step"], 0, epochs, " (epochs; 0: no validation)")
    positive_int("stopping_step", config["stopping_step"])
    positive_int("train_batch_size", config["train_batch_size"])
    positive_int("eval_batch_size", config["eval_batch_size"])
    number("learning_rate", config["learning_rate"], 0, low_open=True)
    number("weight_decay", config["weight_decay"], 0)
    boolean("reproducibility", config["reproducibility"])
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        history_length(config)


def check_evaluation_settings(config):
    """Check ``metrics`` (RecBole's or the plugin's, all ranking or all value metrics), ``topk`` and
    ``valid_metric`` (a metric of ``metrics``, at a cut-off of ``topk`` for a top-k metric). Called by
    :class:`~recbole_diffusion.Config` before RecBole's own handling, which raised a bare exception."""
    metrics = _names(config["metrics"])
    unknown = [metric for metric in metrics if str(metric).lower() not in metrics_dict]
    if not metrics or unknown:
        known = ", ".join(sorted(metrics_dict))
        raise ConfigError("metrics", f"a list of metric names among {known}", config["metrics"])
    if len({metrics_dict[metric.lower()].metric_type for metric in metrics}) > 1:
        raise ConfigError("metrics", "ranking metrics only or value metrics (AUC, RMSE, ...) only", config["metrics"])
    topk = _names(config["topk"])
    if not topk or not all(is_int(k) and k >= 1 for k in topk):
        raise ConfigError("topk", "a positive int or a list of them", config["topk"])
    at_k = [metric for metric in metrics if {"rec.topk", "rec.items"} & set(metrics_dict[metric.lower()].metric_need)]
    choices = [f"{metric}@{k}" for metric in at_k for k in topk] + [metric for metric in metrics if metric not in at_k]
    valid_metric = config["valid_metric"]
    if str(valid_metric).lower() not in {choice.lower() for choice in choices}:
        raise ConfigError("valid_metric", f"one of metrics at a cut-off of topk: {', '.join(choices)}", valid_metric)


def check_config(config):
    """Every check of a run's resolved ``config`` that needs no data; the model's ``check_config`` last."""
    check_unknown_keys(config)
    check_values(config)


def check_values(config, overrides=None):
    """The checks of :func:`check_config` but the unknown keys, on ``config`` with ``overrides`` (a dict of values,
    e.g. a point of a search space) in place of its own values."""
    overrides = overrides or {}
    values = ConfigValues({**config.final_config_dict, **overrides})
    check_declared_types(values, [*config.external_config_dict, *overrides])
    check_run_settings(values)
    model_check = getattr(get_model(values["model"]), "check_config", None)
    if model_check is not None:
        model_check(values)


def check_dataset(config, dataset):
    """Check ``topk`` against the number of items of the filtered ``dataset``."""
    items = dataset.item_num - 1  # less the padding item
    topk = _names(config["topk"])
    if max(topk) > items:
        raise ConfigError("topk", f"cut-offs up to the number of items ({items})", config["topk"])
