"""Seconds per epoch: the backbone pretraining of L-DiffRec and DDRM against RecBole's own LightGCN training.

    OMP_NUM_THREADS=1 python benchmarks/pretrain_speed.py --dataset=ml-100k --epochs=3

Both train RecBole's LightGCN (64 dimensions, batch 2048, Adam 0.001) with BPR on the same training split of the
general protocol (``properties/protocol/general.yaml``): once with RecBole's ``Trainer`` (its negative-sampling
dataloader), once with :func:`recbole_diffusion.pretrain.pretrained_embeddings` (uncached). ``--n_layers`` sets the
LightGCN layers (L-DiffRec's default 2, DDRM's 3). Prints the mean seconds per epoch of each.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole.model.general_recommender import LightGCN  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_diffusion import Config, create_dataset, data_preparation  # noqa: E402
from recbole_diffusion.pretrain import pretrained_embeddings  # noqa: E402

GENERAL_PROTOCOL = str(ROOT / "properties" / "protocol" / "general.yaml")


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n_layers", type=int, default=2)
    args = parser.parse_args(arguments)
    settings = {"epochs": args.epochs, "show_progress": False, "state": "WARNING", "n_layers": args.n_layers}
    config = Config(model="LightGCN", dataset=args.dataset, config_file_list=[GENERAL_PROTOCOL], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    trainer = Trainer(config, LightGCN(config, train_data._dataset).to(config["device"]))
    start = time.perf_counter()
    for epoch in range(args.epochs):
        trainer._train_epoch(train_data, epoch)
    recbole_seconds = (time.perf_counter() - start) / args.epochs

    with tempfile.TemporaryDirectory() as folder:
        model_config = Config(
            model="LDiffRec",
            dataset=args.dataset,
            config_file_list=[GENERAL_PROTOCOL],
            config_dict={**settings, "checkpoint_dir": folder, "pretrain_epochs": args.epochs},
        )
        model_config.final_config_dict["pretrain_n_layers"] = args.n_layers
        start = time.perf_counter()
        pretrained_embeddings(model_config, train_data._dataset)
        plugin_seconds = (time.perf_counter() - start) / args.epochs
    print(f"RecBole Trainer, LightGCN: {recbole_seconds:.2f} s per epoch")
    print(f"plugin backbone pretraining: {plugin_seconds:.2f} s per epoch")


if __name__ == "__main__":
    main()
