"""Search a model's hyperparameters: ``python run_hyper_search.py --model=DreamRec --dataset=ml-100k``.

The space is the model's shipped ``properties/hyper/<Model>.hyper`` unless ``--params_file`` names another file in
RecBole's .hyper format. ``--algo``: ``exhaustive`` (the grid, default), ``random`` or ``bayes``; ``--max_evals`` caps
the trials. Every trial trains and tests like run_recbole_diffusion.py; all trials and the best parameters go to
``--output_file`` (default ``results/<dataset>/hyper-<Model>-<time>.json``) and to the log. Any other
``--key=value`` is a fixed config parameter of every trial (e.g. ``--epochs=50``). Needs the ``tune`` extra
(hyperopt): ``pip install -e ".[tune]"``. Every setting and every point of the space is checked before the first
trial; an invalid one stops the search with one line, ``error: ...``, and exit status 2 (``--debug``: traceback).
"""

import argparse
import json
import sys

from recbole_diffusion.cli import exit_status
from recbole_diffusion.hyper_search import ALGOS, DEFAULT_EARLY_STOP, hyper_search
from recbole_diffusion.preflight import ALLOW_UNKNOWN_KEYS

# options without a value, which RecBole's command-line reader warns about
FLAGS = ("--debug", f"--{ALLOW_UNKNOWN_KEYS}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", required=True, help="plugin or RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (ml-100k ships inside recbole)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml config files")
    parser.add_argument("--params_file", default=None, help="search space (.hyper); default the model's shipped one")
    parser.add_argument("--algo", default="exhaustive", choices=ALGOS, help="search algorithm")
    parser.add_argument("--max_evals", type=int, default=None, help="at most this many trials")
    parser.add_argument(
        "--early_stop", type=int, default=DEFAULT_EARLY_STOP, help="stop after this many trials without improvement"
    )
    parser.add_argument("--output_file", default=None, help="JSON report of all trials and the best parameters")
    parser.add_argument(
        f"--{ALLOW_UNKNOWN_KEYS}", action="store_true", help="accept config keys that no configuration layer knows"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    config_file_list = args.config_files.split() if args.config_files else None
    sys.argv = [argument for argument in sys.argv if argument not in FLAGS]

    def search():
        report_file = hyper_search(
            args.model,
            args.dataset,
            params_file=args.params_file,
            algo=args.algo,
            max_evals=args.max_evals,
            early_stop=args.early_stop,
            config_file_list=config_file_list,
            config_dict={ALLOW_UNKNOWN_KEYS: True} if args.allow_unknown_keys else None,
            output_file=args.output_file,
        )
        report = json.loads(report_file.read_text())
        best = f"{report['best_params']} (valid {report['valid_metric']}: {report['best_valid_score']})"
        print(f"best parameters: {best}")
        print(f"all {len(report['trials'])} trials: {report_file}")

    return exit_status(search, args.debug)


if __name__ == "__main__":
    sys.exit(main())
