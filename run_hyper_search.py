"""Search a model's hyperparameters: ``python run_hyper_search.py --model=DreamRec --dataset=ml-100k``.

The space is the model's shipped ``properties/hyper/<Model>.hyper`` unless ``--params_file`` names another file in
RecBole's .hyper format. ``--algo``: ``exhaustive`` (the grid, default), ``random`` or ``bayes``; ``--max_evals`` caps
the trials. Every trial trains and tests like run_recbole_diffusion.py; all trials and the best parameters go to
``--output_file`` (default ``results/<dataset>/hyper-<Model>-<time>.json``) and to the log. Any other
``--key=value`` is a fixed config parameter of every trial (e.g. ``--epochs=50``). Needs the ``tune`` extra
(hyperopt): ``pip install -e ".[tune]"``.
"""

import argparse
import json
import sys

from recbole_diffusion import DatasetNotFoundError, ModelNotFoundError
from recbole_diffusion.hyper_search import ALGOS, DEFAULT_EARLY_STOP, HyperSearchError, hyper_search


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
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    config_file_list = args.config_files.split() if args.config_files else None
    try:
        report_file = hyper_search(
            args.model,
            args.dataset,
            params_file=args.params_file,
            algo=args.algo,
            max_evals=args.max_evals,
            early_stop=args.early_stop,
            config_file_list=config_file_list,
            output_file=args.output_file,
        )
    except (HyperSearchError, DatasetNotFoundError, ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = json.loads(report_file.read_text())
    print(f"best parameters: {report['best_params']} (valid {report['valid_metric']}: {report['best_valid_score']})")
    print(f"all {len(report['trials'])} trials: {report_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
