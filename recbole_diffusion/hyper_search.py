"""Hyperparameter search for one model: RecBole's ``HyperTuning`` (hyperopt) over the plugin's own training run.

Every trial trains and tests the model as :func:`recbole_diffusion.run` does (the plugin's configuration layers,
data preparation, model and trainer; early stopping on ``valid_metric``, the best checkpoint tested), with the trial's
parameters added to the config dict, so all trials share the seed and the split. RecBole's own
``recbole.quick_start.objective_function`` is not used: its RecBole ``Config`` gives a plugin model named like a
RecBole model (DiffRec, LDiffRec) RecBole's yaml and data loader, and it reports to ray, which does not import here.

A search space is a file in RecBole's ``.hyper`` format, one parameter a line, ``<key> <kind> <values>``::

    learning_rate choice [0.0001,0.001,0.01]
    dropout uniform 0.1,0.5
    hidden_size quniform 32,128,32
    weight_decay loguniform -11.5,-4.6

``loguniform`` takes natural-log bounds (``-11.5,-4.6`` is 1e-5 to 1e-2) and ``quniform`` yields floats (64.0), so
integer keys belong in a ``choice``. Blank lines and lines starting with ``#`` are skipped. Every plugin model ships
a grid (choices only) as ``properties/hyper/<Model>.hyper``.

``algo``: ``exhaustive`` tries the points of a grid in random order without repeats (every parameter must be a
``choice``); ``random`` and ``bayes`` (TPE) draw ``max_evals`` points from any space. Every algorithm stops after
``early_stop`` trials in a row without a better validation score (RecBole's default 10).

hyperopt comes with the ``tune`` extra; it is imported only when a search starts.
"""

import ast
import itertools
import json
import math
from datetime import datetime
from logging import getLogger
from pathlib import Path

from recbole.trainer.hyper_tuning import HyperTuning
from recbole.utils import set_color

from recbole_diffusion import resources
from recbole_diffusion.config import Config
from recbole_diffusion.preflight import check_config, check_values
from recbole_diffusion.quick_start import run_recbole_diffusion
from recbole_diffusion.two_stage import is_two_stage
from recbole_diffusion.utils import get_model
from recbole_diffusion.validation import InputError, is_positive_int

ALGOS = ("exhaustive", "random", "bayes")
RANGE_FORMS = {"uniform": "low,high", "quniform": "low,high,q", "loguniform": "low,high"}
SPACE_KINDS = ("choice", *RANGE_FORMS)
DEFAULT_MAX_EVALS = 100
DEFAULT_EARLY_STOP = 10
INSTALL_HINT = 'pip install -e ".[tune]"'
TRIAL_RESULT_KEYS = ("best_valid_score", "best_valid_result", "test_result")


class HyperSearchError(InputError):
    """A search cannot start; the message names the argument, file or key at fault."""


def hyper_search(
    model,
    dataset,
    params_file=None,
    algo="exhaustive",
    max_evals=None,
    early_stop=DEFAULT_EARLY_STOP,
    config_file_list=None,
    config_dict=None,
    output_file=None,
):
    """Search ``model``'s hyperparameters on ``dataset``; write every trial and the best one to a JSON report.

    Args:
        model (str): a plugin or RecBole model name.
        dataset (str): dataset name.
        params_file (str or Path, optional): the search space; default the model's shipped
            ``properties/hyper/<model>.hyper`` (RecBole's models have none: give one).
        algo (str): ``exhaustive``, ``random`` or ``bayes``.
        max_evals (int, optional): at most this many trials; default the whole grid for ``exhaustive``, else 100.
        early_stop (int): stop after this many trials in a row without a better validation score.
        config_file_list (list of str, optional), config_dict (dict, optional): fixed settings of every trial, as
            for :func:`recbole_diffusion.run`; they, and the command line, must not set a searched key.
        output_file (str or Path, optional): the report; default ``results/<dataset>/hyper-<model>-<time>.json``.

    Returns:
        Path: the report, a JSON object with ``best_params``, ``best_valid_score``, ``best_valid_result``,
        ``best_test_result`` and ``trials`` (each with ``params``, ``best_valid_score``, ``best_valid_result`` and
        ``test_result``), besides the model, dataset, space file, algorithm and validation metric.
    """
    _check_search_arguments(algo, max_evals, early_stop)
    get_model(model)  # an unknown name fails here, with close matches, before a space file is looked for
    params_file = space_file(model, params_file)
    space = read_space(params_file)
    if algo == "exhaustive":
        _check_grid(space, params_file)
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_config(config)
    check_space_keys(space, config, params_file)
    check_space_values(space, config)
    _check_two_stage(config)
    _require_hyperopt()

    trials = _run_trials(model, dataset, space, algo, max_evals, early_stop, config_file_list, config_dict)
    report = search_report(model, dataset, params_file, algo, config, trials)
    return _write_report(report, Path(output_file or _default_output_file(model, dataset)))


def _run_trials(model, dataset, space, algo, max_evals, early_stop, config_file_list, config_dict):
    """Run the search with RecBole's HyperTuning; the list of finished trials."""
    trials = []
    tuner = HyperTuning(
        _objective(model, dataset, config_dict, trials),
        params_dict=hyperopt_params_dict(space),
        fixed_config_file_list=config_file_list,
        algo=algo,
        max_evals=max_evals or DEFAULT_MAX_EVALS,
        early_stop=early_stop,
    )
    if algo == "exhaustive" and max_evals:
        tuner.max_evals = min(int(tuner.max_evals), max_evals)  # HyperTuning set it to the grid size
    tuner.run()
    return trials


def _write_report(report, output_file):
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text(json.dumps(report, indent=2) + "\n")
    logger = getLogger()
    logger.info(set_color("best params", "yellow") + f": {report['best_params']}")
    logger.info(set_color("best test result", "yellow") + f": {report['best_test_result']}")
    logger.info(f"hyperparameter search report ({len(report['trials'])} trials) written to {output_file}")
    return output_file


def _require_hyperopt():
    try:
        import hyperopt  # noqa: F401
    except ImportError:
        raise HyperSearchError(
            f"hyperparameter search needs hyperopt, which is not installed: {INSTALL_HINT}"
        ) from None


def _check_search_arguments(algo, max_evals, early_stop):
    if algo not in ALGOS:
        raise HyperSearchError(f"algo: expected one of {', '.join(ALGOS)}, got {algo!r}")
    if max_evals is not None and not is_positive_int(max_evals):
        raise HyperSearchError(f"max_evals: expected a positive integer, got {max_evals!r}")
    if not is_positive_int(early_stop):
        raise HyperSearchError(f"early_stop: expected a positive integer, got {early_stop!r}")


def space_file(model, params_file=None):
    """``params_file`` when given, else the model's shipped ``properties/hyper/<model>.hyper``."""
    if params_file is not None:
        path = Path(params_file)
        if not path.is_file():
            raise HyperSearchError(f"params_file: no such file {path}")
        return path
    path = resources.hyper_space(model)
    if not path.is_file():
        raise HyperSearchError(
            f"{model} has no shipped search space (expected {path}); give one with --params_file=<file> in "
            "RecBole's .hyper format, e.g. a line 'learning_rate choice [0.0001,0.001,0.01]'"
        )
    return path


def read_space(params_file):
    """The search space of a ``.hyper`` file as ``{key: (kind, values)}``, in file order.

    ``values`` is the list of a ``choice`` and the floats ``[low, high]`` or ``[low, high, q]`` of a range.
    """
    space = {}
    for number, line in enumerate(Path(params_file).read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{params_file}, line {number}"
        parts = text.split(maxsplit=2)
        if len(parts) != 3:
            raise HyperSearchError(f"{where}: expected '<key> <kind> <values>', got {text!r}")
        key, kind, values = parts
        if kind not in SPACE_KINDS:
            raise HyperSearchError(f"{where}: {key}: unknown kind {kind!r}; allowed: {', '.join(SPACE_KINDS)}")
        if key in space:
            raise HyperSearchError(f"{where}: {key} appears twice")
        where = f"{where}: {key} {kind}"
        space[key] = (kind, _parse_choice(values, where) if kind == "choice" else _parse_range(kind, values, where))
    if not space:
        raise HyperSearchError(f"{params_file}: no parameters to search")
    return space


def _parse_choice(text, where):
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        values = None
    if not isinstance(values, list) or not values:
        raise HyperSearchError(f"{where}: expected a non-empty Python list such as [0.001,0.01], got {text!r}")
    return values


def _parse_range(kind, text, where):
    form = RANGE_FORMS[kind]
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != len(form.split(",")) or not numbers[0] < numbers[1] or (kind == "quniform" and numbers[2] <= 0):
        raise HyperSearchError(f"{where}: expected {form} with low < high (and q > 0), got {text!r}")
    return numbers


def _check_grid(space, params_file):
    ranges = [key for key, (kind, _) in space.items() if kind != "choice"]
    if ranges:
        raise HyperSearchError(
            f"algo exhaustive searches a grid, but {params_file} draws {', '.join(ranges)} from a range; "
            "make them choices, or use --algo=random or --algo=bayes"
        )


def check_space_keys(space, config, params_file):
    """Reject searched keys that no configuration layer of the model defines (a typo would change nothing), and
    searched keys that the command line or the config dict fix (they would override every trial's value)."""
    unknown = [key for key in space if key not in config]
    if unknown:
        raise HyperSearchError(
            f"{params_file}: {', '.join(unknown)}: not a config key of {config['model']} (set by none of RecBole's "
            "defaults, properties/overall.yaml, the model's yaml, the dataset's yaml or your config)"
        )
    fixed = [key for key in space if key in config.cmd_config_dict or key in config.variable_config_dict]
    if fixed:
        raise HyperSearchError(
            f"{', '.join(fixed)}: searched by {params_file} but also fixed on the command line or in the config "
            "dict, which would override every trial; drop one of the two"
        )


def check_space_values(space, config):
    """Check every point a trial may draw with the model's and the run's checks: every combination of the choices
    and of the ends of the ranges (a ``quniform`` range yields floats, refused for an int key; ``loguniform`` bounds
    are natural logarithms)."""
    keys = list(space)
    ends = {"choice": lambda values: values, "loguniform": lambda values: [math.exp(value) for value in values[:2]]}
    candidates = [ends.get(kind, lambda values: values[:2])(values) for kind, values in space.values()]
    for point in itertools.product(*candidates):
        check_values(config, dict(zip(keys, point)))


def _check_two_stage(config):
    """A two-stage model (DiffuASR) with ``augmented_data_path`` would reuse the first trial's augmented data."""
    augmented_data_path = config["augmented_data_path"]
    if is_two_stage(get_model(config["model"])) and augmented_data_path is not None:
        raise HyperSearchError(
            f"augmented_data_path: {config['model']} reuses the augmented data found there, so every trial would "
            "train on the first trial's data; leave it unset (each trial augments anew under checkpoint_dir), or "
            f"search the backbone on those data: --model={config['backbone']} --data_path={augmented_data_path}"
        )


def hyperopt_params_dict(space):
    """``space`` in the form of ``HyperTuning``'s ``params_dict``: ``{kind: {key: values}}``."""
    params_dict = {}
    for key, (kind, values) in space.items():
        params_dict.setdefault(kind, {})[key] = values
    return params_dict


def _objective(model, dataset, config_dict, trials):
    """HyperTuning's objective: one plugin run with the trial's parameters over ``config_dict``; each trial's
    parameters and results are appended to ``trials`` and logged."""

    def objective(params, config_file_list):
        result = run_recbole_diffusion(model, dataset, config_file_list, {**(config_dict or {}), **params})
        trials.append({"params": params, **{key: result[key] for key in TRIAL_RESULT_KEYS}})
        getLogger().info(
            set_color("trial", "green") + f" {len(trials)}: {params}, best valid score {result['best_valid_score']}"
        )
        return {"model": model, **result}

    return objective


def search_report(model, dataset, params_file, algo, config, trials):
    """The report of a finished search; the best trial has the best ``best_valid_score`` by ``valid_metric``."""
    bigger = config["valid_metric_bigger"]
    best = (max if bigger else min)(trials, key=lambda trial: trial["best_valid_score"])
    return {
        "model": model,
        "dataset": dataset,
        "params_file": str(params_file),
        "algo": algo,
        "valid_metric": config["valid_metric"],
        "valid_score_bigger": bigger,
        "best_params": best["params"],
        "best_valid_score": best["best_valid_score"],
        "best_valid_result": best["best_valid_result"],
        "best_test_result": best["test_result"],
        "trials": trials,
    }


def _default_output_file(model, dataset):
    return Path("results") / dataset / f"hyper-{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
