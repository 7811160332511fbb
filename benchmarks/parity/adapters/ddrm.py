"""DDRM adapter: the official code (Polaris-JZ/DDRM, folder ``DDRM_LightGCN/``) driven on the plugin's general split.

``--official`` is the snapshot's ``DDRM_LightGCN/`` folder (``model.py``, ``diffusion.py``, ``utils.py``,
``dataloader.py``, ``world.py``, ``parse.py``). What is imported from it (never copied): ``LightGCN`` of ``model.py``
(its ``bpr_loss``: noising of the user and positive-item embeddings at a uniform step, the two conditional ``DNN``
denoisers, BPR with the backbone negative, the reconstruction term; its ``getUsersRating``: the history mean noised
to step ``steps - 1``, the item denoiser's reverse chain conditioned on the user, inner product with all items),
``DNN`` of ``model.py``, ``GaussianDiffusion`` of ``diffusion.py``, ``BPRLoss.call_bpr`` of ``utils.py`` (the
official training step: ``sigmoid(pos score) ** beta`` weighting, ``(1 - alpha) * BPR + alpha * reconstruction``, the
three Adam optimizers) and ``DiffData.get_pair_bpr`` of ``dataloader.py`` (the official per-epoch triple sampling).

Runtime shims supplied here, not official code:

- The files import each other by bare names (``import world``, ``import model``, ...) and ``world.py`` parses
  ``sys.argv`` at import. They are imported with the official folder first on ``sys.path``, ``sys.argv`` set to the
  run's official flags (``official_flags``), the working directory a temporary folder (``world.py`` creates
  ``./code/checkpoints``) and ``CUDA_VISIBLE_DEVICES`` restored afterwards (``world.py`` sets it). The bare module
  names are then taken out of ``sys.modules`` again (previous entries restored), so other adapters are not affected.
- Backbone: both sides read the same ``.npy`` tables, ``item_emb_path`` / ``user_emb_path`` (the plugin's keys; one
  row per 0-based official id, i.e. plugin ids 1..n). The official ``LightGCN`` is built with ``pretrain`` 1 (its
  tables copied from those files, its own path for pretrained weights) and ``lightGCN_n_layers`` 0, so its
  "propagated" embeddings are the tables themselves (the files already hold the final backbone embeddings); its
  graph is never used, so a stand-in dataset with ``n_users``, ``m_items`` and ``getSparseGraph`` (None) is passed.
  The backbone is frozen as ``main.py`` freezes it (``requires_grad`` False).
- ``get_pair_bpr`` is called on a stand-in holding the exported training items per user (``_allPos``), ``n_users``,
  ``m_items`` and ``traindataSize``; ``main.py`` (its loop, tensorboardX, checkpoint loading) is not imported.

Data: the official input is ``train_list.npy``, int64 ``(user, item)`` pairs with 0-based ids (plugin id - 1); the
DiffRec adapter's ``export`` writes it (rows sorted by user then item). ``official_positives`` gives the per-user
training item lists (``DiffData.train_dict`` / ``allPos``).

Training (``main.py``'s loop in our words): per epoch ``get_pair_bpr`` (``traindataSize`` triples: a uniform user,
a uniform positive of the user, a uniform negative outside the user's positives, numpy's global RNG), then the
triples in a fresh random order (``DataLoader(shuffle=True)``, last batch partial) in batches of ``batch_size``,
``BPRLoss.call_bpr`` on each. Scoring: ``eval()`` and ``LightGCN.getUsersRating`` with the users' training items, in
the plugin's item ids (a padding column put in front, which the evaluator masks).
"""

import argparse
import contextlib
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from benchmarks.parity.adapters import diffrec
from benchmarks.parity.official_code import checked_snapshot

MODEL = "DDRM"
OFFICIAL_REPOSITORY = "Polaris-JZ/DDRM"
OFFICIAL_FILES = (
    "model.py",
    "diffusion.py",
    "utils.py",
    "dataloader.py",
    "world.py",
    "parse.py",
)
OFFICIAL_MODULES = ("parse", "world", "dataloader", "model", "utils", "diffusion")
CONFIG_FILES = diffrec.CONFIG_FILES  # the plugin's general protocol: per-user random 80/10/10
METRICS = diffrec.METRICS
SCORINGS = ("eval",)  # the official Test calls .eval() on the denoisers
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); the plugin's general "
    "split (properties/protocol/general.yaml), full ranking by the plugin's evaluator, the user's training and "
    "validation items and the padding item masked; model.eval() (as the official Test). Both sides start from the "
    "same frozen backbone tables (item_emb_path, user_emb_path). norm_ratio: n/a (the only item table is "
    "the frozen backbone, the same on both sides)."
)

# Shared hyperparameters: the plugin's properties/model/DDRM.yaml defaults (the official ML-1M run: train.py grid).
DEFAULTS = {
    "dims": [100, 1000],
    "emb_size": 10,
    "act": "sigmoid",
    "steps": 20,
    "noise_schedule": "linear-var",
    "noise_scale": 0.0001,
    "noise_min": 0.0001,
    "noise_max": 0.001,
    "sampling_steps": 20,
    "alpha": 0.4,
    "beta": 1.0,
    "learning_rate": 0.001,
    "batch_size": 2048,
    "item_emb_path": "",
    "user_emb_path": "",
    "epochs": 20,
}
MODIFICATIONS = {}


def plugin_config(hparams):
    """The plugin's config entries that give its DDRM the shared hyperparameters ``hparams``."""
    if not hparams["item_emb_path"] or not hparams["user_emb_path"]:
        raise ValueError(
            "DDRM parity needs --item_emb_path=<file>.npy and --user_emb_path=<file>.npy (the same backbone for both "
            "sides); write them with python -m benchmarks.parity.adapters.ddrm --write-embeddings "
            "--dataset=<dataset> --output=<folder>"
        )
    if hparams["sampling_steps"] < hparams["steps"]:
        raise ValueError("DDRM parity needs sampling_steps >= steps (where the plugin and the official chain agree)")
    return {
        "dims_dnn": list(hparams["dims"]),
        "embedding_size": hparams["emb_size"],
        "mlp_act_func": hparams["act"],
        "steps": hparams["steps"],
        "noise_schedule": hparams["noise_schedule"],
        "noise_scale": hparams["noise_scale"],
        "noise_min": hparams["noise_min"],
        "noise_max": hparams["noise_max"],
        "sampling_steps": hparams["sampling_steps"],
        "beta_fixed": True,
        "dropout": 0.5,
        "alpha": hparams["alpha"],
        "beta": hparams["beta"],
        "learning_rate": hparams["learning_rate"],
        "weight_decay": 0.0,
        "train_batch_size": hparams["batch_size"],
        "epochs": hparams["epochs"],
        "item_emb_path": str(hparams["item_emb_path"]),
        "user_emb_path": str(hparams["user_emb_path"]),
        "train_neg_sample_args": {
            "distribution": "uniform",
            "sample_num": 1,
            "alpha": 1.0,
            "dynamic": False,
            "candidate_num": 0,
        },
    }


def official_flags(hparams):
    """The official command-line flags (``parse.py``) of ``hparams``; ``sampling_noise`` / ``norm`` keep their
    defaults (False; ``type=bool`` flags cannot be set to False)."""
    flags = {
        "dims": "[" + ",".join(map(str, hparams["dims"])) + "]",
        "emb_size": hparams["emb_size"],
        "act": hparams["act"],
        "steps": hparams["steps"],
        "noise_schedule": hparams["noise_schedule"],
        "noise_scale": hparams["noise_scale"],
        "noise_min": hparams["noise_min"],
        "noise_max": hparams["noise_max"],
        "sampling_steps": hparams["sampling_steps"],
        "alpha": hparams["alpha"],
        "beta": hparams["beta"],
        "diff_lr": hparams["learning_rate"],
        "batch_size": hparams["batch_size"],
        "layer": 0,
        "pretrain": 1,
        "mean_type": "x0",
        "model": "lgn",
    }
    return ["main.py"] + [f"--{key}={value}" for key, value in flags.items()]


def official_positives(pairs, n_users):
    """Per official user ``0..n_users-1`` its training items (``DiffData.allPos``), int64 arrays, from ``pairs``."""
    items = [[] for _ in range(n_users)]
    for user, item in pairs:
        items[user].append(item)
    return [np.asarray(row, dtype=np.int64) for row in items]


@contextlib.contextmanager
def _official_import_context(official_dir, arguments):
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    saved_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    saved_modules = {name: sys.modules.pop(name) for name in OFFICIAL_MODULES if name in sys.modules}
    with tempfile.TemporaryDirectory() as folder:
        sys.argv = list(arguments)
        sys.path.insert(0, str(official_dir))
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(saved_cwd)
            sys.argv, sys.path[:] = saved_argv, saved_path
            if saved_cuda is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved_cuda
            for name in OFFICIAL_MODULES:
                sys.modules.pop(name, None)
            sys.modules.update(saved_modules)


def load_official(official_dir, hparams):
    """The official modules of ``official_dir`` as a namespace (``world``, ``model``, ``diffusion``, ``utils``,
    ``dataloader``), imported with the run's flags (see the module docstring)."""
    official_dir = checked_snapshot(official_dir, OFFICIAL_FILES, "its DDRM_LightGCN/ folder")
    with _official_import_context(official_dir, official_flags(hparams)):
        import dataloader  # the official modules, importable only inside the context
        import diffusion
        import model
        import utils
        import world

        return types.SimpleNamespace(
            world=world,
            model=model,
            diffusion=diffusion,
            utils=utils,
            dataloader=dataloader,
        )


def load_table(path, rows, kind):
    """The ``.npy`` table at ``path`` as float32 ``[rows, d]`` (0-based official ids; a plugin table with a padding
    row 0 of ``rows + 1`` rows is cut)."""
    table = np.load(path).astype(np.float32)
    if len(table) == rows + 1:
        table = table[1:]
    if len(table) != rows:
        raise ValueError(f"{kind} table {path} has {len(table)} rows, expected {rows}")
    return table


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        self.official = official or load_official(official_dir, hparams)
        world, gd = self.official.world, self.official.diffusion
        self.device = world.device
        self.uid_field = dataset.uid_field
        n_users, n_items = dataset.user_num - 1, dataset.item_num - 1
        self.pairs = diffrec.export(dataset)
        self.positives = official_positives(self.pairs, n_users)
        self.sampler = types.SimpleNamespace(
            _allPos=self.positives,
            n_users=n_users,
            m_items=n_items,
            traindataSize=len(self.pairs),
        )
        config = {
            **world.config,
            "pretrain": 1,
            "lightGCN_n_layers": 0,
            "user_emb": load_table(hparams["user_emb_path"], n_users, "user"),
            "item_emb": load_table(hparams["item_emb_path"], n_items, "item"),
        }
        graph_stand_in = types.SimpleNamespace(n_users=n_users, m_items=n_items, getSparseGraph=lambda: None)
        self.recmodel = self.official.model.LightGCN(config, graph_stand_in).to(self.device)
        for parameter in self.recmodel.parameters():
            parameter.requires_grad = False
        size = config["latent_dim_rec"]
        out_dims = list(hparams["dims"]) + [size]
        dnn = self.official.model.DNN
        self.user_model = dnn(out_dims[::-1], out_dims, hparams["emb_size"], time_type="cat", norm=False)
        self.item_model = dnn(out_dims[::-1], out_dims, hparams["emb_size"], time_type="cat", norm=False)
        self.user_model, self.item_model = (
            self.user_model.to(self.device),
            self.item_model.to(self.device),
        )
        self.diffusion = gd.GaussianDiffusion(
            config,
            gd.ModelMeanType.START_X,
            hparams["noise_schedule"],
            hparams["noise_scale"],
            hparams["noise_min"],
            hparams["noise_max"],
            hparams["steps"],
            self.device,
        ).to(self.device)
        self.bpr = self.official.utils.BPRLoss(self.recmodel, self.user_model, self.item_model, self.diffusion, config)
        self.iteration = 0

    def train_epoch(self):
        """One official epoch: ``get_pair_bpr``, the triples shuffled, ``call_bpr`` per batch; returns the mean loss."""
        self.recmodel.train()
        self.user_model.train()
        self.item_model.train()
        self.official.dataloader.DiffData.get_pair_bpr(self.sampler)
        users = torch.as_tensor(np.asarray(self.sampler.user, dtype=np.int64))
        positives = torch.as_tensor(np.asarray(self.sampler.posItem, dtype=np.int64))
        negatives = torch.as_tensor(np.asarray(self.sampler.negItem, dtype=np.int64))
        order = torch.randperm(len(users))
        total, batches = 0.0, 0
        for start in range(0, len(order), self.hparams["batch_size"]):
            index = order[start : start + self.hparams["batch_size"]]
            batch = [tensor[index].to(self.device) for tensor in (users, positives, negatives)]
            total += self.bpr.call_bpr(*batch, self.iteration)
            self.iteration += 1
            batches += 1
        return total / max(batches, 1)

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """``getUsersRating`` of the users as ``[batch, n_items]`` plugin-ordered scores (``eval()`` as the official
        ``Test``; ``dropout`` leaves dropout on, not used by the harness for DDRM)."""
        users = interaction[self.uid_field].cpu() - 1
        for module in (self.recmodel, self.user_model, self.item_model):
            module.train(dropout)
        history = [self.positives[user] for user in users.tolist()]
        scores = self.recmodel.getUsersRating(
            users.to(self.device),
            history,
            self.user_model,
            self.item_model,
            self.diffusion,
        )
        return diffrec.plugin_scores(scores).cpu()

    def target_embedding_weight(self):
        """None: the only item table is the frozen backbone, the same file on both sides (the plugin's DDRM declares
        no ``target_embedding_table`` either): no norm ratio."""
        return


def write_embeddings(dataset_name, output, config_dict=None):
    """Pretrain the plugin's backbone (``pretrain_backbone``, LightGCN by default, the plugin's DDRM settings) once
    on the training split that ``run_parity`` builds and write ``user_emb.npy`` / ``item_emb.npy`` (0-based rows,
    no padding row) into ``output``. Returns the two paths."""
    from benchmarks.parity import harness
    from recbole_diffusion.pretrain import pretrained_embeddings

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    hparams = {**DEFAULTS, "item_emb_path": "unused", "user_emb_path": "unused"}
    entries = {
        **plugin_config(hparams),
        "item_emb_path": None,
        "user_emb_path": None,
        "state": "WARNING",
    }
    entries.update(config_dict or {})
    config, train_data, _, _ = harness.build_split(MODEL, dataset_name, {**entries, "seed": 100}, CONFIG_FILES, METRICS)
    users, items = pretrained_embeddings(config, train_data._dataset)
    paths = output / "user_emb.npy", output / "item_emb.npy"
    np.save(paths[0], users[1:].float().cpu().numpy())
    np.save(paths[1], items[1:].float().cpu().numpy())
    return paths


def main(arguments=None):
    parser = argparse.ArgumentParser(description="Write the shared backbone tables for DDRM parity.")
    parser.add_argument("--write-embeddings", action="store_true", required=True)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--output", required=True, help="folder for user_emb.npy and item_emb.npy")
    args = parser.parse_args(arguments)
    for path in write_embeddings(args.dataset, args.output):
        print(f"{path}: {np.load(path).shape}")


if __name__ == "__main__":
    main()
