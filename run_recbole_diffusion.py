"""Train and evaluate a plugin or RecBole model: ``python run_recbole_diffusion.py --model=DreamRec --dataset=ml-1m``.

Several models (``--model=DreamRec,SASRec,GRU4Rec``) or ``--seeds`` run the comparison harness instead
(:func:`recbole_diffusion.compare.compare`): every model on the same split, each seed, a report under
``--output_dir`` (default ``results``). ``--seeds=3`` means the seeds 2020, 2021, 2022; ``--seeds=1,7`` names them.
Each (model, seed) cell is stored when done: the same command again continues an interrupted comparison.
``--cells=DreamRec:2020,SASRec:2021`` runs only those cells, ``--report_only`` assembles the report from the stored
cells, ``--force`` recomputes the cells stored with another config.

``--resume=<checkpoint>`` continues an interrupted single run from its last finished epoch (give the same options).
A config key that no configuration layer knows is refused unless ``--allow_unknown_keys``; an invalid value stops the
command with one line, ``error: ...``, and exit status 2 (``--debug`` shows the traceback).

``--config_files="a.yaml b.yaml"`` reach every model; ``--model_config_files="DiffRec:d.yaml;TDiffRec:t.yaml u.yaml"``
gives a model of ``--model`` its own files, read after ``--config_files`` (in a comparison or a single run).

Any other ``--key=value`` is a RecBole/plugin config parameter (e.g. ``--data_path=../shared/datasets``,
``--epochs=50``, ``--inference_steps=20``).
"""

import argparse
import sys

from recbole_diffusion import run
from recbole_diffusion.cli import exit_status
from recbole_diffusion.compare import compare
from recbole_diffusion.preflight import ALLOW_UNKNOWN_KEYS

FIRST_SEED = 2020
# options without a value, which RecBole's command-line reader warns about
FLAGS = ("--report_only", "--force", "--debug", f"--{ALLOW_UNKNOWN_KEYS}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", "-m", default="DreamRec", help="plugin or RecBole model name, or a comma list")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (ml-100k ships inside recbole)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml config files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (distributed run)")
    parser.add_argument("--ip", default="localhost", help="rendezvous address of a distributed run")
    parser.add_argument("--port", default="5678", help="rendezvous port of a distributed run")
    parser.add_argument("--world_size", type=int, default=-1, help="processes over all machines")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    parser.add_argument(
        "--seeds", type=parse_seeds, default=None, help="comparison: a number of seeds from 2020, or a comma list"
    )
    parser.add_argument("--output_dir", default="results", help="comparison: where the report folder goes")
    parser.add_argument(
        "--model_config_files",
        type=parse_model_config_files,
        default={},
        help="yaml files of single models, read after --config_files: 'MODEL:a.yaml b.yaml;MODEL2:c.yaml'",
    )
    parser.add_argument(
        "--cells", type=parse_cells, default=None, help="comparison: run only these cells, 'MODEL:SEED,MODEL:SEED'"
    )
    parser.add_argument(
        "--report_only", action="store_true", help="comparison: train nothing, write the report from the stored cells"
    )
    parser.add_argument(
        "--force", action="store_true", help="comparison: recompute the cells stored with another config"
    )
    parser.add_argument("--resume", default=None, help="single run: continue an interrupted run from this checkpoint")
    parser.add_argument(
        f"--{ALLOW_UNKNOWN_KEYS}", action="store_true", help="accept config keys that no configuration layer knows"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    args, _ = parser.parse_known_args(argv)
    args.models = [name.strip() for name in args.model.split(",")]
    strangers = [name for name in args.model_config_files if name not in args.models]
    if strangers:
        parser.error(f"--model_config_files: {', '.join(strangers)} not in --model ({args.model})")
    args.compare = (
        len(args.models) > 1 or args.seeds is not None or args.cells is not None or args.report_only or args.force
    )
    if args.compare and (args.nproc != 1 or args.world_size != -1):
        parser.error("--nproc/--world_size: a comparison runs in a single process")
    if args.compare and args.resume:
        parser.error("--resume: continues a single run; a comparison resumes by running its command again")
    return args


def parse_seeds(text):
    """``"3"`` -> [2020, 2021, 2022]; ``"1,7"`` -> [1, 7]."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a comma list of integers, got {text!r}") from None
    if "," in text:
        return numbers
    if numbers[0] < 1:
        raise argparse.ArgumentTypeError(f"a count of seeds must be at least 1, got {text!r}")
    return list(range(FIRST_SEED, FIRST_SEED + numbers[0]))


def parse_cells(text):
    """``"DreamRec:2020,SASRec:2021"`` -> [("DreamRec", 2020), ("SASRec", 2021)]."""
    cells = []
    for entry in text.split(","):
        name, colon, seed = (part.strip() for part in entry.partition(":"))
        if not colon or not name or not seed:
            raise argparse.ArgumentTypeError(f"expected MODEL:SEED entries separated by ',', got {entry!r} in {text!r}")
        try:
            cells.append((name, int(seed)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{entry!r}: the seed must be an integer") from None
    return cells


def parse_model_config_files(text):
    """``"DiffRec:a.yaml;TDiffRec:b.yaml c.yaml"`` -> {"DiffRec": ["a.yaml"], "TDiffRec": ["b.yaml", "c.yaml"]}.

    ``MODEL:FILE`` rather than ``MODEL=FILE``: RecBole's own command-line reader warns about a ``--key=value`` with a
    second ``=``.
    """
    files_of = {}
    for entry in text.split(";"):
        name, colon, files = entry.partition(":")
        name, files = name.strip(), files.split()
        if not colon or not name or not files:
            raise argparse.ArgumentTypeError(
                f"expected MODEL:FILE [FILE ...] entries separated by ';', got {entry!r} in {text!r}"
            )
        if name in files_of:
            raise argparse.ArgumentTypeError(f"{name} is named twice in {text!r}")
        files_of[name] = files
    return files_of


def main(argv=None):
    args = parse_args(argv)
    config_file_list = args.config_files.split() if args.config_files else []
    config_dict = {ALLOW_UNKNOWN_KEYS: True} if args.allow_unknown_keys else None
    sys.argv = [argument for argument in sys.argv if argument not in FLAGS]

    def compare_models():
        folder = compare(
            args.models,
            args.dataset,
            args.seeds or [FIRST_SEED],
            config_file_list,
            config_dict,
            output_dir=args.output_dir,
            model_config_files=args.model_config_files,
            cells=args.cells,
            report_only=args.report_only,
            force=args.force,
        )
        print(f"cells stored in {folder / 'cells'}" if args.cells else f"comparison report written to {folder}")

    def run_model():
        run(
            args.model,
            args.dataset,
            config_file_list=[*config_file_list, *args.model_config_files.get(args.model, [])] or None,
            config_dict=config_dict,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
            resume=args.resume,
        )

    return exit_status(compare_models if args.compare else run_model, args.debug)


if __name__ == "__main__":
    sys.exit(main())
