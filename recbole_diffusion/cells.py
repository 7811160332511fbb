"""The cells of a comparison: one folder per (model, seed), stored when the cell is done, and the checkpoints that let
a cell interrupted mid-training continue from its last epoch.

``<report folder>/cells/<model>_seed<seed>/`` holds:

* ``result/``: ``cell.json`` (the model's resolved config, its hash, the metrics row, the sampler rows and the
  chance levels) and ``per_user.npz``. Both are written into ``result.partial/``, which is then renamed to
  ``result/`` in one step: a cell is done exactly when ``result/`` exists, whenever the process was killed.
* ``best.pth``: RecBole's best-validation checkpoint, the one the cell tested.
* ``last_epoch.pth``: while the cell trains, the state after its last finished epoch (weights, optimizer,
  early-stopping state, random generators, epoch timings); removed once the cell is stored.

Checkpoints are written to ``<name>.partial``, flushed to disk and renamed too, so a file that is there is whole.
The trainer writes and resumes them (:meth:`recbole_diffusion.run_trainer.RunTrainer.keep_epoch_checkpoints`); this
module holds their format: :func:`epoch_checkpoint_hash`, :func:`random_states`.
"""

import hashlib
import io
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from recbole_diffusion.compat import plain_data

CELL_DIR_KEY = "cell_dir"  # config key: the folder of the cell a comparison runs with this config
RESULT, RECORD, PER_USER = "result", "cell.json", "per_user.npz"
BEST_CHECKPOINT, EPOCH_CHECKPOINT = "best.pth", "last_epoch.pth"
PARTIAL = ".partial"
_ABSENT = object()

RUN_SETTING_KEYS = frozenset(
    {
        # where this machine keeps data, checkpoints and caches
        CELL_DIR_KEY,
        "data_path",
        "checkpoint_dir",
        "dataset_save_path",
        "dataloaders_save_path",
        "save_dataset",
        "save_dataloaders",
        # the device and the processes
        "device",
        "gpu_id",
        "use_gpu",
        "local_rank",
        "single_spec",
        "nproc",
        "world_size",
        "offset",
        "ip",
        "port",
        # logging and progress bars
        "show_progress",
        "state",
        "log_wandb",
        "wandb_project",
        # options of run_recbole_diffusion.py that RecBole also reads from the command line
        "seeds",
        "output_dir",
        "model_config_files",
        "cells",
        "config_files",
        "group_offset",
        "resume",
        "debug",
        "allow_unknown_keys",
    }
)


# Keys added to the plugin after cells were first stored, whose unset value (``~``) trains exactly as before they
# existed: left out of a snapshot while unset, so that the cells and epoch checkpoints stored before stay valid.
KEYS_ABSENT_WHEN_UNSET = frozenset({"lr_cosine_epochs"})


def config_snapshot(config):
    """The values of a resolved RecBole ``config`` that can change a cell's result, as plain JSON data: every key
    but those of :data:`RUN_SETTING_KEYS` (paths of this machine, device, processes, logging, the run script's
    own options) and the unset ones of :data:`KEYS_ABSENT_WHEN_UNSET`. The content of the data files is not part of
    it, only the dataset's name and settings."""
    values = plain_data(config.final_config_dict)
    return {
        key: values[key]
        for key in sorted(values)
        if key not in RUN_SETTING_KEYS and not (key in KEYS_ABSENT_WHEN_UNSET and values[key] is None)
    }


def config_hash(snapshot):
    """SHA-256 of a :func:`config_snapshot`."""
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


def differing_keys(stored, current):
    """The keys whose values differ between two snapshots, or that only one of them has, sorted."""
    keys = stored.keys() | current.keys()
    return sorted(key for key in keys if stored.get(key, _ABSENT) != current.get(key, _ABSENT))


class CellStore:
    """The cells of one comparison, under ``folder``."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def cell_dir(self, model, seed):
        """The folder of one cell (its result and its checkpoints)."""
        return self.folder / f"{model}_seed{seed}"

    def record(self, model, seed):
        """The content of the cell's ``cell.json``, or ``None`` when the cell is not stored."""
        path = self.cell_dir(model, seed) / RESULT / RECORD
        return json.loads(path.read_text()) if path.exists() else None

    def per_user_file(self, model, seed):
        """The cell's ``per_user.npz``."""
        return self.cell_dir(model, seed) / RESULT / PER_USER

    def store(self, model, seed, record, per_user):
        """Store a finished cell: ``record`` (JSON-able) and the ``per_user`` arrays appear together or not at all;
        then its epoch checkpoint, no longer needed, is removed."""
        cell_dir = self.cell_dir(model, seed)
        partial = cell_dir / (RESULT + PARTIAL)
        shutil.rmtree(partial, ignore_errors=True)  # left by a process killed while storing
        partial.mkdir(parents=True)
        arrays = io.BytesIO()
        np.savez(arrays, **per_user)
        _write_synced(partial / PER_USER, arrays.getvalue())
        _write_synced(partial / RECORD, json.dumps(plain_data(record), indent=1).encode())
        os.replace(partial, cell_dir / RESULT)
        (cell_dir / EPOCH_CHECKPOINT).unlink(missing_ok=True)

    def remove(self, model, seed):
        """Delete the cell: result and checkpoints."""
        shutil.rmtree(self.cell_dir(model, seed), ignore_errors=True)


def _write_synced(path, content):
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def replace_synced(partial, target):
    """Flush ``partial`` to disk, then rename it to ``target``."""
    descriptor = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(partial, target)


def epoch_checkpoint_hash(path):
    """The config hash stored in the epoch checkpoint ``path``; None for a checkpoint of another kind."""
    return torch.load(path, map_location="cpu", weights_only=True).get("config_hash")


def random_states(train_data):
    """Every random generator a training epoch draws from, in types that ``torch.load(weights_only=True)`` reads."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "train_loader": train_data.generator.get_state(),
    }


def restore_random_states(states, train_data):
    """Set the generators of :func:`random_states` back (CUDA's as far as this machine has the devices)."""
    random.setstate(states["python"])
    keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():  # a cell may continue on another machine
        torch.cuda.set_rng_state_all(states["cuda"][: torch.cuda.device_count()])
    train_data.generator.set_state(states["train_loader"])
