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

The package is split by concern: :mod:`.inputs` (the checks of the arguments, the popularity model, the baselines),
:mod:`.run` (:func:`compare`, and :func:`score_cell`: one cell through the quick start's train-and-test flow,
:func:`recbole_diffusion.quick_start.train_and_test`, whose trainer measures the epochs and the test;
:mod:`recbole_diffusion.run_trainer`), :mod:`.statistics` (per-user values, chance levels, paired tests) and
:mod:`.report` (the files of the report, from the stored cells only).
"""

from recbole_diffusion.compare.inputs import (
    GENERAL_POPULARITY,
    POPULARITY_MODELS,
    SEQUENTIAL_POPULARITY,
    STEP_GRID_KEY,
    CompareInputError,
    checked_models,
    is_baseline,
)
from recbole_diffusion.compare.report import (
    CHANCE_ROW,
    markdown_table,
    plot_accuracy_vs_diversity,
    plot_metric_vs_inference_steps,
    write_report,
)
from recbole_diffusion.compare.run import CellScores, compare, inference_step_grid, score_cell, sweep_inference_steps
from recbole_diffusion.compare.statistics import (
    ACCURACY_METRICS,
    best_baseline,
    chance_inputs,
    chance_metrics,
    expected_random_metric,
    paired_tests,
    per_user_topk_metrics,
    significance_table,
)

__all__ = [
    "ACCURACY_METRICS",
    "CHANCE_ROW",
    "GENERAL_POPULARITY",
    "POPULARITY_MODELS",
    "SEQUENTIAL_POPULARITY",
    "STEP_GRID_KEY",
    "CellScores",
    "CompareInputError",
    "best_baseline",
    "chance_inputs",
    "chance_metrics",
    "checked_models",
    "compare",
    "expected_random_metric",
    "inference_step_grid",
    "is_baseline",
    "markdown_table",
    "paired_tests",
    "per_user_topk_metrics",
    "plot_accuracy_vs_diversity",
    "plot_metric_vs_inference_steps",
    "score_cell",
    "significance_table",
    "sweep_inference_steps",
    "write_report",
]
