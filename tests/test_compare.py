"""The comparison harness: two models (and the popularity model it adds) and two seeds end to end, the paired tests
against scipy, the chance levels against Monte Carlo, the marks of the table, input errors."""

import inspect
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from recbole.evaluator.register import metrics_dict
from scipy import stats

import run_recbole_diffusion
from recbole_diffusion import Config, get_model, get_trainer
from recbole_diffusion.compare import (
    CHANCE_ROW,
    STEP_GRID_KEY,
    CellScores,
    CompareInputError,
    best_baseline,
    checked_models,
    compare,
    expected_random_metric,
    is_baseline,
    markdown_table,
    paired_tests,
    plot_accuracy_vs_diversity,
    significance_table,
    sweep_inference_steps,
)
from recbole_diffusion.compare import run as compare_run
from recbole_diffusion.run_trainer import peak_memory_mb, reset_peak_memory, run_trainer_class
from tests.conftest import N_ITEMS, build_model, markov_sequences, script_args
from tests.sequential_configs import DREAMREC_SMALL

MODELS = ["DreamRec", "GRU4Rec"]
ALL_MODELS = ["SequentialPop", *MODELS]  # compare puts the popularity model first
SEEDS = [2020, 2021]
ACCURACY = ["hit@5", "hit@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10"]


def compare_config(data_path, checkpoint_dir):
    return {
        "data_path": data_path,
        "checkpoint_dir": str(checkpoint_dir),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "MAX_ITEM_LIST_LENGTH": 10,
        "metrics": ["Hit", "NDCG", "MRR", "ILD"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "show_progress": False,
        "state": "WARNING",
        "reproducibility": True,
        "epochs": 1,
        "train_batch_size": 256,
        "eval_batch_size": 1024,
        **DREAMREC_SMALL,
    }


@pytest.fixture(scope="module")
def report_dir(data_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    config = compare_config(data_path, folder / "saved")
    return compare(MODELS, "markov", seeds=SEEDS, config_dict=config, output_dir=folder / "results")


def test_report_folder_holds_every_file(report_dir):
    assert report_dir.parent.name == "markov" and report_dir.parent.parent.name == "results"
    assert report_dir.name == "-".join(ALL_MODELS)
    assert sorted(path.name for path in report_dir.iterdir()) == [
        "accuracy_vs_ild_at_10.png",
        "accuracy_vs_ild_at_5.png",
        "cells",
        "chance.csv",
        "inference_steps.csv",
        "metrics.csv",
        "ndcg_at_10_vs_inference_steps.png",
        "per_user",
        "significance.csv",
        "table.md",
    ]
    expected = sorted(f"{model}_seed{seed}.npz" for model in ALL_MODELS for seed in SEEDS)
    assert sorted(path.name for path in (report_dir / "per_user").iterdir()) == expected


def report_bytes(folder):
    """``{relative path: bytes}`` of the report files in ``folder`` (the stored cells left out)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] != "cells"
    }


def test_report_only_writes_the_same_report_byte_for_byte(report_dir, data_path):
    """The report is assembled from the stored cells alone: deleted and assembled again, every file is identical,
    the plots and the efficiency figures included."""
    written = report_bytes(report_dir)
    for name in written:
        (report_dir / name).unlink()
    config = compare_config(data_path, report_dir.parents[2] / "saved")
    output_dir = report_dir.parents[1]
    assert compare(MODELS, "markov", SEEDS, config_dict=config, output_dir=output_dir, report_only=True) == report_dir
    assert report_bytes(report_dir) == written


def test_metrics_csv_has_one_row_per_model_and_seed(report_dir):
    metrics = pd.read_csv(report_dir / "metrics.csv")
    assert list(zip(metrics["model"], metrics["seed"])) == [(m, s) for s in SEEDS for m in ALL_MODELS]
    for column in ["hit@5", "hit@10", "ndcg@10", "mrr@10", "parameters", "train_seconds_per_epoch"]:
        assert column in metrics.columns
    assert (metrics[["inference_users_per_second", "peak_memory_mb", "parameters"]] > 0).all().all()
    # the norm ratio of embedding collapse: only for a model that declares the target table its loss regresses onto
    for model, ratios in metrics.groupby("model")["target_norm_ratio"]:
        monitored = getattr(get_model(model), "target_embedding_table", None) is not None
        assert ratios.notna().all() if monitored else ratios.isna().all(), model


def test_per_user_means_equal_recbole_metrics_on_the_same_users(report_dir):
    metrics = pd.read_csv(report_dir / "metrics.csv").set_index(["model", "seed"])
    for seed in SEEDS:
        users = []
        for model in ALL_MODELS:
            with np.load(report_dir / "per_user" / f"{model}_seed{seed}.npz") as arrays:
                users.append(np.sort(arrays["user_id"]))
                assert len(arrays["user_id"]) == 300
                for metric in ["hit@5", "hit@10", "ndcg@5", "ndcg@10", "mrr@10"]:
                    assert arrays[metric].mean() == pytest.approx(metrics.loc[(model, seed), metric], abs=1e-4)
        for other in users[1:]:
            np.testing.assert_array_equal(users[0], other)  # the identical split


def best_of(report_dir, baselines, metric="ndcg@10"):
    means = pd.read_csv(report_dir / "metrics.csv").groupby("model")[metric].mean()
    return means[baselines].idxmax()


def test_significance_csv_compares_the_others_with_the_best_baseline(report_dir):
    """GRU4Rec (a RecBole model) and SequentialPop (the popularity model) are baselines, DreamRec is not."""
    significance = pd.read_csv(report_dir / "significance.csv")
    baseline = best_of(report_dir, ["GRU4Rec", "SequentialPop"])
    assert set(significance["baseline"]) == {baseline}
    assert set(significance["model"]) == set(ALL_MODELS) - {baseline}
    assert sorted(significance["metric"]) == sorted(ACCURACY * 2)  # per compared model
    assert (significance["n_users"] == 300).all()
    assert significance[["t_pvalue", "wilcoxon_pvalue"]].apply(lambda p: p.between(0, 1)).all().all()


def test_table_shows_mean_std_best_and_p_values(report_dir):
    table = (report_dir / "table.md").read_text()
    metrics = pd.read_csv(report_dir / "metrics.csv")
    lines = table.splitlines()
    assert lines[0].startswith("| model | seeds | hit@5 |") and "t-test p (ndcg@10)" in lines[0]
    assert lines[2].startswith("| SequentialPop") and lines[-3].startswith(f"| {CHANCE_ROW} |")
    dreamrec_row = next(line for line in lines if line.startswith("| DreamRec |"))
    baseline = best_of(report_dir, ["GRU4Rec", "SequentialPop"])
    baseline_row = next(line for line in lines if line.startswith(f"| {baseline} (best baseline) |"))
    ndcg = metrics[metrics["model"] == "DreamRec"]["ndcg@10"]
    assert f"{ndcg.mean():.4f} ± {ndcg.std(ddof=0):.4f}" in dreamrec_row
    assert "**" in table
    norm_ratio_dashes = int("norm ratio" in lines[0])  # the baseline has no target table
    assert baseline_row.count("—") == 2 + norm_ratio_dashes and dreamrec_row.count("—") == 0


def test_table_marks_follow_the_popularity_model_and_chance(report_dir):
    """Every accuracy cell is marked † exactly when its mean is below SequentialPop's, ‡ below chance.csv's mean."""
    means = pd.read_csv(report_dir / "metrics.csv").groupby("model")[ACCURACY].mean()
    chance = pd.read_csv(report_dir / "chance.csv")[ACCURACY].mean()
    cells = table_cells((report_dir / "table.md").read_text())
    for model in ALL_MODELS:
        for column in ACCURACY:
            cell = cells[model][column]
            below_popularity = means.loc[model, column] < means.loc["SequentialPop", column]
            assert ("†" in cell) == (below_popularity and model != "SequentialPop"), (model, column, cell)
            assert ("‡" in cell) == (means.loc[model, column] < chance[column]), (model, column, cell)
    assert cells[CHANCE_ROW]["ndcg@10"] == f"{chance['ndcg@10']:.4f}" and cells[CHANCE_ROW]["ild@10"] == "—"


def test_chance_csv_holds_the_exact_sequential_chance_per_seed(report_dir):
    """RecBole's sequential full sort masks only the padding item: one test item among item_num - 1 candidates."""
    chance = pd.read_csv(report_dir / "chance.csv")
    assert list(chance["seed"]) == SEEDS and (chance["n_users"] == 300).all()
    assert set(chance.columns) == {"seed", "n_users", *ACCURACY}  # no chance for ILD
    discounts = 1 / np.log2(np.arange(2, 12))
    for k in (5, 10):
        assert chance[f"hit@{k}"].to_list() == pytest.approx([k / N_ITEMS] * 2, rel=1e-12)
        assert chance[f"ndcg@{k}"].to_list() == pytest.approx([discounts[:k].sum() / N_ITEMS] * 2, rel=1e-12)
        assert chance[f"mrr@{k}"].to_list() == pytest.approx([(1 / np.arange(1, k + 1)).sum() / N_ITEMS] * 2)


def table_cells(table):
    """``{row label without " (best baseline)": {column: cell}}`` of a ``table.md``."""
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].removesuffix(" (best baseline)")] = dict(zip(header, cells))
    return rows


def hand_made_metrics(norm_ratios=None):
    """Two seeds of three models: Good beats the popularity model in hit@10 only, Bad is below it everywhere; with
    ``norm_ratios`` (one per row, seed by seed) a ``target_norm_ratio`` column."""
    values = {
        "SequentialPop": {"hit@10": 0.15, "ndcg@10": 0.10, "itemcoverage@10": 0.20},
        "Good": {"hit@10": 0.40, "ndcg@10": 0.05, "itemcoverage@10": 0.30},
        "Bad": {"hit@10": 0.10, "ndcg@10": 0.02, "itemcoverage@10": 0.01},
    }
    efficiency = {"parameters": 1, "train_seconds_per_epoch": 1.0, "inference_users_per_second": 1.0}
    training = {"epochs_trained": 12, "best_epoch": 7, "train_hours": 0.5, "hardware": "CPU, 2 threads"}
    rows = [
        {"model": model, "seed": seed, **metrics, **efficiency, "peak_memory_mb": 1.0, **training}
        for seed in (1, 2)
        for model, metrics in values.items()
    ]
    metrics = pd.DataFrame(rows)
    if norm_ratios is not None:
        metrics["target_norm_ratio"] = norm_ratios
    return metrics


NO_SIGNIFICANCE = pd.DataFrame(columns=["model", "metric", "t_pvalue", "wilcoxon_pvalue"])


def test_markdown_table_marks_exactly_the_cells_below_popularity_and_chance():
    metrics = hand_made_metrics([np.nan, np.nan, 0.2, np.nan, np.nan, 0.4])
    chance = {"hit@10": 0.2, "ndcg@10": 0.04}
    table = markdown_table(
        metrics, NO_SIGNIFICANCE, "ndcg@10", "SequentialPop", popularity="SequentialPop", chance=chance
    )
    cells = table_cells(table)
    assert cells["SequentialPop"]["hit@10"] == "0.1500 ± 0.0000 ‡"  # the popularity row: against chance only
    assert cells["SequentialPop"]["ndcg@10"] == "**0.1000 ± 0.0000**"
    assert cells["Good"]["hit@10"] == "**0.4000 ± 0.0000**" and cells["Good"]["ndcg@10"] == "0.0500 ± 0.0000 †"
    assert cells["Bad"]["hit@10"] == "0.1000 ± 0.0000 †‡" and cells["Bad"]["ndcg@10"] == "0.0200 ± 0.0000 †‡"
    assert cells["Bad"]["itemcoverage@10"] == "0.0100 ± 0.0000"  # a diversity metric: never marked
    assert cells[CHANCE_ROW]["hit@10"] == "0.2000" and cells[CHANCE_ROW]["itemcoverage@10"] == "—"
    assert cells[CHANCE_ROW]["seeds"] == "—" and cells[CHANCE_ROW]["parameters"] == "—"
    assert "†: mean below the popularity model's (SequentialPop)" in table
    assert "‡: mean below chance" in table and "chance.csv" in table
    # the norm ratio is a column of its own, not a metric: mean over seeds, no bold, no marks
    norm_ratios = [cells[model]["norm ratio"] for model in ("SequentialPop", "Good", "Bad", CHANCE_ROW)]
    assert norm_ratios == ["—", "—", "0.300", "—"]
    assert "target_norm_ratio" not in table and "norm ratio: " in table


def test_markdown_table_without_popularity_model_or_chance_has_no_marks():
    table = markdown_table(hand_made_metrics(), NO_SIGNIFICANCE, "ndcg@10", None)
    assert "†" not in table and "‡" not in table and CHANCE_ROW not in table


@pytest.mark.parametrize("norm_ratios", [[np.nan] * 6, None], ids=["all-nan", "no-column"])
def test_markdown_table_has_no_norm_ratio_column_without_a_value(norm_ratios):
    table = markdown_table(hand_made_metrics(norm_ratios), NO_SIGNIFICANCE, "ndcg@10", None)
    assert "norm ratio" not in table and "target_norm_ratio" not in table


@pytest.mark.parametrize(
    "candidates, positives, k",
    [(20, 1, 5), (20, 3, 10), (15, 8, 5), (6, 2, 8), (30, 4, 30)],
    ids=["one-positive", "several", "more-positives-than-k", "k-beyond-the-candidates", "k-all"],
)
def test_chance_formulas_match_recbole_metrics_on_random_permutations(candidates, positives, k, tiny_config):
    """RecBole's own metric code on 100,000 uniformly random rankings agrees with the closed forms within five
    standard errors (exactly where the metric does not vary)."""
    Config(model="SequentialPop", dataset="markov", config_dict=tiny_config)  # RecBole's metrics need np.float
    rng = np.random.default_rng(0)
    draws = 100_000
    relevant = rng.random((draws, candidates)).argsort(axis=1) < positives  # items 0..T-1 relevant, random order
    pos_index = np.zeros((draws, k), dtype=bool)  # ranks past the candidates hold masked items, never relevant
    pos_index[:, : min(k, candidates)] = relevant[:, :k]
    pos_len = np.full(draws, positives)
    for name in ["hit", "recall", "ndcg", "mrr", "precision"]:
        metric = metrics_dict[name]({"metric_decimal_place": 4, "topk": [k]})
        arguments = (pos_index, pos_len)[: len(inspect.signature(metric.metric_info).parameters)]
        simulated = metric.metric_info(*arguments)[:, k - 1]
        (exact,) = expected_random_metric(name, k, [positives], [candidates])
        tolerance = 5 * simulated.std() / np.sqrt(draws) + 1e-12
        assert abs(simulated.mean() - exact) <= tolerance, (name, simulated.mean(), exact)


def test_chance_formulas_at_hand_checked_points():
    assert expected_random_metric("hit", 10, [1, 1], [100, 50]) == pytest.approx([0.1, 0.2])
    assert expected_random_metric("hit", 2, [2], [4])[0] == pytest.approx(1 - (2 / 4) * (1 / 3))
    assert expected_random_metric("mrr", 2, [1], [4])[0] == pytest.approx(1 / 4 + (3 / 4) * (1 / 3) / 2)
    assert expected_random_metric("precision", 5, [3], [30])[0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no chance level for 'itemcoverage'"):
        expected_random_metric("itemcoverage", 5, [1], [10])


def test_accuracy_vs_diversity_plot_is_a_non_empty_png(report_dir):
    png = (report_dir / "accuracy_vs_ild_at_10.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_inference_steps_csv_retests_only_the_diffusion_model_with_each_sampler(report_dir):
    steps = pd.read_csv(report_dir / "inference_steps.csv")
    assert set(steps["model"]) == {"DreamRec"}  # GRU4Rec has no sampler
    for seed in SEEDS:
        runs = steps[steps["seed"] == seed]
        # DREAMREC_SMALL has 50 diffusion steps: DDIM 50 would be the full chain, so the grid drops it
        assert list(zip(runs["sampler"], runs["steps"])) == [("DDPM", 50), ("DDIM", 20), ("DDIM", 10), ("DDIM", 5)]
    assert steps["ndcg@10"].between(0, 1).all() and (steps["inference_users_per_second"] > 0).all()
    assert (report_dir / "ndcg_at_10_vs_inference_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (report_dir / "ndcg_at_10_vs_inference_steps.png").stat().st_size > 10_000


def test_sampler_sweep_runs_each_grid_entry_reproducibly_and_keeps_the_trained_setting(data_path, tmp_path):
    """Each grid entry scores every test batch with its sampler; a deterministic DDIM entry run twice gives the same
    metrics; the model's own ``inference_steps`` is what it was."""
    grid = [None, 7, 3, 3]
    config_dict = {**compare_config(data_path, tmp_path), "inference_steps": 10, "inference_step_grid": grid}
    config, model, _, _, test_data = build_model("DreamRec", config_dict)
    trainer = run_trainer_class(get_trainer(config["MODEL_TYPE"], "DreamRec"))(config, model)
    requested = []
    sample = model.diffusion.sample

    def recording_sample(*args, num_inference_steps=None, **kwargs):
        requested.append(num_inference_steps)
        return sample(*args, num_inference_steps=num_inference_steps, **kwargs)

    model.diffusion.sample = recording_sample
    rows = sweep_inference_steps(trainer, test_data, config)
    batches = len(requested) // len(grid)
    assert batches > 0 and requested == [steps for steps in [50, 7, 3, 3] for _ in range(batches)]  # 50: DDPM
    assert [(row["sampler"], row["steps"]) for row in rows] == [("DDPM", 50), ("DDIM", 7), ("DDIM", 3), ("DDIM", 3)]
    assert all(row["inference_users_per_second"] > 0 for row in rows)
    assert rows[2]["ndcg@10"] == rows[3]["ndcg@10"] and rows[2]["hit@10"] == rows[3]["hit@10"]
    assert model.inference_steps == 10


def test_no_diversity_metric_means_no_plot(tmp_path):
    metrics = pd.DataFrame({"model": ["A", "B"], "seed": [1, 1], "ndcg@10": [0.1, 0.2]})
    assert plot_accuracy_vs_diversity(metrics, "ndcg@10", tmp_path) == []


def test_paired_tests_match_scipy_on_a_hand_made_example():
    model = np.array([1.0, 0.8, 0.0, 0.6, 1.0, 0.3, 0.9, 0.0])
    baseline = np.array([0.5, 0.8, 0.1, 0.2, 0.0, 0.3, 0.4, 0.2])
    t_statistic, t_pvalue, w_statistic, w_pvalue = paired_tests(model, baseline)
    expected_t = stats.ttest_rel(model, baseline)
    expected_w = stats.wilcoxon(model, baseline)
    assert (t_statistic, t_pvalue) == pytest.approx((expected_t.statistic, expected_t.pvalue))
    assert (w_statistic, w_pvalue) == pytest.approx((expected_w.statistic, expected_w.pvalue))
    # by hand: differences 0.5, 0, -0.1, 0.4, 1, 0, 0.5, -0.2 -> mean 0.2625 over 8 users
    differences = model - baseline
    assert t_statistic == pytest.approx(differences.mean() / (differences.std(ddof=1) / np.sqrt(8)))
    assert paired_tests(model, model) == (0.0, 1.0, 0.0, 1.0)


def test_significance_table_pairs_by_user_id():
    baseline = pd.DataFrame({"hit@10": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]}, index=[1, 2, 3, 4, 5, 6])
    model = pd.DataFrame({"hit@10": [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]}, index=[6, 5, 4, 3, 2, 1, 9])
    table = significance_table({"Base": baseline, "Model": model}, "Base")
    assert list(table["model"]) == ["Model"] and list(table["n_users"]) == [6]
    aligned = model.loc[baseline.index, "hit@10"]
    expected = stats.ttest_rel(aligned, baseline["hit@10"])
    assert table["t_pvalue"].iloc[0] == pytest.approx(expected.pvalue)
    assert significance_table({"Model": model}, None).empty


def test_compare_adds_the_popularity_model_of_the_data_first_unless_named():
    assert checked_models("DreamRec,GRU4Rec") == ["SequentialPop", "DreamRec", "GRU4Rec"]
    assert checked_models(["DiffRec", "EASE"]) == ["Pop", "DiffRec", "EASE"]
    assert checked_models(["GRU4Rec", "SequentialPop"]) == ["GRU4Rec", "SequentialPop"]
    assert checked_models(["EASE", "Pop"]) == ["EASE", "Pop"]
    assert all(is_baseline(name) for name in ["SequentialPop", "Pop", "SASRec", "EASE"])
    assert not any(is_baseline(name) for name in ["DreamRec", "DiffRec", "DiffuRec"])


def test_best_baseline_follows_the_metric_direction():
    metrics = pd.DataFrame(
        {
            "model": ["A", "A", "B", "B", "C"],
            "ndcg@10": [0.2, 0.4, 0.35, 0.35, 0.9],
            "giniindex@10": [0.5, 0.7, 0.3, 0.3, 0.1],
        }
    )
    assert best_baseline(metrics, "ndcg@10", ["A", "B"]) == "B"
    assert best_baseline(metrics, "giniindex@10", ["A", "B"]) == "B"
    assert best_baseline(metrics, "ndcg@10", []) is None


@pytest.mark.parametrize(
    "models, seeds, message",
    [
        ([], [1], "models: expected one or more"),
        (["SASRec", "SASRec"], [1], "models: each model may appear once, repeated: SASRec"),
        (["DiffuASR", "SASRec"], [1], "models: DiffuASR is a two-stage model"),
        (["SASRec"], [], "seeds: expected one or more integer seeds"),
        (["SASRec"], [1, "2"], "seeds: expected one or more integer seeds"),
        (["SASRec"], [3, 3], "seeds: each seed may appear once"),
        (["DreamRec", "MultiVAE", "SASRec"], [1], r"models: sequential \(DreamRec, SASRec\) and non-sequential"),
        (["SASRec", "Pop"], [1], "popularity model of a sequential comparison is SequentialPop, added by itself"),
    ],
)
def test_bad_arguments_name_the_argument(models, seeds, message, tmp_path):
    with pytest.raises(CompareInputError, match=message):
        compare(models, "markov", seeds=seeds, output_dir=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("grid", [[0], [None, "5"], 5])
def test_bad_step_grid_is_refused_before_training(data_path, tmp_path, grid):
    config = {**compare_config(data_path, tmp_path / "saved"), "inference_step_grid": grid}
    with pytest.raises(CompareInputError, match="inference_step_grid: expected a list"):
        compare(["DreamRec"], "markov", config_dict=config, output_dir=tmp_path / "results")
    assert not (tmp_path / "saved").exists() and not (tmp_path / "results").exists()


def test_a_bad_grid_in_one_models_own_file_stops_the_run_before_any_training(data_path, tmp_path):
    write_yaml(tmp_path / "dreamrec.yaml", {STEP_GRID_KEY: [0]})
    config = compare_config(data_path, tmp_path / "saved")
    with pytest.raises(CompareInputError, match="inference_step_grid: expected a list"):
        compare(
            ["GRU4Rec", "DreamRec"],
            "markov",
            config_dict=config,
            output_dir=tmp_path / "results",
            model_config_files={"DreamRec": [str(tmp_path / "dreamrec.yaml")]},
        )
    assert not (tmp_path / "saved").exists() and not (tmp_path / "results").exists()


def stub_scores(model, ndcg, chance):
    """What :func:`score_cell` returns, for a model whose four test users all score ``ndcg``."""
    row = {"ndcg@10": ndcg, "parameters": 1, "train_seconds_per_epoch": 1.0, "inference_users_per_second": 1.0}
    per_user = {"user_id": np.arange(4), "ndcg@10": np.full(4, ndcg)}
    return CellScores({**row, "target_norm_ratio": np.nan, "peak_memory_mb": 1.0}, per_user, [], chance)


def test_one_sequential_model_is_compared_with_the_popularity_model_and_chance(data_path, tmp_path, monkeypatch):
    """GRU4Rec alone gets a SequentialPop row; a planted GRU4Rec score below both the popularity model and the chance
    level (averaged over the seeds) is marked † and ‡. Training is stubbed: only the harness is exercised."""
    chance_of_seed = {1: 0.25, 2: 0.15}  # mean 0.2, above GRU4Rec's 0.1 and below SequentialPop's 0.3

    def stub_score_cell(config):
        chance = {"n_users": 4, "ndcg@10": chance_of_seed[config["seed"]]}
        return stub_scores(config["model"], {"SequentialPop": 0.3, "GRU4Rec": 0.1}[config["model"]], chance)

    monkeypatch.setattr(compare_run, "score_cell", stub_score_cell)
    config = compare_config(data_path, tmp_path / "saved")
    report = compare(["GRU4Rec"], "markov", seeds=[1, 2], config_dict=config, output_dir=tmp_path / "results")
    assert list(pd.read_csv(report / "metrics.csv")["model"]) == ["SequentialPop", "GRU4Rec"] * 2
    chance = pd.read_csv(report / "chance.csv")
    assert chance.to_dict("list") == {"seed": [1, 2], "n_users": [4, 4], "ndcg@10": [0.25, 0.15]}
    cells = table_cells((report / "table.md").read_text())
    assert list(cells) == ["SequentialPop", "GRU4Rec", CHANCE_ROW]
    assert cells["GRU4Rec"]["ndcg@10"] == "0.1000 ± 0.0000 †‡"
    assert cells["SequentialPop"]["ndcg@10"] == "**0.3000 ± 0.0000**"
    assert cells[CHANCE_ROW]["ndcg@10"] == "0.2000"
    significance = pd.read_csv(report / "significance.csv")
    assert set(significance["model"]) == {"GRU4Rec"} and set(significance["baseline"]) == {"SequentialPop"}


def write_yaml(path, values):
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_model_config_files_reach_only_their_model_above_the_shared_files(data_path, tmp_path, monkeypatch):
    """DreamRec's own file beats the shared file and loses to config_dict; GRU4Rec never reads it. Training is
    replaced by a stub that keeps each run's config, so only the harness's layering and report are exercised."""
    shared = write_yaml(tmp_path / "shared.yaml", {"learning_rate": 0.5, "train_batch_size": 32})
    own = write_yaml(tmp_path / "dreamrec.yaml", {"learning_rate": 0.123, "train_batch_size": 64})
    configs = {}

    def stub_score_cell(config):
        configs[config["model"]] = config
        return stub_scores(config["model"], 0.5, {"n_users": 4, "ndcg@10": 0.1})

    monkeypatch.setattr(compare_run, "score_cell", stub_score_cell)
    config_dict = {**compare_config(data_path, tmp_path / "saved"), "train_batch_size": 256}
    report = compare(
        MODELS,
        "markov",
        config_file_list=[shared],
        config_dict=config_dict,
        output_dir=tmp_path / "results",
        model_config_files={"DreamRec": [own]},
    )
    assert configs["DreamRec"]["learning_rate"] == 0.123 and configs["GRU4Rec"]["learning_rate"] == 0.5
    assert configs["SequentialPop"]["learning_rate"] == 0.5
    assert configs["DreamRec"]["train_batch_size"] == configs["GRU4Rec"]["train_batch_size"] == 256
    metrics = pd.read_csv(report / "metrics.csv", keep_default_na=False).set_index("model")
    assert metrics.loc["DreamRec", "config_files"] == f"{shared} {own}"
    assert metrics.loc["GRU4Rec", "config_files"] == metrics.loc["SequentialPop", "config_files"] == shared
    table = (report / "table.md").read_text()
    assert table.endswith(f"read after the shared ones:\n\n- DreamRec: {own}\n")
    assert "| GRU4Rec (best baseline) |" in table and "config_files" not in table.splitlines()[0]


@pytest.mark.parametrize(
    "model_config_files, message",
    [
        (lambda own: {"SASRec": [own]}, r"'SASRec' is not one of the compared models \(SequentialPop, DreamRec, "),
        (lambda own: {"DreamRec": own}, "model_config_files: DreamRec: expected a list of yaml files"),
        (lambda own: {"DreamRec": []}, "model_config_files: DreamRec: expected a list of yaml files"),
        (lambda own: {"DreamRec": [own, "missing.yaml"]}, "model_config_files: DreamRec: no such file: missing.yaml"),
        (lambda own: [own], "model_config_files: expected a dict model name -> files"),
    ],
    ids=["not-compared", "not-a-list", "empty", "missing-file", "not-a-dict"],
)
def test_bad_model_config_files_are_refused_before_training(model_config_files, message, tmp_path):
    own = write_yaml(tmp_path / "own.yaml", {"learning_rate": 0.1})
    with pytest.raises(CompareInputError, match=message):
        compare(MODELS, "markov", output_dir=tmp_path / "results", model_config_files=model_config_files(own))
    assert not (tmp_path / "results").exists()


def test_sampled_evaluation_is_refused(data_path, tmp_path):
    config = {**compare_config(data_path, tmp_path / "saved"), "eval_args": {"mode": "uni100", "order": "TO"}}
    with pytest.raises(CompareInputError, match="eval_args: compare needs full-sort"):
        compare(["GRU4Rec"], "markov", config_dict=config, output_dir=tmp_path / "results")


def test_script_compares_a_comma_list_of_models(data_path, tmp_path, monkeypatch):
    """The script's main in the process, working in ``tmp_path`` (a killed comparison in test_compare_resume runs the
    script as a process). The root logger starts without handlers, as in a process of its own: RecBole's
    ``init_logger`` (``logging.basicConfig``) attaches no file handler to a root that holds pytest's."""
    write_yaml(tmp_path / "dreamrec.yaml", {STEP_GRID_KEY: []})  # a relative path, from the working directory
    arguments = [
        "--model=DreamRec,GRU4Rec",
        "--dataset=markov",
        f"--output_dir={tmp_path / 'results'}",
        *script_args(data_path, tmp_path),
        "--diffusion_steps=20",
        "--model_config_files=DreamRec:dreamrec.yaml",
    ]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_recbole_diffusion.py", *arguments])
    root = logging.getLogger()
    pytest_handlers = list(root.handlers)
    for handler in pytest_handlers:
        root.removeHandler(handler)
    try:
        assert run_recbole_diffusion.main(arguments) == 0
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in pytest_handlers:
            root.addHandler(handler)
    (report,) = (tmp_path / "results" / "markov").iterdir()
    metrics = pd.read_csv(report / "metrics.csv", keep_default_na=False)
    assert list(metrics["model"]) == ["SequentialPop", "DreamRec", "GRU4Rec"] and set(metrics["seed"]) == {2020}
    assert list(metrics["config_files"]) == ["", "dreamrec.yaml", ""]
    assert not (report / "inference_steps.csv").exists()  # DreamRec's own file turned its sampler sweep off
    for model in ["SequentialPop", "DreamRec", "GRU4Rec"]:  # each model of the run logs to its own file
        (log_file,) = (tmp_path / "log" / model).iterdir()
        checkpoints = re.findall(r"cells/(\w+)_seed2020/best.pth", log_file.read_text())  # each cell its own
        assert checkpoints and set(checkpoints) == {model}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model=DreamRec,GRU4Rec", "--seeds=two"], "argument --seeds: expected a count or a comma list"),
        (["--model=DreamRec", "--seeds=0"], "argument --seeds: a count of seeds must be at least 1"),
        (["--model=DreamRec,GRU4Rec", "--nproc=2"], "--nproc/--world_size: a comparison runs in a single process"),
        (["--model=DreamRec,DreamRec"], "error: models: each model may appear once"),
        (["--model=DreamRec,GRU4Rec", "--model_config_files=DreamRec"], "argument --model_config_files: expected"),
        (["--model=DreamRec,GRU4Rec", "--model_config_files=DreamRec:"], "argument --model_config_files: expected"),
        (["--model=DreamRec", "--model_config_files=DreamRec:{yaml};"], "argument --model_config_files: expected"),
        (["--model=DreamRec", "--model_config_files=:{yaml}"], "argument --model_config_files: expected MODEL:FILE"),
        (
            ["--model=DreamRec", "--model_config_files=DreamRec:{yaml};DreamRec:{yaml}"],
            "argument --model_config_files: DreamRec is named twice",
        ),
        (
            ["--model=DreamRec,GRU4Rec", "--model_config_files=DreamRec:{yaml} no.yaml"],
            "error: model_config_files: DreamRec: no such file: no.yaml",
        ),
        (
            ["--model=DreamRec,GRU4Rec", "--model_config_files=SASRec:{yaml}"],
            "--model_config_files: SASRec not in --model (DreamRec,GRU4Rec)",
        ),
        (["--model=DreamRec", "--cells=DreamRec"], "argument --cells: expected MODEL:SEED entries separated by ','"),
        (["--model=DreamRec", "--cells=DreamRec:2020,"], "argument --cells: expected MODEL:SEED entries"),
        (["--model=DreamRec", "--cells=DreamRec:x"], "argument --cells: 'DreamRec:x': the seed must be an integer"),
        (
            ["--model=DreamRec", "--cells=SASRec:2020"],
            "error: cells: SASRec:2020: SASRec is not one of the compared models (SequentialPop, DreamRec)\n",
        ),
        (["--model=DreamRec", "--cells=DreamRec:7"], "error: cells: DreamRec:7: 7 is not one of the seeds (2020)\n"),
        (["--model=DreamRec", "--report_only", "--force"], "error: report_only: assembles the report from the stored"),
        (
            ["--model=DreamRec", "--seeds=2", "--report_only"],
            "error: report_only: 4 of 4 cells are not stored yet: SequentialPop:2020, DreamRec:2020, "
            "SequentialPop:2021, DreamRec:2021; nothing written\n",
        ),
    ],
)
def test_script_rejects_bad_comparison_arguments(arguments, message, tmp_path, capsys):
    existing = write_yaml(tmp_path / "own.yaml", {"learning_rate": 0.1})
    arguments = [argument.format(yaml=existing) for argument in arguments]
    try:
        returncode = run_recbole_diffusion.main([*arguments, "--dataset=markov", f"--output_dir={tmp_path}"])
    except SystemExit as exit_from_argparse:
        returncode = exit_from_argparse.code
    assert returncode == 2
    assert message in capsys.readouterr().err


def test_seed_count_starts_at_2020_and_a_list_is_kept():
    assert run_recbole_diffusion.parse_seeds("3") == [2020, 2021, 2022]
    assert run_recbole_diffusion.parse_seeds("7,1") == [7, 1]


def test_model_config_files_flag_reaches_compare_and_a_single_run(tmp_path, monkeypatch):
    own = write_yaml(tmp_path / "own.yaml", {"learning_rate": 0.1})
    other = write_yaml(tmp_path / "other.yaml", {"learning_rate": 0.2})
    assert run_recbole_diffusion.parse_model_config_files(f" DreamRec : {own} {other} ;GRU4Rec:{other}") == {
        "DreamRec": [own, other],
        "GRU4Rec": [other],
    }
    calls = []
    monkeypatch.setattr(run_recbole_diffusion, "compare", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(run_recbole_diffusion, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    shared = f"--config_files={other}"
    assert run_recbole_diffusion.main(["--model=DreamRec,GRU4Rec", shared, f"--model_config_files=GRU4Rec:{own}"]) == 0
    assert run_recbole_diffusion.main(["--model=DreamRec", shared, f"--model_config_files=DreamRec:{own}"]) == 0
    (compare_args, compare_kwargs), (run_args, run_kwargs) = calls
    assert compare_args[3] == [other] and compare_kwargs["model_config_files"] == {"GRU4Rec": [own]}
    assert run_args[0] == "DreamRec" and run_kwargs["config_file_list"] == [other, own]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-model CPU peaks need Linux /proc")
def test_cpu_peak_memory_restarts_for_each_model():
    cpu = torch.device("cpu")
    block = np.ones(50 * 2**20)  # 400 MB, touched
    peak_with_block = peak_memory_mb(cpu)
    del block
    reset_peak_memory(cpu)
    assert peak_memory_mb(cpu) < peak_with_block - 300


def test_general_models_compare_against_pop_and_ease(general_config, tmp_path):
    """General models with RecBole's Pop added and EASE: their one-epoch trainer must validate and save with
    eval_step > 1 and EASE's numpy/scipy state must reload from the checkpoint (two RecBole 1.2.1 bugs the harness
    would hit). The general full sort masks each user's training and validation items: the chance level of
    Recall@10 is the mean over users of 10 / (items - masked items)."""
    config = {
        **general_config,
        "metrics": ["Recall", "NDCG", "ItemCoverage"],
        "topk": [10],
        "valid_metric": "Recall@10",
        "epochs": 2,
        "eval_step": 2,
        "dims_dnn": [32],
        "embedding_size": 8,
    }
    report = compare(["DiffRec", "EASE"], "markov", config_dict=config, output_dir=tmp_path / "results")
    metrics = pd.read_csv(report / "metrics.csv")
    assert list(metrics["model"]) == ["Pop", "DiffRec", "EASE"]
    assert metrics["recall@10"].between(0, 1).all() and metrics["itemcoverage@10"].between(0, 1).all()
    significance = pd.read_csv(report / "significance.csv")
    baseline = best_of(report, ["Pop", "EASE"], "recall@10")
    assert set(significance["model"]) == {"DiffRec", "Pop", "EASE"} - {baseline}
    assert set(significance["baseline"]) == {baseline}
    sequences = markov_sequences()
    items = len(set().union(*sequences.values()))
    masked = [len(set(walk)) - 1 for walk in sequences.values()]  # all but the test item, even if it recurs
    chance = pd.read_csv(report / "chance.csv")
    assert chance["recall@10"].iloc[0] == pytest.approx(np.mean([10 / (items - m) for m in masked]), rel=1e-12)
    assert chance["n_users"].iloc[0] == len(sequences) and "itemcoverage@10" not in chance
    assert not (report / "inference_steps.csv").exists()  # DiffRec has no DDIM sampler to sweep
