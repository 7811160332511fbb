"""The trainer of a run: the trainer class a model gets (RecBole's ``Trainer`` for SASRec, its ``TraditionalTrainer``
for a popularity model, the plugin's ``DiffusionTrainer`` for a diffusion model), subclassed with :class:`RunTrainer`
by :func:`run_trainer_class`. The subclass adds, by overriding the trainer's own methods:

* epoch checkpoints: the state after each finished epoch, written at the start of the next one, from which an
  interrupted run continues (:meth:`RunTrainer.keep_epoch_checkpoints`; the file format is
  :mod:`recbole_diffusion.cells`'s); every checkpoint written whole (to a partial file, flushed, renamed);
* measurements: the wall time of every training epoch (``epoch_seconds``, carried across a resume) and, for every
  evaluation, its result, the collector's data (RecBole's ``rec.topk``, from which per-user values are computed) and
  the full-sort users scored per second (:class:`Evaluation`, ``last_evaluation``).

:func:`peak_memory_mb`, :func:`reset_peak_memory` and :func:`hardware` measure what runs the trainer.
"""

import re
import resource
import sys
import time
from dataclasses import dataclass
from functools import cache
from logging import getLogger
from pathlib import Path

import torch
from recbole.evaluator import Evaluator
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_diffusion.cells import (
    PARTIAL,
    epoch_checkpoint_hash,
    random_states,
    replace_synced,
    restore_random_states,
)
from recbole_diffusion.compat import checkpoint_state

PROC_CLEAR_REFS, PROC_STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a :class:`RunTrainer`: RecBole's ``result`` dict, the collector's ``data`` (``rec.topk``
    included) and the full-sort ``users_per_second`` (scoring and masking; NaN when nothing was full-sorted)."""

    result: dict
    data: object
    users_per_second: float


class RecordingEvaluator(Evaluator):
    """RecBole's ``Evaluator`` that keeps the collector's data of its last evaluation in ``last_data``."""

    def __init__(self, config):
        super().__init__(config)
        self.last_data = None

    def evaluate(self, dataobject):
        self.last_data = dataobject
        return super().evaluate(dataobject)


class RunTrainer:
    """Mixin placed before a RecBole ``Trainer`` class (see :func:`run_trainer_class`).

    Attributes:
        epoch_seconds (list of float): wall time of each training epoch (checkpoint writing excluded), the epochs of
            an interrupted run included once it is resumed.
        last_evaluation (Evaluation): the last ``evaluate`` call (a validation during ``fit``, the test after it).
        epoch_checkpoint (Path or None): where the state after the last finished epoch is kept, once
            :meth:`keep_epoch_checkpoints` is called.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.evaluator = RecordingEvaluator(config)
        self.epoch_seconds = []
        self.last_evaluation = None
        self.epoch_checkpoint = None
        self.checkpoint_config_hash = None
        self._scoring = {"seconds": 0.0, "users": 0}

    def keep_epoch_checkpoints(self, train_data, best, last_epoch, config_hash):
        """Keep the best-validation checkpoint in ``best`` and the state after each epoch in ``last_epoch``.

        At the start of every epoch but the first that this trainer trains, the state after the previous epoch is
        saved as ``last_epoch``: RecBole's checkpoint content, ``config_hash`` (of the run's
        :func:`recbole_diffusion.cells.config_snapshot`), the random generators (Python, numpy, torch, CUDA, the
        training loader's shuffling) and ``epoch_seconds``. An epoch checkpoint already there with the same
        ``config_hash`` is resumed (RecBole's ``resume_checkpoint``, then the generators and the epoch times); one
        of another config is deleted. Returns whether training resumed.
        """
        self.epoch_checkpoint, self.checkpoint_config_hash = Path(last_epoch), config_hash
        resumed = False
        if self.epoch_checkpoint.exists() and epoch_checkpoint_hash(self.epoch_checkpoint) != config_hash:
            getLogger().warning(f"{last_epoch} belongs to another config: training starts again from epoch 0")
            self.epoch_checkpoint.unlink()
        elif self.epoch_checkpoint.exists():
            state = torch.load(self.epoch_checkpoint, map_location="cpu", weights_only=True)
            self.resume_checkpoint(str(self.epoch_checkpoint))  # RecBole's: it points saved_model_file at the file
            restore_random_states(state["random_states"], train_data)
            self.epoch_seconds.extend(state["epoch_seconds"])
            resumed = True
        self.saved_model_file = str(best)
        return resumed

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.epoch_checkpoint is not None and epoch_idx > self.start_epoch:
            self._save_epoch_checkpoint(train_data, epoch_idx - 1)
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss

    def _save_epoch_checkpoint(self, train_data, epoch):
        state = {
            **checkpoint_state(self, epoch),
            "config_hash": self.checkpoint_config_hash,
            "random_states": random_states(train_data),
            "epoch_seconds": list(self.epoch_seconds),
        }
        partial = self.epoch_checkpoint.with_name(self.epoch_checkpoint.name + PARTIAL)
        torch.save(state, partial)
        replace_synced(partial, self.epoch_checkpoint)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if self.epoch_checkpoint is None:  # a distributed run: RecBole's own writing
            return super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        target = Path(kwargs.pop("saved_model_file", self.saved_model_file))
        partial = target.with_name(target.name + PARTIAL)
        super()._save_checkpoint(epoch, verbose=False, saved_model_file=str(partial), **kwargs)
        replace_synced(partial, target)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {target}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False, **kwargs):
        self._scoring.update(seconds=0.0, users=0)
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress, **kwargs)
        seconds, users = self._scoring["seconds"], self._scoring["users"]
        speed = users / seconds if seconds > 0 else float("nan")
        self.last_evaluation = Evaluation(result, self.evaluator.last_data, speed)
        return result

    def _full_sort_batch_eval(self, batched_data):
        start = time.perf_counter()
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._scoring["seconds"] += time.perf_counter() - start
        self._scoring["users"] += len(scores)
        return interaction, scores, positive_u, positive_i


@cache
def run_trainer_class(trainer_class):
    """``trainer_class`` (a RecBole ``Trainer`` subclass) with :class:`RunTrainer` before it."""
    if not issubclass(trainer_class, Trainer):
        raise TypeError(f"run_trainer_class: {trainer_class.__name__} is not a RecBole Trainer")
    if issubclass(trainer_class, RunTrainer):
        return trainer_class
    return type(f"Run{trainer_class.__name__}", (RunTrainer, trainer_class), {"__module__": __name__})


def best_epoch(trainer, epochs_trained, eval_step):
    """The epoch (from 0) of the checkpoint ``trainer`` kept: the last validated epoch, less the validations without
    gain since the best one (RecBole validates after every ``eval_step``-th epoch)."""
    last_validated = epochs_trained // eval_step * eval_step - 1
    if last_validated < 0:  # never validated: the last epoch is kept
        return epochs_trained - 1
    return last_validated - trainer.cur_step * eval_step


def hardware(device):
    """What trained a run: the GPU's name, or the CPU with torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'' if threads == 1 else 's'}"


def reset_peak_memory(device):
    """Start a new peak: of the GPU's allocations, or on Linux of the process's resident set (``clear_refs``)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif PROC_CLEAR_REFS.exists():
        PROC_CLEAR_REFS.write_text("5")  # resets VmHWM, the peak resident set, to the current resident set


def peak_memory_mb(device):
    """Peak GPU memory allocated since the last reset; on the CPU the peak resident set of the process since the
    last reset (Linux), or since the process started (elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if PROC_STATUS.exists():
        high_water_mark = re.search(r"^VmHWM:\s+(\d+) kB", PROC_STATUS.read_text(), re.MULTILINE)
        return int(high_water_mark.group(1)) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
