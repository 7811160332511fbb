"""Same seed, same metrics? Train models briefly at full metric precision, and compare two such runs.

A refactor must not change what a model computes. ``run`` trains each model for a short budget with a fixed seed
(RecBole's reproducibility on) and stores its validation and test metrics to 10 decimal places; run it on the code
before and after a change, then ``diff`` the two files: a metric that moved is a changed behaviour.

    python benchmarks/same_metrics.py run --output=before.json --dataset=ml-100k --epochs=1
    python benchmarks/same_metrics.py run --output=before.json --models=DiffuRec --set hidden_size=32
    python benchmarks/same_metrics.py diff before.json after.json

General models (DiffRec family, DDRM) run on ``properties/protocol/general.yaml``, the others on the dataset's
protocol (``dataset_configs/<dataset>.yaml`` where it exists). ``--set key=value`` (a YAML value) applies to every
model; ``--models`` picks models (default: every plugin model). Runs one model after another in this process:
time them alone, with ``OMP_NUM_THREADS`` set.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEQUENTIAL_MODELS = ("DreamRec", "DiffuRec", "DiQDiff", "DimeRec", "DiffDiv", "DiffRec2", "DiffuASR")
GENERAL_MODELS = ("DiffRec", "TDiffRec", "LDiffRec", "LTDiffRec", "DDRM")
DECIMALS = 10


def config_files(model, dataset):
    """The protocol files a model runs on: the general protocol, or the dataset's config when there is one."""
    if model in GENERAL_MODELS:
        return [str(ROOT / "properties" / "protocol" / "general.yaml")]
    dataset_config = ROOT / "dataset_configs" / f"{dataset}.yaml"
    return [str(dataset_config)] if dataset_config.exists() else []


def parse_settings(settings):
    """``["key=value", ...]`` into a dict, each value read as YAML."""
    parsed = {}
    for setting in settings:
        key, separator, value = setting.partition("=")
        if not separator or not key:
            raise SystemExit(f"error: --set: key=value, got {setting!r}")
        parsed[key] = yaml.safe_load(value)
    return parsed


def run(models, dataset, epochs, settings, output):
    from recbole_diffusion.quick_start import run_recbole_diffusion

    results = json.loads(Path(output).read_text()) if Path(output).exists() else {}
    for model in models:
        config_dict = {
            "epochs": epochs,
            "seed": 2020,
            "reproducibility": True,
            "metric_decimal_place": DECIMALS,
            "show_progress": False,
            "state": "WARNING",
            **settings,
        }
        start = time.perf_counter()
        result = run_recbole_diffusion(model, dataset, config_files(model, dataset), config_dict, saved=True)
        results[model] = {
            "valid": {key: float(value) for key, value in result["best_valid_result"].items()},
            "test": {key: float(value) for key, value in result["test_result"].items()},
            "seconds": round(time.perf_counter() - start, 1),
            "settings": {"dataset": dataset, "epochs": epochs, **settings},
        }
        Path(output).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"{model}: test {results[model]['test']} ({results[model]['seconds']} s)", flush=True)


def diff(before_file, after_file):
    """Print a markdown table of every model in both files; return the number of models whose metrics moved."""
    before, after = (json.loads(Path(name).read_text()) for name in (before_file, after_file))
    moved = 0
    print("| model | split | metric | before | after | same |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    for model in sorted(set(before) & set(after)):
        if before[model]["settings"] != after[model]["settings"]:
            settings = f"{before[model]['settings']} vs {after[model]['settings']}"
            print(f"| {model} | | settings differ: {settings} | | | NO |")
            moved += 1
            continue
        model_moved = False
        for split in ("valid", "test"):
            for metric in sorted(before[model][split]):
                old, new = before[model][split][metric], after[model][split].get(metric, math.nan)
                same = old == new
                model_moved |= not same
                values = f"{old:.{DECIMALS}f} | {new:.{DECIMALS}f}"
                print(f"| {model} | {split} | {metric} | {values} | {'yes' if same else 'NO'} |")
        moved += model_moved
    for model in sorted(set(before) ^ set(after)):
        print(f"| {model} | | only in {'before' if model in before else 'after'} | | | |")
    return moved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train each model briefly and store its metrics")
    run_parser.add_argument("--output", required=True, help="json file (models already in it are replaced)")
    run_parser.add_argument("--models", default=",".join(SEQUENTIAL_MODELS + GENERAL_MODELS))
    run_parser.add_argument("--dataset", default="ml-100k")
    run_parser.add_argument("--epochs", type=int, default=1)
    run_parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config value")
    diff_parser = commands.add_parser("diff", help="compare two stored runs")
    diff_parser.add_argument("before")
    diff_parser.add_argument("after")
    args = parser.parse_args(argv)
    if args.command == "run":
        sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value of sys.argv: none of ours are config keys
        run(args.models.split(","), args.dataset, args.epochs, parse_settings(args.set), args.output)
        return 0
    return 1 if diff(args.before, args.after) else 0


if __name__ == "__main__":
    sys.exit(main())
