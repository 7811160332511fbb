"""What a cheaper validation sampler changes: one training, validated after every epoch with both samplers.

    python benchmarks/valid_sampler.py --model=DiffuRec --dataset=ml-100k --epochs=30 --valid_inference_steps=5 \
        [--output=benchmarks/results/valid-sampler/DiffuRec-ml-100k] [--<config key>=<value> ...]

The model trains once (the plugin's trainer, seed from the config). After every epoch the validation split is scored
twice, with the test's sampler (``inference_steps``, by default the full DDPM chain) and with DDIM in
``valid_inference_steps`` steps; each validation runs in a fork of torch's random state (the trainer's
``_valid_epoch``), so the training is the one either setting alone would run. For each sampler, RecBole's early
stopping rule (``stopping_step``) on ``valid_metric`` gives the epoch where the run would stop and the checkpoint it
would keep; that checkpoint is tested with ``inference_steps``, re-seeded, as ``recbole_diffusion.run`` tests it.
Writes ``epochs.csv`` (per epoch: training seconds, each sampler's validation score and seconds) and ``summary.md``.
``--epochs=0`` only times one validation of the untrained model with each sampler (for sizes too slow to train here).
"""

import argparse
import copy
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recbole.utils import early_stopping, init_seed  # noqa: E402

from benchmarks.parity.harness import argv  # noqa: E402
from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer  # noqa: E402
from recbole_diffusion.model.sampling import ReverseChainSampling  # noqa: E402
from recbole_diffusion.validation import is_positive_int  # noqa: E402

TEST_SAMPLER = "test sampler"


def parse_args(arguments):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--valid_inference_steps", type=int, required=True, help="DDIM steps of the cheap sampler")
    parser.add_argument("--output", default=None)
    parser.add_argument("--config_files", default="", help="space-separated yaml files over the model and dataset yaml")
    args, rest = parser.parse_known_args(arguments)
    if not is_positive_int(args.valid_inference_steps):
        parser.error(f"--valid_inference_steps must be a positive int, got {args.valid_inference_steps}")
    if args.epochs < 0:
        parser.error(f"--epochs must be 0 (time one validation only) or a positive int, got {args.epochs}")
    config_args = [item for item in rest if item.startswith("--") and "=" in item]
    if len(config_args) != len(rest):
        parser.error(f"config keys are given as --key=value, got {' '.join(sorted(set(rest) - set(config_args)))}")
    return args, config_args


class SamplerRun:
    """The early-stopping bookkeeping of one validation sampler (RecBole's rule, as its Trainer.fit applies it)."""

    def __init__(self, name, steps, bigger):
        self.name, self.steps, self.bigger = name, steps, bigger
        self.best_score, self.best_epoch, self.best_state = None, None, None
        self.cur_step, self.stop_epoch = 0, None

    def after_validation(self, epoch, score, model, stopping_step):
        """Track ``score`` of ``epoch``; keep the model's state when it is the best so far."""
        if self.stop_epoch is not None:
            return
        best = self.best_score if self.best_score is not None else (-float("inf") if self.bigger else float("inf"))
        best, self.cur_step, stop, improved = early_stopping(score, best, self.cur_step, stopping_step, self.bigger)
        if improved:
            self.best_score, self.best_epoch = best, epoch
            self.best_state = copy.deepcopy(model.state_dict())
        if stop:
            self.stop_epoch = epoch


def main(arguments=None):
    arguments = sys.argv[1:] if arguments is None else arguments
    args, config_args = parse_args(arguments)
    with argv(["valid_sampler", *config_args]):
        config = Config(
            model=args.model,
            dataset=args.dataset,
            config_file_list=args.config_files.split() or None,
            config_dict={"eval_step": 1, "show_progress": False},
        )
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if not isinstance(model, ReverseChainSampling):
        raise SystemExit(f"error: --model: a model with a reverse chain (valid_inference_steps), got {args.model}")
    model.diffusion.check_inference_steps(args.valid_inference_steps, "--valid_inference_steps")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    bigger = config["valid_metric_bigger"]
    runs = [
        SamplerRun(TEST_SAMPLER, None, bigger),
        SamplerRun(f"DDIM {args.valid_inference_steps} steps", args.valid_inference_steps, bigger),
    ]
    rows = []
    for epoch in range(max(args.epochs, 1)):
        start = time.perf_counter()
        if args.epochs:
            trainer._train_epoch(train_data, epoch)
        row = {"epoch": epoch, "train_seconds": time.perf_counter() - start}
        for run in runs:
            trainer.valid_inference_steps = run.steps
            start = time.perf_counter()
            score, _ = trainer._valid_epoch(valid_data)
            row[f"{run.name} score"], row[f"{run.name} seconds"] = score, time.perf_counter() - start
            run.after_validation(epoch, score, model, config["stopping_step"])
        rows.append(row)
        print(row, flush=True)
        if all(run.stop_epoch is not None for run in runs):
            break
    output = Path(args.output or ROOT / "benchmarks" / "results" / "valid-sampler" / f"{args.model}-{args.dataset}")
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "epochs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tests = {run.name: _test(trainer, model, run, test_data, config) for run in runs} if args.epochs else {}
    (output / "summary.md").write_text(summary(args, arguments, config, runs, rows, tests))
    print((output / "summary.md").read_text())


def _test(trainer, model, run, test_data, config):
    """Test metrics of ``run``'s kept checkpoint with the test sampler (re-seeded)."""
    model.load_state_dict(run.best_state)
    init_seed(config["seed"], config["reproducibility"])
    return dict(trainer.evaluate(test_data, load_best_model=False))


def shown_argument(item):
    """``item`` as written into summary.md: an absolute path (of this machine) as ``<folder>/<its name>``."""
    key, _, value = item.partition("=")
    paths = [f"<folder>/{Path(path).name}" if Path(path).is_absolute() else path for path in value.split(" ")]
    return f"{key}={' '.join(paths)}" if value else item


def summary(args, arguments, config, runs, rows, tests):
    """``summary.md``: per sampler the kept checkpoint, the stop, the validation cost and the test metrics (the
    validation cost alone when nothing was trained)."""

    def row_of(label, cells):
        return f"| {label} | " + " | ".join(cells) + " |"

    header = "| | " + " | ".join(run.name for run in runs) + " |\n|---|" + "---:|" * len(runs) + "\n"
    seconds = [f"{sum(row[f'{run.name} seconds'] for row in rows) / len(rows):.2f}" for run in runs]
    lines = [row_of("validation seconds (mean per validation)", seconds)]
    if tests:
        lines += [
            row_of("kept checkpoint (epoch, from 0)", [str(run.best_epoch) for run in runs]),
            row_of("early stop after epoch", ["-" if run.stop_epoch is None else str(run.stop_epoch) for run in runs]),
            row_of(f"best valid {config['valid_metric']}", [f"{run.best_score:.4f}" for run in runs]),
        ]
        metrics = list(tests[runs[0].name])
        lines += [row_of(f"test {metric}", [f"{tests[run.name][metric]:.4f}" for run in runs]) for metric in metrics]
        train_seconds = sum(row["train_seconds"] for row in rows) / len(rows)
        training = (
            f"One training ({len(rows)} epochs, {train_seconds:.1f} s per epoch), validated after every epoch with "
            f"both samplers; early stopping: stopping_step={config['stopping_step']} on {config['valid_metric']} "
            "(-: no stop within the budget)."
        )
    else:
        training = "Nothing trained (--epochs=0): one validation of the untrained model with each sampler, timed."
    shown = [shown_argument(item) for item in arguments]
    return (
        f"# Validation sampler: {args.model} on {args.dataset}\n\n{header}" + "\n".join(lines) + "\n\n"
        f"- Command: `python benchmarks/valid_sampler.py {' '.join(shown)}` "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}).\n"
        f"- Test sampler: inference_steps={config['inference_steps']} (None: the full DDPM chain of "
        f"{config['diffusion_steps']} steps); both checkpoints are tested with it.\n"
        f"- {training}\n"
    )


if __name__ == "__main__":
    main()
