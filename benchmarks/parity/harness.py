"""Parity harness: the same model trained by the plugin and by its authors' code, on the plugin's split, scored by
the plugin's evaluator.

The model-specific part lives in one adapter module per model (``benchmarks/parity/adapters/<model>.py``, interface
in ``benchmarks/parity/README.md``); this module holds what every model shares: building the split, training and
timing the plugin side, full-sort evaluation of a scoring function with RecBole's collector and evaluator, the norm
ratio, and the output files (``metrics.csv``, ``table.md``).

An adapter may declare ``CONFIG_FILES`` (protocol yaml files of this repository, e.g. the general protocol),
``METRICS`` (e.g. Recall/NDCG for general models) and ``SCORINGS`` (``("eval",)``: no dropout scoring); without them
it gets the sequential defaults below (no extra config file, Hit/NDCG@10/@20, both scorings). A model that is not a
next-item recommender trained by RecBole's trainer (DiffuASR's stage-1 generator) brings its own plugin side
(``PluginRunner``) and evaluation (``evaluate``), which then score both sides alike.
"""

import csv
import importlib
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator import Collector, Evaluator
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer
from recbole_diffusion.collapse import popularity_norm_ratio, training_target_counts
from recbole_diffusion.run_trainer import run_trainer_class

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("hit@10", "ndcg@10", "hit@20", "ndcg@20")
SCORINGS = ("eval", "dropout")  # eval: model.eval(); dropout: dropout kept on while scoring (the official evaluate)
RECBOLE_METRIC_NAMES = {"hit": "Hit", "ndcg": "NDCG", "recall": "Recall", "mrr": "MRR", "precision": "Precision"}


def columns(metrics=METRICS, scorings=SCORINGS):
    """The columns of ``metrics.csv`` for ``metrics`` scored in ``scorings``."""
    dropout = [f"dropout_{metric}" for metric in metrics] if "dropout" in scorings else []
    return ("side", "seed", *metrics, *dropout, "train_seconds_per_epoch", "users_per_second", "norm_ratio")


COLUMNS = columns()


def eval_config(metrics=METRICS):
    """RecBole's evaluation entries computing ``metrics`` (names such as ``recall@20``; a name without a cut-off,
    such as ``denoising_loss``, is a column an adapter's ``evaluate`` computes itself)."""
    ranked = [metric for metric in metrics if "@" in metric]
    names = [RECBOLE_METRIC_NAMES[metric.partition("@")[0]] for metric in ranked]
    topk = sorted({int(metric.partition("@")[2]) for metric in ranked})
    valid = "ndcg@10" if "ndcg@10" in ranked else ranked[0]
    return {
        "metrics": list(dict.fromkeys(names)),
        "topk": topk,
        "valid_metric": f"{RECBOLE_METRIC_NAMES[valid.partition('@')[0]]}@{valid.partition('@')[2]}",
        "show_progress": False,
    }


EVAL_CONFIG = eval_config()


def adapter_protocol(adapter):
    """``(config files, metrics, scorings)`` of ``adapter`` (the sequential defaults where it declares none)."""
    return (
        tuple(getattr(adapter, "CONFIG_FILES", ())),
        tuple(getattr(adapter, "METRICS", METRICS)),
        tuple(getattr(adapter, "SCORINGS", SCORINGS)),
    )


def load_adapter(model):
    """The adapter module of ``model`` (``benchmarks.parity.adapters.<model lower case>``)."""
    return importlib.import_module(f"benchmarks.parity.adapters.{model.lower()}")


@contextmanager
def argv(arguments):
    """Run with ``sys.argv`` replaced (RecBole's Config and some official scripts parse it)."""
    saved = sys.argv
    sys.argv = list(arguments)
    try:
        yield
    finally:
        sys.argv = saved


def build_split(model, dataset, config_dict, config_files=(), metrics=METRICS):
    """Config and the plugin's train / valid / test data of ``dataset`` for ``model``: ``config_files`` (paths
    relative to the repository root) over the model and dataset yaml, ``config_dict`` and the evaluation of
    ``metrics`` on top."""
    files = [str(ROOT / name) for name in config_files] or None
    with argv(["parity"]):
        config = Config(
            model=model, dataset=dataset, config_file_list=files, config_dict={**config_dict, **eval_config(metrics)}
        )
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    if not isinstance(test_data, FullSortEvalDataLoader):
        raise ValueError("parity needs full-sort evaluation of the test split (eval_args mode 'full')")
    return config, train_data, valid_data, test_data


@torch.no_grad()
def full_sort_evaluate(config, test_data, score, metrics=METRICS):
    """RecBole's metrics of ``score`` on ``test_data`` (a full-sort loader), as the plugin's trainer computes them.

    ``score(interaction)`` returns ``[batch, n_items]`` scores in the plugin's item ids; the padding item 0 (and any
    history the loader masks) is set to -inf here, for every side alike. Returns (metrics dict, users per second of
    scoring).
    """
    collector, evaluator = Collector(config), Evaluator(config)
    seconds, users = 0.0, 0
    for interaction, history_index, positive_u, positive_i in test_data:
        start = time.perf_counter()
        scores = score(interaction).clone().float()
        seconds += time.perf_counter() - start
        users += len(scores)
        scores[:, 0] = -torch.inf
        if history_index is not None:
            scores[history_index] = -torch.inf
        collector.eval_batch_collect(scores, interaction, positive_u, positive_i)
    result = evaluator.evaluate(collector.get_data_struct())
    return {metric: float(result[metric]) for metric in metrics}, users / seconds


def evaluate_both_scorings(config, test_data, scorer, seed, metrics=METRICS, scorings=SCORINGS):
    """Metrics with ``scorer(interaction, dropout)`` in each of ``scorings`` (each re-seeded); dropout_* for the
    ``dropout`` scoring.

    Returns (row fragment, users per second of the ``eval`` scoring).
    """
    row = {}
    init_seed(seed, True)
    result, users_per_second = full_sort_evaluate(config, test_data, lambda batch: scorer(batch, False), metrics)
    row.update(result)
    if "dropout" in scorings:
        init_seed(seed, True)
        result, _ = full_sort_evaluate(config, test_data, lambda batch: scorer(batch, True), metrics)
        row.update({f"dropout_{metric}": value for metric, value in result.items()})
    return row, users_per_second


def run_plugin_side(config, train_data, test_data, seed, metrics=METRICS, scorings=SCORINGS, adapter=None):
    """Train the plugin's model for ``config['epochs']`` epochs (no validation: the last epoch's model is tested).

    The norm ratio is None for a model without an item table (no ``target_embedding_table``). An ``adapter`` with a
    ``PluginRunner`` trains and scores the plugin's model through it instead (``score_runner``)."""
    config["seed"] = seed
    init_seed(seed, config["reproducibility"])
    if hasattr(adapter, "PluginRunner"):
        runner = adapter.PluginRunner(config, train_data, seed)
        return score_runner(adapter, runner, runner.fit(), config, train_data, test_data, seed)
    if hasattr(adapter, "evaluate"):
        raise ValueError(f"adapter {adapter.__name__}: evaluate needs a PluginRunner to score the plugin side alike")
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = run_trainer_class(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
    seconds = trainer.epoch_seconds
    trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)

    def scorer(interaction, dropout):
        model.train(dropout)
        return model.full_sort_predict(interaction.to(config["device"])).cpu()

    row, users_per_second = evaluate_both_scorings(config, test_data, scorer, seed, metrics, scorings)
    model.eval()
    table_name = getattr(type(model), "target_embedding_table", None)
    norm_ratio = None
    if table_name is not None:
        table = getattr(model, table_name)
        norm_ratio = popularity_norm_ratio(table.weight, training_target_counts(train_data._dataset))
    return {
        **row,
        "train_seconds_per_epoch": float(np.mean(seconds)),
        "users_per_second": users_per_second,
        "norm_ratio": norm_ratio,
    }


def run_official_side(adapter, official_dir, config, train_data, test_data, hparams, seed):
    """Train the official model through ``adapter`` for ``hparams['epochs']`` epochs and score it like the plugin's
    (``score_runner``)."""
    init_seed(seed, True)
    runner = adapter.OfficialRunner(official_dir, train_data._dataset, hparams, seed)
    seconds = []
    for _ in range(hparams["epochs"]):
        start = time.perf_counter()
        runner.train_epoch()
        seconds.append(time.perf_counter() - start)
    return score_runner(adapter, runner, seconds, config, train_data, test_data, seed)


def score_runner(adapter, runner, seconds, config, train_data, test_data, seed):
    """The row of a trained ``runner`` (``OfficialRunner`` or ``PluginRunner``) that took ``seconds`` per epoch.

    Metrics: the adapter's ``evaluate(config, train_data, test_data, runner, seed)`` when it has one, else the
    full-sort test of ``runner.full_sort_scores``. The norm ratio is None when ``runner.target_embedding_weight()``
    is None (no item table)."""
    _, metrics, scorings = adapter_protocol(adapter)
    if hasattr(adapter, "evaluate"):
        row, users_per_second = adapter.evaluate(config, train_data, test_data, runner, seed)
    else:
        row, users_per_second = evaluate_both_scorings(
            config, test_data, runner.full_sort_scores, seed, metrics, scorings
        )
    weight = runner.target_embedding_weight()
    norm_ratio = None
    if weight is not None:
        norm_ratio = popularity_norm_ratio(weight, training_target_counts(train_data._dataset))
    return {
        **row,
        "train_seconds_per_epoch": float(np.mean(seconds)),
        "users_per_second": users_per_second,
        "norm_ratio": norm_ratio,
    }


def write_metrics(rows, path, columns=COLUMNS):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key) for key in columns})


def _mean_std(values):
    values = np.asarray([np.nan if value is None else value for value in values], dtype=float)
    if np.isnan(values).all():
        return "n/a"
    return f"{np.nanmean(values):.4f} ± {np.nanstd(values):.4f}"


def markdown_table(rows, sides, columns=COLUMNS):
    """Mean ± std (population std) over seeds per side, one column per side ("n/a": no value, e.g. the norm ratio
    of a model without an item table)."""
    header = "| | " + " | ".join(sides) + " |\n|---|" + "---:|" * len(sides) + "\n"
    lines = []
    for column in columns[2:]:
        cells = [_mean_std([row[column] for row in rows if row["side"] == side]) for side in sides]
        lines.append(f"| {column} | " + " | ".join(cells) + " |")
    seeds = sorted({row["seed"] for row in rows})
    return header + "\n".join(lines) + f"\n\nSeeds: {', '.join(map(str, seeds))} (mean ± std over seeds).\n"
