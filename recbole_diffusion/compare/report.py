"""The report of a comparison, assembled from its stored cells only: ``metrics.csv``, ``per_user/``, ``chance.csv``,
``significance.csv``, ``table.md``, ``inference_steps.csv`` and the plots."""

import fnmatch
import shutil
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from recbole_diffusion.compare.inputs import POPULARITY_MODELS, is_baseline
from recbole_diffusion.compare.statistics import (
    ACCURACY_METRICS,
    best_baseline,
    per_user_mean,
    significance_table,
    smaller_is_better,
)

DIVERSITY_METRICS = ("ild", "categorycoverage", "itemcoverage", "shannonentropy", "giniindex", "tailpercentage")
EFFICIENCY_COLUMNS = ("parameters", "train_seconds_per_epoch", "inference_users_per_second", "peak_memory_mb")
# How long each cell trained: epochs run, the epoch of the tested checkpoint (from 0), training hours (epochs only,
# validation excluded), and what it ran on.
TRAINING_COLUMNS = ("epochs_trained", "best_epoch", "train_hours", "hardware")
CONFIG_FILES_COLUMN = "config_files"
NORM_RATIO_COLUMN = "target_norm_ratio"
BELOW_POPULARITY, BELOW_CHANCE = "†", "‡"
CHANCE_ROW = "random ranking (expected)"
REPORT_FILES = ("metrics.csv", "chance.csv", "significance.csv", "table.md", "inference_steps.csv")
REPORT_PLOTS = ("accuracy_vs_*.png", "*_vs_inference_steps.png")


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
    per_user_means = {model: per_user_mean(report_dir, model, seeds) for model in models}
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
        column: means[column].min() if smaller_is_better(column) else means[column].max() for column in metric_columns
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
            f'evaluator (row "{CHANCE_ROW}": exact, per test user from its number of test items and of candidate '
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
                    ddim_steps,
                    means.loc["DDIM", column],
                    yerr=stds.loc["DDIM", column],
                    fmt="o-",
                    capsize=3,
                    label=f"{model} DDIM",
                )
                color = line.lines[0].get_color()
            if "DDPM" in means.index.get_level_values("sampler"):
                axes.errorbar(
                    means.loc["DDPM"].index,
                    means.loc["DDPM", column],
                    yerr=stds.loc["DDPM", column],
                    fmt="s",
                    capsize=3,
                    markersize=8,
                    color=color,
                    label=f"{model} DDPM",
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
