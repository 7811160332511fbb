"""The statistics of a comparison: per-user values of the top-K metrics (from RecBole's own metric code), the exact
chance level of every accuracy metric under a uniformly random ranking, the best baseline and the paired tests of
every model against it."""

import inspect

import numpy as np
import pandas as pd
from recbole.evaluator.base_metric import TopkMetric
from recbole.evaluator.register import metrics_dict, smaller_metrics
from scipy import stats

ACCURACY_METRICS = ("hit", "recall", "ndcg", "mrr", "precision")


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


def per_user_mean(report_dir, model, seeds):
    """Per-user values of ``model`` averaged over the seeds, indexed by user id (users tested in every seed), from
    the ``per_user/<model>_seed<seed>.npz`` files of ``report_dir``."""
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
    return means.idxmin() if smaller_is_better(valid_metric) else means.idxmax()


def smaller_is_better(metric):
    """Whether a lower value of ``metric`` (e.g. ``giniindex@10``) is better."""
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
