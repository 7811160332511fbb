"""Train and evaluate a plugin or RecBole model: ``python run_recbole_diffusion.py --model=DreamRec --dataset=ml-1m``.

Any other ``--key=value`` is a RecBole/plugin config parameter (e.g. ``--data_path=../shared/datasets``,
``--epochs=50``, ``--inference_steps=20``).
"""

import argparse
import sys

from recbole_diffusion import DatasetNotFoundError, ModelNotFoundError, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", default="DreamRec", help="plugin or RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (ml-100k ships inside recbole)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml config files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (distributed run)")
    parser.add_argument("--ip", default="localhost", help="rendezvous address of a distributed run")
    parser.add_argument("--port", default="5678", help="rendezvous port of a distributed run")
    parser.add_argument("--world_size", type=int, default=-1, help="processes over all machines")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run(
            args.model,
            args.dataset,
            config_file_list=config_file_list,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except (DatasetNotFoundError, ModelNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
