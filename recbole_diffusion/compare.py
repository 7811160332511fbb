"""Fair comparison of several models: the same split and evaluator for each, several seeds, paired significance.

:func:`compare` trains every model for every seed exactly as :func:`recbole_diffusion.run` does (early stopping on
the validation split, the best checkpoint tested) and keeps, from that test, per-user values of every top-K metric
(RecBole's own metric code on the ``rec.topk`` data its evaluator builds). Each (model, seed) *cell* is stored as
soon as it is done (:mod:`recbole_diffusion.cells`), so the same call again skips the cells already stored, a killed
run loses at most the cell in progress, and a cell interrupted mid-training continues from its last epoch. The
report is always assembled from the stored cells into ``<output_dir>/<dataset>/<models joined by '-'>/``:

* ``metrics.csv``: one row per model and seed, every test metric, the efficiency figures and ``config_files``
  (the config files that model read, shared ones first, space-separated);
* ``per_user/<model>_seed<seed>.npz``: ``user_id`` and one array per top-K metric (e.g. ``ndcg@10``), taken from
  the very test evaluation whose means are in ``metrics.csv`` (so stochastic samplers agree with the table);
* ``significance.csv``: each model against the best baseline, paired t-test and Wilcoxon signed-rank test over
  the test users (each user's value averaged over the seeds);
* ``chance.csv``: per seed, the expected value of every accuracy metric (hit, recall, ndcg, mrr, precision) under a
  uniformly random ranking of the same test users and candidate items (:func:`chance_metrics`);
* ``table.md``: mean ± std over seeds per model, the best value of each metric in bold, accuracy cells below the
  popularity model marked ``†`` and below chance ``‡``, a row with the chance values, the p-values on the
  validation metric, the norm ratio of embedding collapse (when a model has one), parameters, training seconds per
  epoch, inference users per second and peak memory; below it, one line per model with its own config files
  (``model_config_files``);
* ``accuracy_vs_<metric>.png``: the validation metric against each diversity metric of the run (ILD,
  CategoryCoverage, ItemCoverage, ...), one point per model with its seed-to-seed spread;
* ``inference_steps.csv`` and ``<valid_metric>_vs_inference_steps.png``: for every diffusion model with an
  ``inference_steps`` setting, the trained model tested again with each sampler of ``inference_step_grid`` (the full
  DDPM chain, DDIM with 50/20/10/5 steps by default): every test metric and the full-sort users per second.

Every comparison includes a popularity model, first in the list unless the user named it: the plugin's
``SequentialPop`` among sequential models, RecBole's ``Pop`` otherwise. A *baseline* is that popularity model or any
model that is not one of this plugin's models (RecBole's SASRec, GRU4Rec, ...); the best baseline is the one with
the highest mean test value of ``valid_metric``.

Beside the report, ``cells/`` holds the stored cells. A cell stored with a config that differs from the call's (see
:func:`recbole_diffusion.cells.config_snapshot`) stops the call with the keys that differ, unless ``force``
recomputes it. ``cells`` runs only some cells and writes no report; ``report_only`` trains nothing and assembles the
report from the stored cells: one comparison can be spread over several runs or machines sharing ``output_dir``.
"""

import fnmatch
import inspect
import re
import resource
import shutil
import sys
import time
from logging import getLogger
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator.base_metric import TopkMetric
from recbole.evaluator.register import metrics_dict, smaller_metrics
from recbole.utils import ModelType, init_seed
from scipy import stats

from recbole_diffusion.cells import (
    CELL_DIR_KEY,
    CellStore,
    checkpoint_in_cell,
    config_hash,
    config_snapshot,
    differing_keys,
)
from recbole_diffusion.collapse import target_norm_ratio
from recbole_diffusion.config import Config
from recbole_diffusion.data import create_dataset, data_preparation
from recbole_diffusion.preflight import check_config, check_dataset
from recbole_diffusion.quick_start import _count_parameters
from recbole_diffusion.trainer import stop_on_non_finite_values
from recbole_diffusion.two_stage import is_two_stage
from recbole_diffusion.utils import get_model, get_trainer, init_run_logger, is_plugin_model
from recbole_diffusion.validation import InputError, is_positive_int


class CompareInputError(InputError):
    """An argument of :func:`compare` is unusable; the message names it."""


STEP_GRID_KEY = "inference_step_grid"
DIVERSITY_METRICS = ("ild", "categorycoverage", "itemcoverage", "shannonentropy", "giniindex", "tailpercentage")
EFFICIENCY_COLUMNS = ("parameters", "train_seconds_per_epoch", "inference_users_per_second", "peak_memory_mb")
# How long each cell trained: epochs run, the epoch of the tested checkpoint (from 0), training hours (epochs only,
# validation excluded), and what it ran on.
TRAINING_COLUMNS = ("epochs_trained", "best_epoch", "train_hours", "hardware")
CONFIG_FILES_COLUMN = "config_files"
NORM_RATIO_COLUMN = "target_norm_ratio"
SEQUENTIAL_POPULARITY, GENERAL_POPULARITY = "SequentialPop", "Pop"
POPULARITY_MODELS = (SEQUENTIAL_POPULARITY, GENERAL_POPULARITY)
ACCURACY_METRICS = ("hit", "recall", "ndcg", "mrr", "precision")
BELOW_POPULARITY, BELOW_CHANCE = "†", "‡"
CHANCE_ROW = "random ranking (expected)"
PROC_CLEAR_REFS, PROC_STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")
REPORT_FILES = ("metrics.csv", "chance.csv", "significance.csv", "table.md", "inference_steps.csv")
REPORT_PLOTS = ("accuracy_vs_*.png", "*_vs_inference_steps.png")


def compare(
    models,
    dataset,
    seeds=(2020,),
    config_file_list=None,
    config_dict=None,
    output_dir="results",
    model_config_files=None,
    cells=None,
    report_only=False,
    force=False,
):
    """Train and test every model in ``models`` for every seed in ``seeds`` on ``dataset`` and write the report.

    Args:
        models (list of str): at least one model name, no repeats; plugin and RecBole models may be mixed as long
            as they read the same kind of data (e.g. all sequential). The popularity model (``SequentialPop`` or
            ``Pop``) is put first unless it is named here.
        dataset (str): dataset name.
        seeds (list of int): one training run per model and seed; the seed also drives the split where it is
            random, so every model of one seed sees the identical split.
        config_file_list (list of str, optional), config_dict (dict, optional): as for :func:`run`; applied to
            every model (``seed`` is set per run).
        output_dir (str or Path): the comparison's folder is ``<output_dir>/<dataset>/<models joined by '-'>/``
            (popularity model included): the report, and the stored cells under ``cells/``.
        model_config_files (dict, optional): model name -> list of yaml files read by that model only, e.g. its
            official hyperparameters for this dataset; they come after ``config_file_list`` (so they override it)
            and below ``config_dict`` and the command line. ``metrics.csv`` and ``table.md`` record them.
        cells (list of (str, int), optional): run only these (model, seed) cells, which must be of ``models`` and
            ``seeds``, and write no report.
        report_only (bool): train nothing; assemble the report from the stored cells, all of which must be there.
        force (bool): recompute the cells stored with a config other than this call's instead of refusing them.

    Returns:
        Path: the comparison's folder.
    """
    models = _checked_models(models)
    seeds = _checked_seeds(seeds)
    model_config_files = _checked_model_config_files(model_config_files, models)
    selected = _checked_cells(cells, models, seeds)
    if report_only and (cells is not None or force):
        raise CompareInputError(
            "report_only: assembles the report from the stored cells; it takes neither cells nor force"
        )
    files_of = {name: [*(config_file_list or []), *model_config_files.get(name, [])] for name in models}

    def run_config(name, seed, **overrides):
        run_config_dict = {**(config_dict or {}), "seed": seed, **overrides}
        config = Config(model=name, dataset=dataset, config_file_list=files_of[name], config_dict=run_config_dict)
        embedding_ild = "ild" in map(str.lower, config["metrics"]) and not config["diversity_category_field"]
        if name in POPULARITY_MODELS and embedding_ild:  # ILD of item embeddings: a popularity model has none
            return run_config(name, seed, metrics=[metric for metric in config["metrics"] if metric.lower() != "ild"])
        return config

    runs = [(seed, name, run_config(name, seed)) for seed in seeds for name in models]
    for _, _, config in runs:  # every setting checked before any data is loaded
        check_config(config)
        _check_step_grid(config[STEP_GRID_KEY])
    valid_metric = runs[-1][2]["valid_metric"].lower()
    report_dir = Path(output_dir) / dataset / "-".join(models)
    store = CellStore(report_dir / "cells")
    chosen = [(seed, name, config) for seed, name, config in runs if selected is None or (name, seed) in selected]
    snapshots = {(name, seed): config_snapshot(config) for seed, name, config in chosen}
    changed = _changed_cells(store, snapshots)
    if changed and not force:
        listed = ", ".join(f"{name}:{seed} ({', '.join(keys)})" for (name, seed), keys in changed.items())
        raise CompareInputError(
            f"cells stored with another config: {listed}; recompute them with force=True (--force) or use another "
            "output_dir"
        )
    if report_only:
        missing = [f"{name}:{seed}" for seed, name, _ in runs if store.record(name, seed) is None]
        if missing:
            raise CompareInputError(
                f"report_only: {len(missing)} of {len(runs)} cells are not stored yet: {', '.join(missing)}; "
                "nothing written"
            )
    else:
        for seed, name, config in chosen:
            if (name, seed) in changed:
                store.remove(name, seed)
            elif store.record(name, seed) is not None:
                getLogger().info(f"cell {name}:{seed} is stored already: skipped")
                continue
            _run_cell(store, name, seed, config, snapshots[(name, seed)], files_of[name])
    if selected is not None:
        return report_dir
    write_report(report_dir, store, models, seeds, valid_metric, model_config_files)
    getLogger().info(f"comparison report written to {report_dir}")
    return report_dir


def _run_cell(store, name, seed, config, snapshot, config_files):
    """Train and test one cell and store it with its config ``snapshot`` and the model's ``config_files``."""
    config[CELL_DIR_KEY] = str(store.cell_dir(name, seed))
    row, per_user, sampler_rows, chance = _train_and_score(config)
    record = {
        "model": name,
        "seed": seed,
        "config_hash": config_hash(snapshot),
        "config": snapshot,
        "row": {"model": name, "seed": seed, **row, CONFIG_FILES_COLUMN: " ".join(map(str, config_files))},
        "inference_steps": [{"model": name, "seed": seed, **sampler_row} for sampler_row in sampler_rows],
        "chance": {"seed": seed, **chance},
    }
    store.store(name, seed, record, per_user)
    getLogger().info(f"cell {name}:{seed} stored in {store.cell_dir(name, seed)}")


def write_report(report_dir, store, models, seeds, valid_metric, model_config_files):
    """Write the report of every (model, seed) cell of ``models`` x ``seeds`` into ``report_dir`` from the cells
    stored in ``store`` (a :class:`recbole_diffusion.cells.CellStore`), replacing the files of an earlier report.

    The report depends on the stored cells only: written again from the same cells, it is the same, byte for byte.
    """
    _remove_report_files(report_dir)
    (report_dir / "per_user").mkdir(parents=True)
    records = [store.record(name, seed) for seed in seeds for name in models]
    for record in records:
        target = report_dir / "per_user" / f"{record['model']}_seed{record['seed']}.npz"
        shutil.copyfile(store.per_user_file(record["model"], record["seed"]), target)
    metrics = pd.DataFrame([record["row"] for record in records])
    last = [
        column
        for column in (NORM_RATIO_COLUMN, *EFFICIENCY_COLUMNS, *TRAINING_COLUMNS, CONFIG_FILES_COLUMN)
        if column in metrics
    ]
    metrics = metrics[[column for column in metrics.columns if column not in last] + last]  # after every metric
    metrics.to_csv(report_dir / "metrics.csv", index=False)
    chance_rows = {}
    for record in records:  # every model of one seed has the same test users
        chance_rows.setdefault(record["seed"], record["chance"])
    chance = pd.DataFrame(chance_rows.values())
    chance.to_csv(report_dir / "chance.csv", index=False)
    per_user_means = {model: _per_user_mean(report_dir, model, seeds) for model in models}
    baseline = best_baseline(metrics, valid_metric, [model for model in models if is_baseline(model)])
    significance = significance_table(per_user_means, baseline)
    significance.to_csv(report_dir / "significance.csv", index=False)
    popularity = next(model for model in models if model in POPULARITY_MODELS)
    chance_means = chance.drop(columns=["seed", "n_users"]).mean().to_dict()
    table = markdown_table(
        metrics, significance, valid_metric, baseline, model_config_files, popularity=popularity, chance=chance_means
    )
    (report_dir / "table.md").write_text(table)
    plot_accuracy_vs_diversity(metrics, valid_metric, report_dir)
    step_rows = [sampler_row for record in records for sampler_row in record["inference_steps"]]
    if step_rows:
        inference_steps = pd.DataFrame(step_rows)
        inference_steps.to_csv(report_dir / "inference_steps.csv", index=False)
        plot_metric_vs_inference_steps(inference_steps, valid_metric, report_dir)


def _remove_report_files(report_dir):
    """Delete what an earlier :func:`write_report` wrote into ``report_dir`` (and nothing else)."""
    shutil.rmtree(report_dir / "per_user", ignore_errors=True)
    if report_dir.is_dir():
        for path in report_dir.iterdir():
            if path.name in REPORT_FILES or any(fnmatch.fnmatch(path.name, plot) for plot in REPORT_PLOTS):
                path.unlink()


def _changed_cells(store, snapshots):
    """``{(model, seed): keys that differ}`` for the cells of ``snapshots`` stored with another config."""
    changed = {}
    for (name, seed), snapshot in snapshots.items():
        record = store.record(name, seed)
        if record is not None and record["config_hash"] != config_hash(snapshot):
            changed[(name, seed)] = differing_keys(record["config"], snapshot)
    return changed


def _checked_models(models):
    if isinstance(models, str):
        models = [name.strip() for name in models.split(",")]
    models = list(models)
    if not models or not all(isinstance(name, str) and name for name in models):
        raise CompareInputError(f"models: expected one or more model names, got {models!r}")
    repeated = sorted({name for name in models if models.count(name) > 1})
    if repeated:
        raise CompareInputError(f"models: each model may appear once, repeated: {', '.join(repeated)}")
    for name in models:
        if is_two_stage(get_model(name)):
            raise CompareInputError(
                f"models: {name} is a two-stage model, which compare does not support; run it alone"
            )
    sequential = [name for name in models if get_model(name).type == ModelType.SEQUENTIAL]
    if sequential and len(sequential) < len(models):
        others = [name for name in models if name not in sequential]
        message = (
            f"models: sequential ({', '.join(sequential)}) and non-sequential ({', '.join(others)}) models read "
            "different data and splits; compare them in separate runs"
        )
        if GENERAL_POPULARITY in others:
            message += f"; the popularity model of a sequential comparison is {SEQUENTIAL_POPULARITY}, added by itself"
        raise CompareInputError(message)
    popularity = SEQUENTIAL_POPULARITY if sequential else GENERAL_POPULARITY
    return models if popularity in models else [popularity, *models]


def is_baseline(model_name):
    """Whether ``model_name`` is a baseline of a comparison: a popularity model or any non-plugin model."""
    return model_name in POPULARITY_MODELS or not is_plugin_model(get_model(model_name))


def _checked_seeds(seeds):
    seeds = list(seeds)
    if not seeds or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise CompareInputError(f"seeds: expected one or more integer seeds, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise CompareInputError(f"seeds: each seed may appear once, got {seeds!r}")
    return seeds


def _checked_cells(cells, models, seeds):
    """``cells`` as a set of (model, seed) pairs after checking each against ``models`` and ``seeds``; ``None``
    (every cell) stays ``None``."""
    if cells is None:
        return None
    cells = list(cells)
    if not cells:
        raise CompareInputError("cells: expected one or more (model, seed) cells, got none")
    checked = set()
    for cell in cells:
        if not isinstance(cell, (tuple, list)) or len(cell) != 2:
            raise CompareInputError(f"cells: expected (model, seed) pairs, got {cell!r}")
        name, seed = cell
        if name not in models:
            raise CompareInputError(
                f"cells: {name}:{seed}: {name} is not one of the compared models ({', '.join(models)})"
            )
        if seed not in seeds or isinstance(seed, bool):
            raise CompareInputError(
                f"cells: {name}:{seed}: {seed!r} is not one of the seeds ({', '.join(map(str, seeds))})"
            )
        if (name, seed) in checked:
            raise CompareInputError(f"cells: {name}:{seed} is named twice")
        checked.add((name, seed))
    return checked


def _checked_model_config_files(model_config_files, models):
    """``model_config_files`` as a dict of lists of str, after checking its models and files."""
    model_config_files = model_config_files or {}
    if not isinstance(model_config_files, dict):
        raise CompareInputError(f"model_config_files: expected a dict model name -> files, got {model_config_files!r}")
    checked = {}
    for name, files in model_config_files.items():
        if name not in models:
            raise CompareInputError(
                f"model_config_files: {name!r} is not one of the compared models ({', '.join(models)})"
            )
        if isinstance(files, (str, Path)) or not files:
            raise CompareInputError(f"model_config_files: {name}: expected a list of yaml files, got {files!r}")
        missing = [str(path) for path in files if not Path(path).is_file()]
        if missing:
            raise CompareInputError(f"model_config_files: {name}: no such file: {', '.join(missing)}")
        checked[name] = [str(path) for path in files]
    return checked


def _check_step_grid(grid):
    if not isinstance(grid, (list, tuple)) or not all(
        steps is None or is_positive_int(steps) for steps in grid
    ):
        raise CompareInputError(
            f"{STEP_GRID_KEY}: expected a list of positive step counts and ~ (the full DDPM chain), got {grid!r}"
        )


def _train_and_score(config):
    """Train, test the best checkpoint, and keep the per-user values and the speed of that very test.

    The checkpoints go to the cell's folder, ``config["cell_dir"]``, and training continues from the epoch
    checkpoint found there (:func:`recbole_diffusion.cells.checkpoint_in_cell`).

    Returns the metrics row (with the best checkpoint's ``target_norm_ratio``, NaN for a model without a monitored
    target table), the per-user arrays, one row per sampler of :func:`_test_inference_steps` and the chance values
    of the test split (:func:`chance_metrics`).
    """
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config)
    dataset = create_dataset(config)
    check_dataset(config, dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if not isinstance(test_data, FullSortEvalDataLoader):
        raise CompareInputError(
            f"eval_args: compare needs full-sort evaluation of the test split (mode 'full'), got "
            f"{type(test_data).__name__} for {config['model']}"
        )
    cuda_device = config["device"] if config["device"].type == "cuda" else None
    _reset_peak_memory(cuda_device)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    stop_on_non_finite_values(trainer)
    epoch_seconds = _time_epochs(trainer)
    cell_dir = Path(config[CELL_DIR_KEY])
    checkpoint_in_cell(trainer, train_data, cell_dir, config_hash(config_snapshot(config)), epoch_seconds)
    trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    test_record = _record_evaluation(trainer, cuda_device)
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=config["show_progress"])
    norm_ratio = target_norm_ratio(trainer.model, train_data._dataset)
    user_ids = torch.cat([batch[0][config["USER_ID_FIELD"]] for batch in test_data]).numpy()
    per_user = {"user_id": user_ids, **per_user_topk_metrics(test_record["data"], config)}
    row = {
        **test_result,
        NORM_RATIO_COLUMN: np.nan if norm_ratio is None else norm_ratio,
        "parameters": _count_parameters(model),
        "train_seconds_per_epoch": float(np.mean(epoch_seconds)),
        "inference_users_per_second": test_record["users"] / test_record["seconds"],
        "peak_memory_mb": _peak_memory_mb(cuda_device),
        "epochs_trained": len(epoch_seconds),
        "best_epoch": best_epoch(trainer, len(epoch_seconds), config["eval_step"]),
        "train_hours": float(np.sum(epoch_seconds)) / 3600,
        "hardware": hardware(config["device"]),
    }
    sampler_rows = _test_inference_steps(trainer, test_data, test_record, config)
    return row, per_user, sampler_rows, chance_metrics(test_data, config)


def best_epoch(trainer, epochs_trained, eval_step):
    """The epoch (from 0) of the checkpoint ``trainer`` kept: the last validated epoch, less the validations without
    gain since the best one (RecBole validates after every ``eval_step``-th epoch)."""
    last_validated = epochs_trained // eval_step * eval_step - 1
    if last_validated < 0:  # never validated: the last epoch is kept
        return epochs_trained - 1
    return last_validated - trainer.cur_step * eval_step


def hardware(device):
    """What trained a cell: the GPU's name, or the CPU with torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'' if threads == 1 else 's'}"


def inference_step_grid(model, grid):
    """The samplers of ``grid`` that ``model`` can run: ``None`` (its full DDPM chain) and DDIM step counts
    below its number of diffusion steps, in the grid's order; empty for a model without ``inference_steps``.
    """
    if not hasattr(model, "inference_steps") or not hasattr(model, "diffusion"):
        return []
    return [steps for steps in grid if steps is None or steps < model.diffusion.num_steps]


def _test_inference_steps(trainer, test_data, test_record, config):
    """Test the trained model again with every sampler of the step grid (each run re-seeded); one row each."""
    model = trainer.model
    grid = inference_step_grid(model, config[STEP_GRID_KEY])
    if not grid:
        return []
    trained_steps = model.inference_steps
    rows = []
    for steps in grid:
        model.inference_steps = steps
        test_record.update(seconds=0.0, users=0)
        init_seed(config["seed"], config["reproducibility"])
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
        rows.append(
            {
                "sampler": "DDPM" if steps is None else "DDIM",
                "steps": model.diffusion.num_steps if steps is None else steps,
                **result,
                "inference_users_per_second": test_record["users"] / test_record["seconds"],
            }
        )
    model.inference_steps = trained_steps
    return rows


def _time_epochs(trainer):
    """Record the wall time of each training epoch of ``trainer`` in the returned list."""
    seconds = []
    train_epoch = trainer._train_epoch

    def timed_train_epoch(*args, **kwargs):
        start = time.perf_counter()
        result = train_epoch(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return result

    trainer._train_epoch = timed_train_epoch
    return seconds


def _record_evaluation(trainer, cuda_device):
    """From now on, keep the data of ``trainer``'s evaluations and the time and users of its full-sort scoring.

    The returned dict holds ``data`` (the collector's data of the last evaluation, RecBole's ``rec.topk``
    included), ``seconds`` spent in full-sort scoring (masking included) and ``users`` scored.
    """
    record = {"data": None, "seconds": 0.0, "users": 0}
    evaluate, full_sort_batch_eval = trainer.evaluator.evaluate, trainer._full_sort_batch_eval

    def keeping_evaluate(data):
        record["data"] = data
        return evaluate(data)

    def timed_full_sort_batch_eval(batched_data):
        start = time.perf_counter()
        interaction, scores, positive_u, positive_i = full_sort_batch_eval(batched_data)
        if cuda_device is not None:
            torch.cuda.synchronize(cuda_device)
        record["seconds"] += time.perf_counter() - start
        record["users"] += len(scores)
        return interaction, scores, positive_u, positive_i

    trainer.evaluator.evaluate = keeping_evaluate
    trainer._full_sort_batch_eval = timed_full_sort_batch_eval
    return record


def _reset_peak_memory(cuda_device):
    """Start a new peak: of the GPU's allocations, or on Linux of the process's resident set (``clear_refs``)."""
    if cuda_device is not None:
        torch.cuda.reset_peak_memory_stats(cuda_device)
    elif PROC_CLEAR_REFS.exists():
        PROC_CLEAR_REFS.write_text("5")  # resets VmHWM, the peak resident set, to the current resident set


def _peak_memory_mb(cuda_device):
    """Peak GPU memory allocated since the last reset; on the CPU the peak resident set of the process since the
    last reset (Linux), or since the process started (elsewhere)."""
    if cuda_device is not None:
        return torch.cuda.max_memory_allocated(cuda_device) / 2**20
    if PROC_STATUS.exists():
        high_water_mark = re.search(r"^VmHWM:\s+(\d+) kB", PROC_STATUS.read_text(), re.MULTILINE)
        return int(high_water_mark.group(1)) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def per_user_topk_metrics(data, config):
    """Per-user values of every top-K metric in ``config['metrics']``, e.g. ``{"ndcg@10": array}``.

    ``data`` is the collector's data of one evaluation; RecBole's own metric classes compute the per-user values
    from its ``rec.topk``, so the mean of each array is the metric RecBole reported for that evaluation.
    """
    per_user = {}
    for name in config["metrics"]:
        metric_class = metrics_dict[name.lower()]
        if not issubclass(metric_class, TopkMetric):
            continue
        metric = metric_class(config)
        pos_index, pos_len = metric.used_info(data)
        arguments = (pos_index, pos_len)[: len(inspect.signature(metric.metric_info).parameters)]
        values = metric.metric_info(*arguments)
        for k in config["topk"]:
            per_user[f"{name.lower()}@{k}"] = values[:, k - 1]
    return per_user


def chance_metrics(test_data, config):
    """The expected value of every accuracy top-K metric of ``config`` (hit, recall, ndcg, mrr, precision) under a
    uniformly random ranking of the candidates of ``test_data`` (a full-sort loader), averaged over its test users;
    ``n_users`` is their number. See :func:`chance_inputs` and :func:`expected_random_metric`.
    """
    positives, candidates = chance_inputs(test_data)
    values = {"n_users": len(positives)}
    for name in config["metrics"]:
        if name.lower() in ACCURACY_METRICS:
            for k in config["topk"]:
                values[f"{name.lower()}@{k}"] = float(expected_random_metric(name, k, positives, candidates).mean())
    return values


def chance_inputs(test_data):
    """Per test user (row) of the full-sort loader ``test_data``: the number of test items T and of candidates N.

    Candidates are all items but the padding item and what the evaluator masks. RecBole's sequential full sort has
    one test item per row and masks nothing else: T = 1, N = item_num - 1. The general one masks the user's
    ``uid2history_item`` (for the test phase, the training and validation items that are not test items).
    """
    item_num = test_data._dataset.item_num
    if test_data.is_sequential:
        rows = len(test_data._dataset)
        return np.ones(rows, dtype=np.int64), np.full(rows, item_num - 1, dtype=np.int64)
    users = test_data.uid_list.tolist()
    positives = np.array([len(test_data.uid2positive_item[user]) for user in users])
    masked = np.array([len(test_data.uid2history_item[user]) for user in users])
    return positives, item_num - 1 - masked


def expected_random_metric(metric, k, positives, candidates):
    """The exact expectation of ``metric@k`` as RecBole computes it (Hit, Recall, NDCG, MRR, Precision) when
    ``candidates`` items, ``positives`` of them relevant, are ranked uniformly at random; one value per user.

    With P(no relevant item in the top r) = prod_{i<r} (N-T-i)/(N-i): Hit = 1 - P(none in the top k); MRR = sum over
    r <= k of P(first relevant at rank r) / r; Recall = min(k, N)/N; Precision = T min(k, N)/(N k); NDCG = (T/N)
    sum_{r <= min(k, N)} 1/log2(r+1) over RecBole's ideal DCG, sum_{r <= min(T, k)} 1/log2(r+1).
    """
    t = np.asarray(positives, dtype=float)
    n = np.asarray(candidates, dtype=float)
    before = np.arange(k)  # i = r - 1 items ranked above rank r
    remaining_irrelevant = n[:, None] - t[:, None] - before
    factors = np.where(remaining_irrelevant > 0, remaining_irrelevant / np.maximum(n[:, None] - before, 1), 0.0)
    none_in_top = np.cumprod(factors, axis=1)  # column r - 1: P(no relevant item in the top r)
    shown = np.minimum(k, n)  # ranks that hold a candidate; masked items fill the rest
    metric = metric.lower()
    if metric == "hit":
        return 1 - none_in_top[:, -1]
    if metric == "recall":
        return shown / n
    if metric == "precision":
        return t * shown / (n * k)
    if metric == "mrr":
        first_at = np.hstack([np.ones((len(t), 1)), none_in_top[:, :-1]]) - none_in_top
        return (first_at / (before + 1)).sum(axis=1)
    if metric == "ndcg":
        discounted = np.concatenate([[0.0], np.cumsum(1 / np.log2(before + 2))])  # [j]: sum of the first j
        return t / n * discounted[shown.astype(int)] / discounted[np.minimum(t, k).astype(int)]
    raise ValueError(f"expected_random_metric: no chance level for {metric!r}; known: {', '.join(ACCURACY_METRICS)}")


def _per_user_mean(report_dir, model, seeds):
    """Per-user values of ``model`` averaged over the seeds, indexed by user id (users tested in every seed)."""
    frames = []
    for seed in seeds:
        with np.load(report_dir / "per_user" / f"{model}_seed{seed}.npz") as arrays:
            frames.append(pd.DataFrame({key: arrays[key] for key in arrays.files}).set_index("user_id"))
    return pd.concat(frames).groupby(level=0).mean().loc[sorted(set.intersection(*(set(f.index) for f in frames)))]


def best_baseline(metrics, valid_metric, baselines):
    """The baseline with the highest mean test ``valid_metric`` (lowest for metrics where smaller is better)."""
    if not baselines:
        return None
    means = metrics[metrics["model"].isin(baselines)].groupby("model")[valid_metric].mean()
    return means.idxmin() if _smaller_is_better(valid_metric) else means.idxmax()


def _smaller_is_better(metric):
    return metric.split("@")[0] in smaller_metrics


def paired_tests(values, baseline_values):
    """Paired t-test and Wilcoxon signed-rank test of two per-user arrays (same users, same order).

    Returns (t statistic, t-test p, Wilcoxon statistic, Wilcoxon p); when every difference is zero the tests are
    undefined and the p-values are 1.0 (the two models are indistinguishable on these users).
    """
    values, baseline_values = np.asarray(values, dtype=float), np.asarray(baseline_values, dtype=float)
    if values.shape != baseline_values.shape:
        raise ValueError(f"paired_tests: {values.shape} values against {baseline_values.shape} baseline values")
    if np.all(values == baseline_values):
        return 0.0, 1.0, 0.0, 1.0
    t_test = stats.ttest_rel(values, baseline_values)
    wilcoxon = stats.wilcoxon(values, baseline_values)
    return float(t_test.statistic), float(t_test.pvalue), float(wilcoxon.statistic), float(wilcoxon.pvalue)


def significance_table(per_user_means, baseline):
    """One row per (model, metric) for every model other than ``baseline``, paired over their common users."""
    columns = [
        "model",
        "baseline",
        "metric",
        "n_users",
        "t_statistic",
        "t_pvalue",
        "wilcoxon_statistic",
        "wilcoxon_pvalue",
    ]
    rows = []
    if baseline is not None:
        reference = per_user_means[baseline]
        for model, values in per_user_means.items():
            if model == baseline:
                continue
            users = values.index.intersection(reference.index)
            for metric in values.columns:
                tests = paired_tests(values.loc[users, metric], reference.loc[users, metric])
                rows.append([model, baseline, metric, len(users), *tests])
    return pd.DataFrame(rows, columns=columns)


def markdown_table(
    metrics, significance, valid_metric, baseline, model_config_files=None, popularity=None, chance=None
):
    """Mean ± std over seeds per model, best in bold, p-values on ``valid_metric`` against ``baseline``; below the
    note, one line per model of ``model_config_files`` (model -> its own config files).

    Accuracy cells (hit, recall, ndcg, mrr, precision) whose mean is below that of the ``popularity`` model are
    marked ``†``, those below ``chance`` (metric column -> expected value of a random ranking, shown in a last row)
    ``‡``; the popularity model's own row is only compared with chance. The column ``target_norm_ratio`` is not a
    metric: it is shown as "norm ratio" (mean over seeds) when any model has a value.
    """
    other_columns = ("model", "seed", CONFIG_FILES_COLUMN, NORM_RATIO_COLUMN, *EFFICIENCY_COLUMNS, *TRAINING_COLUMNS)
    metric_columns = [column for column in metrics.columns if column not in other_columns]
    grouped = metrics.groupby("model", sort=False)
    means, stds = grouped[metric_columns].mean(), grouped[metric_columns].std(ddof=0)
    best = {
        column: means[column].min() if _smaller_is_better(column) else means[column].max() for column in metric_columns
    }
    floors = {column: {} for column in metric_columns if column.split("@")[0] in ACCURACY_METRICS}
    for column, floor in floors.items():
        if popularity in means.index:
            floor[BELOW_POPULARITY] = means.loc[popularity, column]
        if chance and column in chance:
            floor[BELOW_CHANCE] = chance[column]
    norm_ratios = grouped[NORM_RATIO_COLUMN].mean() if NORM_RATIO_COLUMN in metrics else pd.Series(dtype=float)
    show_norm_ratio = bool(norm_ratios.notna().any())
    on_valid_metric = significance[significance["metric"] == valid_metric].set_index("model")
    header = [
        "model",
        "seeds",
        *metric_columns,
        f"t-test p ({valid_metric})",
        f"Wilcoxon p ({valid_metric})",
        *(["norm ratio"] if show_norm_ratio else []),
        "parameters",
        "epochs (best)",
        "train h",
        "train s/epoch",
        "inference users/s",
        "peak memory MB",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, group in grouped:
        cells = [model + (" (best baseline)" if model == baseline else ""), str(len(group))]
        for column in metric_columns:
            mean = means.loc[model, column]
            if pd.isna(mean):  # not measured for this model (embedding ILD of a popularity model)
                cells.append("—")
                continue
            text = f"{mean:.4f} ± {stds.loc[model, column]:.4f}"
            text = f"**{text}**" if mean == best[column] else text
            marks = "".join(
                mark
                for mark, floor in floors.get(column, {}).items()
                if mean < floor and not (mark == BELOW_POPULARITY and model == popularity)
            )
            cells.append(f"{text} {marks}" if marks else text)
        if model in on_valid_metric.index:
            cells += [
                f"{on_valid_metric.loc[model, 't_pvalue']:.3g}",
                f"{on_valid_metric.loc[model, 'wilcoxon_pvalue']:.3g}",
            ]
        else:
            cells += ["—", "—"]
        if show_norm_ratio:
            cells.append("—" if pd.isna(norm_ratios[model]) else f"{norm_ratios[model]:.3f}")
        cells += [
            f"{int(group['parameters'].iloc[0])}",
            *_training_cells(group),
            f"{group['train_seconds_per_epoch'].mean():.3f}",
            f"{group['inference_users_per_second'].mean():.0f}",
            f"{group['peak_memory_mb'].max():.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if chance:
        chance_cells = [f"{chance[column]:.4f}" if column in chance else "—" for column in metric_columns]
        other_cells = ["—"] * (len(header) - 2 - len(metric_columns))
        lines.append("| " + " | ".join([CHANCE_ROW, "—", *chance_cells, *other_cells]) + " |")
    note = (
        f"Mean ± std over seeds. p-values: paired tests over test users against the best baseline ({baseline})."
        if baseline is not None
        else "No baseline (popularity or non-plugin model) in this run, so no significance tests."
    )
    if popularity in means.index:
        note += f" {BELOW_POPULARITY}: mean below the popularity model's ({popularity}) in that accuracy metric."
    if chance:
        note += (
            f" {BELOW_CHANCE}: mean below chance, the expected value of a uniformly random ranking under the same "
            f"evaluator (row \"{CHANCE_ROW}\": exact, per test user from its number of test items and of candidate "
            "items, averaged over the users and the seeds; chance.csv)."
        )
    if show_norm_ratio:
        note += (
            " norm ratio: mean item-embedding norm of the most popular quarter of training targets over that of the "
            "least popular quarter, in the tested (best validation) checkpoint (far below 1: embedding collapse; "
            "— for models without a monitored target table)."
        )
    if set(TRAINING_COLUMNS) <= set(metrics.columns):
        note += (
            " epochs (best): epochs trained and the epoch (from 0) of the tested checkpoint, means over seeds; train"
            " h: hours of training epochs per seed (validation excluded), on "
            + "; ".join(f"{name}: {', '.join(group['model'].unique())}" for name, group in metrics.groupby("hardware"))
            + "."
        )
    if model_config_files:
        own_files = "\n".join(f"- {model}: {' '.join(files)}" for model, files in model_config_files.items())
        note += f"\n\nSettings differ per model; own config files, read after the shared ones:\n\n{own_files}"
    return "\n".join(lines) + "\n\n" + note + "\n"


def _training_cells(group):
    """The "epochs (best)" and "train h" cells of one model's rows ("—" for cells stored without them)."""
    if not set(TRAINING_COLUMNS) <= set(group.columns) or group["epochs_trained"].isna().any():
        return ["—", "—"]
    return [
        f"{group['epochs_trained'].mean():.0f} ({group['best_epoch'].mean():.0f})",
        f"{group['train_hours'].mean():.3f}",
    ]


def plot_accuracy_vs_diversity(metrics, accuracy_metric, report_dir):
    """Write ``accuracy_vs_<metric>.png`` for each diversity metric in ``metrics``; return the files written.

    One point per model at its mean over seeds, error bars one standard deviation; none when the run measured no
    diversity metric.
    """
    diversity_columns = [column for column in metrics.columns if column.split("@")[0] in DIVERSITY_METRICS]
    grouped = metrics.groupby("model", sort=False)
    means, stds = grouped.mean(numeric_only=True), grouped.std(ddof=0, numeric_only=True)
    written = []
    for column in diversity_columns:
        figure = Figure(figsize=(6.5, 4), layout="constrained")
        axes = figure.add_subplot()
        for model in means.index:
            axes.errorbar(
                means.loc[model, column],
                means.loc[model, accuracy_metric],
                xerr=stds.loc[model, column],
                yerr=stds.loc[model, accuracy_metric],
                fmt="o",
                capsize=3,
                label=model,
            )
        axes.set_xlabel(column)
        axes.set_ylabel(accuracy_metric)
        axes.set_title(f"{accuracy_metric} vs {column} ({_seed_count(grouped.size().max())})")
        figure.legend(loc="outside right upper", fontsize="small")
        path = Path(report_dir) / f"accuracy_vs_{column.replace('@', '_at_')}.png"
        figure.savefig(path, dpi=120)
        written.append(path)
    return written


def plot_metric_vs_inference_steps(inference_steps, metric, report_dir):
    """Write ``<metric>_vs_inference_steps.png``: ``metric`` and full-sort users per second against the number of
    sampling steps, one line per model (DDIM points joined, the DDPM chain a square), mean over seeds with error
    bars of one standard deviation. Returns the file written.
    """
    figure = Figure(figsize=(11, 4), layout="constrained")
    metric_axes, speed_axes = figure.subplots(1, 2)
    for model, runs in inference_steps.groupby("model", sort=False):
        grouped = runs.groupby(["sampler", "steps"])
        means, stds = grouped.mean(numeric_only=True), grouped.std(ddof=0, numeric_only=True)
        for axes, column in ((metric_axes, metric), (speed_axes, "inference_users_per_second")):
            color = None
            if "DDIM" in means.index.get_level_values("sampler"):
                ddim_steps = means.loc["DDIM"].index
                line = axes.errorbar(
                    ddim_steps, means.loc["DDIM", column], yerr=stds.loc["DDIM", column], fmt="o-", capsize=3,
                    label=f"{model} DDIM",
                )
                color = line.lines[0].get_color()
            if "DDPM" in means.index.get_level_values("sampler"):
                axes.errorbar(
                    means.loc["DDPM"].index, means.loc["DDPM", column], yerr=stds.loc["DDPM", column], fmt="s",
                    capsize=3, markersize=8, color=color, label=f"{model} DDPM",
                )
    seeds = inference_steps.groupby("model")["seed"].nunique().max()
    for axes, label in ((metric_axes, metric), (speed_axes, "full-sort users / s")):
        axes.set_xscale("log")
        axes.set_xticks(sorted(inference_steps["steps"].unique()))
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("sampling steps")
        axes.set_ylabel(label)
    figure.legend(*metric_axes.get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    metric_axes.set_title(f"{metric} vs sampling steps ({_seed_count(seeds)})")
    speed_axes.set_yscale("log")
    speed_axes.set_title("inference speed vs sampling steps")
    path = Path(report_dir) / f"{metric.replace('@', '_at_')}_vs_inference_steps.png"
    figure.savefig(path, dpi=120)
    return path


def _seed_count(count):
    return f"{count} seed" if count == 1 else f"{count} seeds"
