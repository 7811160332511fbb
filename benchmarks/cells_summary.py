"""One table of the cells stored so far in one or more comparison folders, finished or not.

    python benchmarks/cells_summary.py <comparison folder> [<comparison folder> ...] [--output=summary.md]

A comparison folder is ``<output_dir>/<dataset>/<models>/`` of ``compare`` (its ``cells/`` holds one stored result
per model and seed). Per comparison (named by its output folder), dataset and model: the seeds stored, the mean test
value of the comparison's ``valid_metric`` and of a second metric (:func:`second_metric`), the epochs trained and the
tested checkpoint's epoch,
the training seconds per epoch and hours per seed, and the hardware. A model without stored cells is listed with
"not stored yet", so a partial run shows what is missing.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def comparison_models(folder):
    """The models of the comparison in ``folder``: its name is the models joined by '-' (popularity model first)."""
    return Path(folder).name.split("-")


def stored_records(folder):
    """``{model: [cell.json content, ...]}`` of the cells stored in ``folder/cells``."""
    records = {}
    for path in sorted(Path(folder).glob("cells/*/result/cell.json")):
        record = json.loads(path.read_text())
        records.setdefault(record["model"], []).append(record)
    return records


def second_metric(valid_metric, row):
    """The metric shown beside ``valid_metric`` (e.g. ``ndcg@10``): NDCG at the same cut-off for any other valid
    metric, else Hit (or Recall) at that cut-off; ``None`` when the row has none of them."""
    name, _, cutoff = valid_metric.partition("@")
    candidates = ["hit", "recall"] if name == "ndcg" else ["ndcg"]
    return next((f"{metric}@{cutoff}" for metric in candidates if f"{metric}@{cutoff}" in row), None)


def summary_rows(folder):
    """One row per model of the comparison in ``folder`` (see the module docstring)."""
    records = stored_records(folder)
    comparison, dataset = Path(folder).parents[1].name, Path(folder).parent.name
    rows = []
    for model in comparison_models(folder):
        cells = records.get(model, [])
        if not cells:
            rows.append([comparison, dataset, model, "not stored yet"] + [""] * 6)
            continue
        valid_metric = cells[0]["config"]["valid_metric"].lower()
        second = second_metric(valid_metric, cells[0]["row"])
        rows.append(
            [
                comparison,
                dataset,
                model,
                ", ".join(str(cell["seed"]) for cell in cells),
                f"{valid_metric} {_mean(cells, valid_metric):.4f}",
                f"{second} {_mean(cells, second):.4f}" if second else "",
                _epochs(cells),
                f"{_mean(cells, 'train_seconds_per_epoch'):.2f}",
                f"{_mean(cells, 'train_hours'):.3f}" if "train_hours" in cells[0]["row"] else "",
                ", ".join(sorted({str(cell["row"].get("hardware", "")) for cell in cells})),
            ]
        )
    return rows


def _mean(cells, column):
    return float(np.mean([cell["row"][column] for cell in cells]))


def _epochs(cells):
    if "epochs_trained" not in cells[0]["row"]:
        return ""
    return f"{_mean(cells, 'epochs_trained'):.0f} ({_mean(cells, 'best_epoch'):.0f})"


def markdown(rows):
    header = [
        "comparison",
        "dataset",
        "model",
        "seeds",
        "valid metric (test)",
        "second metric",
        "epochs (best)",
        "s/epoch",
        "train h/seed",
        "hardware",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="comparison folders (<output_dir>/<dataset>/<models>)")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    args = parser.parse_args(arguments)
    rows = [row for folder in args.folders if Path(folder).is_dir() for row in summary_rows(folder)]
    table = markdown(rows)
    if args.output:
        Path(args.output).write_text(table)
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
