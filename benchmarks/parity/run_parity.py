"""Parity run: a model trained by the plugin and by its authors' code on the plugin's split, scored alike.

    python benchmarks/parity/run_parity.py --model=DreamRec --official=<official snapshot> --dataset=ml-100k \
        --seeds=3 --epochs=5 [--output=benchmarks/results/parity/DreamRec-ml-100k] [--<hyperparameter>=<value> ...]

Hyperparameters are the adapter's shared ``DEFAULTS`` (e.g. ``--learning_rate=0.001``, ``--detach_target=True``);
both sides get the same values. Seeds are 100, 101, ... (the official default seed first). Writes ``metrics.csv`` (one
row per side and seed, written after each) and ``table.md`` (mean ± std over seeds per side) into the output folder.
``--resume`` keeps the rows of an interrupted run in that folder (same hyperparameters, recorded in ``run.json``) and
computes only the missing (side, seed) rows.
"""

import argparse
import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.parity import harness  # noqa: E402

FIRST_SEED = 100
# The table's note on evaluation, unless the adapter has its own EVALUATION_NOTE.
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); test split of the "
    "plugin, full ranking by the plugin's evaluator, padding item masked. Metric rows: model.eval(); dropout_*: "
    "dropout left on while scoring (the official evaluate never calls model.eval()). norm_ratio: "
    "collapse.popularity_norm_ratio of the item table (popular / rare quarter of training targets)."
)


def parse_value(text, default):
    if isinstance(default, bool):
        if text not in ("True", "False"):
            raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
        return text == "True"
    return type(default)(ast.literal_eval(text)) if not isinstance(default, str) else text


def parse_args(arguments):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--official", required=True, help="folder of the official snapshot")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", default=None)
    parser.add_argument("--sides", default="plugin,official", help="comma-separated: plugin, official")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of the output folder's run")
    args, rest = parser.parse_known_args(arguments)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    adapter = harness.load_adapter(args.model)
    hparams = dict(adapter.DEFAULTS)
    for item in rest:
        key, _, value = item.lstrip("-").partition("=")
        if key not in hparams or not value:
            parser.error(f"unknown option {item!r}; hyperparameters: {', '.join(hparams)}")
        hparams[key] = parse_value(value, adapter.DEFAULTS[key])
    return args, adapter, hparams


def official_commit(official_dir):
    """The snapshot's commit: the first line of a file ``COMMIT`` in the folder, else ``git rev-parse HEAD`` when the
    folder is the top of a git checkout (not merely inside one), else unknown."""
    folder = Path(official_dir)
    if (folder / "COMMIT").is_file():
        return (folder / "COMMIT").read_text().split("\n")[0].strip()
    if (folder / ".git").exists():
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.strip()
    return "unknown"


def shown_argument(item, commit):
    """``item`` as written into table.md: no path of this machine (the official folder, an absolute output)."""
    if item.startswith("--official"):
        return f"--official=<official snapshot at commit {commit[:7]}>"
    if item.startswith("--output") and Path(item.partition("=")[2]).is_absolute():
        return "--output=<output folder>"
    return item


def finished_rows(output, hparams, dataset, defaults=None):
    """The rows of ``output/metrics.csv`` of an earlier run of the same ``dataset`` and ``hparams`` (``run.json``);
    a folder of another run is refused with the keys that differ. A key of ``defaults`` (the adapter's ``DEFAULTS``)
    that the earlier ``run.json`` lacks was added to the adapter since: that run had its default value."""
    run_file, metrics_file = output / "run.json", output / "metrics.csv"
    if not run_file.is_file() or not metrics_file.is_file():
        return []
    earlier = {**(defaults or {}), **json.loads(run_file.read_text())}
    wanted = {"dataset": dataset, **hparams}
    differing = sorted(key for key in {**earlier, **wanted} if earlier.get(key) != wanted.get(key))
    if differing:
        raise SystemExit(f"error: --resume: {output} holds a run with other values of {', '.join(differing)}")
    with open(metrics_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {
            key: value if key == "side" else int(value) if key == "seed" else float(value) if value else None
            for key, value in row.items()
        }
        for row in rows
    ]


def main(arguments=None):
    arguments = sys.argv[1:] if arguments is None else arguments
    args, adapter, hparams = parse_args(arguments)
    sides = args.sides.split(",")
    output = Path(args.output or ROOT / "benchmarks" / "results" / "parity" / f"{adapter.MODEL}-{args.dataset}")
    output.mkdir(parents=True, exist_ok=True)
    config_files, metrics, scorings = harness.adapter_protocol(adapter)
    columns = harness.columns(metrics, scorings)
    config, train_data, _, test_data = harness.build_split(
        adapter.MODEL, args.dataset, {**adapter.plugin_config(hparams), "seed": FIRST_SEED}, config_files, metrics
    )
    rows = finished_rows(output, hparams, args.dataset, adapter.DEFAULTS) if args.resume else []
    (output / "run.json").write_text(json.dumps({"dataset": args.dataset, **hparams}, indent=1) + "\n")
    done = {(row["side"], row["seed"]) for row in rows}
    for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
        for side in sides:
            if (side, seed) in done:
                continue
            if side == "plugin":
                row = harness.run_plugin_side(config, train_data, test_data, seed, metrics, scorings, adapter)
            else:
                row = harness.run_official_side(adapter, args.official, config, train_data, test_data, hparams, seed)
            rows.append({"side": side, "seed": seed, **row})
            print(
                {key: row[key] for key in (*metrics[:2], "norm_ratio", "train_seconds_per_epoch")},
                side,
                seed,
                flush=True,
            )
            harness.write_metrics(rows, output / "metrics.csv", columns)
    commit = official_commit(args.official)
    shown = [shown_argument(item, commit) for item in arguments if item != "--resume"]
    command = " ".join(["python benchmarks/parity/run_parity.py", *shown])
    modified = [text for key, text in adapter.MODIFICATIONS.items() if hparams.get(key)]
    notes = [
        f"Official code: {adapter.OFFICIAL_REPOSITORY} at commit {commit}.",
        f"Command: `{command}` (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}).",
        "Hyperparameters (both sides): " + ", ".join(f"{key}={value}" for key, value in hparams.items()) + ".",
        getattr(adapter, "EVALUATION_NOTE", EVALUATION_NOTE),
    ] + [f"Official side: {text}." for text in modified]
    rows = [row for row in rows if row["side"] in sides and row["seed"] < FIRST_SEED + args.seeds]
    table = harness.markdown_table(rows, sides, columns)
    (output / "table.md").write_text(
        f"# Parity: {adapter.MODEL} on {args.dataset}\n\n{table}\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    )
    print((output / "table.md").read_text())
    return rows


if __name__ == "__main__":
    main()
