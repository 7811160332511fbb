"""Running a comparison: :func:`compare` checks its arguments and every cell's config, trains and tests the cells not
stored yet (:func:`score_cell`, through the quick start's one train-and-test flow), stores each as soon as it is
done and writes the report from the stored cells."""

from logging import getLogger
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import init_seed

from recbole_diffusion.cells import (
    BEST_CHECKPOINT,
    CELL_DIR_KEY,
    EPOCH_CHECKPOINT,
    CellStore,
    config_hash,
    config_snapshot,
    differing_keys,
)
from recbole_diffusion.collapse import target_norm_ratio
from recbole_diffusion.compare.inputs import (
    POPULARITY_MODELS,
    STEP_GRID_KEY,
    CompareInputError,
    check_step_grid,
    checked_cells,
    checked_model_config_files,
    checked_models,
    checked_seeds,
)
from recbole_diffusion.compare.report import CONFIG_FILES_COLUMN, NORM_RATIO_COLUMN, write_report
from recbole_diffusion.compare.statistics import chance_metrics, per_user_topk_metrics
from recbole_diffusion.config import Config
from recbole_diffusion.data import create_dataset, data_preparation
from recbole_diffusion.model.sampling import ReverseChainSampling
from recbole_diffusion.preflight import check_config, check_dataset
from recbole_diffusion.quick_start import count_parameters, train_and_test
from recbole_diffusion.run_trainer import best_epoch, hardware, peak_memory_mb, reset_peak_memory
from recbole_diffusion.utils import get_model, init_run_logger


class CellScores(NamedTuple):
    """What :func:`score_cell` measures of one cell: its ``metrics.csv`` row (without model, seed and config files),
    the per-user arrays of its test, one row per sampler of the step grid, and the chance levels of its test split."""

    row: dict
    per_user: dict
    sampler_rows: list
    chance: dict


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
    models = checked_models(models)
    seeds = checked_seeds(seeds)
    model_config_files = checked_model_config_files(model_config_files, models)
    selected = checked_cells(cells, models, seeds)
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
        check_step_grid(config[STEP_GRID_KEY])
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
    row, per_user, sampler_rows, chance = score_cell(config)
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


def _changed_cells(store, snapshots):
    """``{(model, seed): keys that differ}`` for the cells of ``snapshots`` stored with another config."""
    changed = {}
    for (name, seed), snapshot in snapshots.items():
        record = store.record(name, seed)
        if record is not None and record["config_hash"] != config_hash(snapshot):
            changed[(name, seed)] = differing_keys(record["config"], snapshot)
    return changed


def score_cell(config):
    """Train, test the best checkpoint, and keep the per-user values and the speed of that very test.

    The checkpoints go to the cell's folder, ``config["cell_dir"]`` (``best.pth``, ``last_epoch.pth``), and training
    continues from the epoch checkpoint found there when it belongs to this config.

    Returns:
        CellScores: the metrics row (with the best checkpoint's ``target_norm_ratio``, NaN for a model without a
        monitored target table, and the efficiency and training columns), the per-user arrays, one row per sampler
        of :func:`sweep_inference_steps` and the chance values of the test split (:func:`chance_metrics`).
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
    reset_peak_memory(config["device"])
    cell_dir = Path(config[CELL_DIR_KEY])
    cell_dir.mkdir(parents=True, exist_ok=True)
    model_class = get_model(config["model"])
    checkpoints = (cell_dir / BEST_CHECKPOINT, cell_dir / EPOCH_CHECKPOINT)
    _, trainer = train_and_test(
        config, model_class, train_data, valid_data, test_data, saved=True, checkpoints=checkpoints
    )
    test = trainer.last_evaluation
    epoch_seconds = trainer.epoch_seconds
    norm_ratio = target_norm_ratio(trainer.model, train_data._dataset)
    user_ids = torch.cat([batch[0][config["USER_ID_FIELD"]] for batch in test_data]).numpy()
    per_user = {"user_id": user_ids, **per_user_topk_metrics(test.data, config)}
    row = {
        **test.result,
        NORM_RATIO_COLUMN: np.nan if norm_ratio is None else norm_ratio,
        "parameters": count_parameters(trainer.model),
        "train_seconds_per_epoch": float(np.mean(epoch_seconds)),
        "inference_users_per_second": test.users_per_second,
        "peak_memory_mb": peak_memory_mb(config["device"]),
        "epochs_trained": len(epoch_seconds),
        "best_epoch": best_epoch(trainer, len(epoch_seconds), config["eval_step"]),
        "train_hours": float(np.sum(epoch_seconds)) / 3600,
        "hardware": hardware(config["device"]),
    }
    sampler_rows = sweep_inference_steps(trainer, test_data, config)
    return CellScores(row, per_user, sampler_rows, chance_metrics(test_data, config))


def inference_step_grid(model, grid):
    """The samplers of ``grid`` that ``model`` can run: ``None`` (its full DDPM chain) and DDIM step counts below its
    number of diffusion steps, in the grid's order; empty for a model without a reverse chain to shorten (not a
    :class:`recbole_diffusion.model.sampling.ReverseChainSampling`).
    """
    if not isinstance(model, ReverseChainSampling):
        return []
    return [steps for steps in grid if steps is None or steps < model.diffusion.num_steps]


def sweep_inference_steps(trainer, test_data, config):
    """Test the trained model of ``trainer`` (a :class:`recbole_diffusion.run_trainer.RunTrainer`) again with every
    sampler of ``config``'s step grid (:func:`inference_step_grid`), each run re-seeded; one row each: ``sampler``
    (DDPM or DDIM), ``steps``, every test metric and the full-sort ``inference_users_per_second``. The number of
    steps is an argument of the evaluation (``num_inference_steps``): the model's own setting is left alone."""
    model = trainer.model
    rows = []
    for steps in inference_step_grid(model, config[STEP_GRID_KEY]):
        num_steps = model.diffusion.num_steps if steps is None else steps  # all the chain's steps: DDPM
        init_seed(config["seed"], config["reproducibility"])
        result = trainer.evaluate(
            test_data, load_best_model=False, show_progress=config["show_progress"], num_inference_steps=num_steps
        )
        rows.append(
            {
                "sampler": "DDPM" if steps is None else "DDIM",
                "steps": num_steps,
                **result,
                "inference_users_per_second": trainer.last_evaluation.users_per_second,
            }
        )
    return rows
