"""The trainer of the plugin's models: RecBole's ``Trainer`` plus an optional step decay of the learning rate, the
embedding-collapse check of :mod:`recbole_diffusion.collapse` after every training epoch, an evaluation with a given
number of reverse steps (:mod:`recbole_diffusion.model.sampling`), and validation with ``valid_inference_steps`` that
leaves the training's random stream alone.
:func:`stop_on_non_finite_values` gives any RecBole trainer (the plugin's runs use it for every model) a stop at the
first NaN or infinite loss and at NaN scores."""

import math
from contextlib import contextmanager
from functools import partial

import torch
from recbole.trainer import Trainer
from recbole.utils import calculate_valid_score

from recbole_diffusion.collapse import CONFIG_KEY, CollapseMonitor
from recbole_diffusion.model.sampling import ReverseChainSampling, valid_inference_steps
from recbole_diffusion.validation import InputError, is_positive_int

LR_STEP_SIZE_KEY = "lr_step_size"
LR_GAMMA_KEY = "lr_gamma"
LR_COSINE_EPOCHS_KEY = "lr_cosine_epochs"


class NonFiniteError(InputError):
    """Training produced a NaN or infinite loss, or a model scored NaN: the message names the model and the epoch."""


def stop_on_non_finite_values(trainer):
    """Make ``trainer`` (any RecBole ``Trainer``) stop with :class:`NonFiniteError` at the first NaN or infinite
    training loss, naming the model, the epoch and the learning rate, and at the first NaN score of an evaluation
    (RecBole stops on a NaN loss only, with a bare message, and turns NaN scores into metrics silently)."""
    model_name = trainer.config["model"]
    current = {"epoch": None}
    train_epoch, full_sort_eval, sampled_eval = (
        trainer._train_epoch,
        trainer._full_sort_batch_eval,
        trainer._neg_sample_batch_eval,
    )

    def train_epoch_recorded(train_data, epoch_idx, *args, **kwargs):
        current["epoch"] = epoch_idx
        return train_epoch(train_data, epoch_idx, *args, **kwargs)

    def check_loss(loss):
        if not torch.isfinite(loss).all():
            learning_rate = trainer.optimizer.param_groups[0]["lr"] if trainer.optimizer is not None else None
            raise NonFiniteError(
                f"{model_name}: the training loss is {float(loss.detach())} in epoch {current['epoch']} (from 0): "
                f"training diverged; lower learning_rate (now {learning_rate})"
            )

    def checked_scores(evaluate):
        def evaluate_checked(batched_data):
            interaction, scores, *positives = evaluate(batched_data)
            nan_rows = int(torch.isnan(scores).reshape(len(scores), -1).any(dim=1).sum())
            if nan_rows:
                raise NonFiniteError(
                    f"{model_name}: NaN scores in {nan_rows} of {len(scores)} rows of an evaluation batch (after "
                    f"epoch {current['epoch']}); its metrics would be wrong: lower learning_rate or check the model"
                )
            return (interaction, scores, *positives)

        return evaluate_checked

    trainer._train_epoch = train_epoch_recorded
    trainer._check_nan = check_loss
    trainer._full_sort_batch_eval = checked_scores(full_sort_eval)
    trainer._neg_sample_batch_eval = checked_scores(sampled_eval)


def step_decay(config):
    """``(step_size, gamma)`` of the learning-rate decay set by ``lr_step_size`` / ``lr_gamma``, or ``None`` when
    ``lr_step_size`` is ``~`` or absent (a plain RecBole config)."""
    step_size = config[LR_STEP_SIZE_KEY] if LR_STEP_SIZE_KEY in config else None
    gamma = config[LR_GAMMA_KEY] if LR_GAMMA_KEY in config else None
    if step_size is None:
        return None
    if not is_positive_int(step_size):
        raise ValueError(f"{LR_STEP_SIZE_KEY} must be a positive int (epochs) or ~ (no decay), got {step_size!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 < gamma <= 1.0:
        raise ValueError(f"{LR_GAMMA_KEY} must be a number in (0, 1] when {LR_STEP_SIZE_KEY} is set, got {gamma!r}")
    return step_size, float(gamma)


def cosine_epochs(config):
    """The period ``T_max`` in epochs of the cosine annealing set by ``lr_cosine_epochs``, or ``None`` when it is
    ``~`` or absent; refused beside a step decay."""
    epochs = config[LR_COSINE_EPOCHS_KEY] if LR_COSINE_EPOCHS_KEY in config else None
    if epochs is None:
        return None
    if not is_positive_int(epochs):
        raise ValueError(f"{LR_COSINE_EPOCHS_KEY} must be a positive int (epochs) or ~ (no annealing), got {epochs!r}")
    if step_decay(config) is not None:
        raise ValueError(f"{LR_COSINE_EPOCHS_KEY} and {LR_STEP_SIZE_KEY}: set one learning-rate schedule, not both")
    return epochs


class DiffusionTrainer(Trainer):
    """RecBole's ``Trainer`` with three additions.

    A learning-rate schedule stepped once per epoch: the step decay of PyTorch's ``StepLR`` (DiffuRec's and DiQDiff's
    official code), epoch ``e`` (from 0) trains at ``learning_rate * lr_gamma ** (e // lr_step_size)``; or the cosine
    annealing of ``CosineAnnealingLR`` (ADRec's official code), ``learning_rate * (1 + cos(pi e / lr_cosine_epochs)) /
    2``. Both keys ``~`` (the default) keep the rate constant. The rate is set from the epoch index at the start of
    every epoch, so a run resumed from a RecBole checkpoint continues the schedule where it stopped.

    After each training epoch the model's target embedding table (if it declares one) is checked for embedding
    collapse, with the threshold ``collapse_norm_ratio`` (absent from a plain RecBole config: no check).

    ``evaluate(..., num_inference_steps=k)`` scores a :class:`ReverseChainSampling` model with ``k`` reverse steps
    (``None``: its config's ``inference_steps``). Validation passes ``valid_inference_steps`` so, and runs inside a
    fork of torch's random state: the noise a validation draws does not change the training that follows, so a run
    trains the same model whatever its validation sampler or ``eval_step``.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.lr_decay = step_decay(config)
        self.lr_cosine_epochs = cosine_epochs(config)
        threshold = config[CONFIG_KEY] if CONFIG_KEY in config else None
        self.collapse_monitor = CollapseMonitor(model, threshold)
        self.valid_inference_steps = valid_inference_steps(config) if isinstance(model, ReverseChainSampling) else None

    def epoch_learning_rate(self, epoch_idx):
        """The learning rate of epoch ``epoch_idx`` (from 0) under the schedule."""
        if self.lr_cosine_epochs is not None:
            return self.learning_rate * (1.0 + math.cos(math.pi * epoch_idx / self.lr_cosine_epochs)) / 2.0
        if self.lr_decay is None:
            return self.learning_rate
        step_size, gamma = self.lr_decay
        return self.learning_rate * gamma ** (epoch_idx // step_size)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.lr_decay is not None or self.lr_cosine_epochs is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.epoch_learning_rate(epoch_idx)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.collapse_monitor.after_epoch(epoch_idx, train_data._dataset)
        return loss

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False, num_inference_steps=None):
        """RecBole's ``evaluate``; ``num_inference_steps`` is passed to every ``predict`` / ``full_sort_predict`` call
        of the evaluation (a :class:`ReverseChainSampling` model only; ``None``: its own ``inference_steps``)."""
        with scoring_steps(self.model, num_inference_steps):
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)

    def _valid_epoch(self, valid_data, show_progress=False):
        cuda_devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            result = self.evaluate(
                valid_data,
                load_best_model=False,
                show_progress=show_progress,
                num_inference_steps=self.valid_inference_steps,
            )
        return calculate_valid_score(result, self.valid_metric), result


@contextmanager
def scoring_steps(model, num_inference_steps):
    """Inside this block the calls ``model.predict(interaction)`` and ``model.full_sort_predict(interaction)`` (as
    RecBole's evaluation makes them) run with ``num_inference_steps``; ``None`` leaves them as they are."""
    if num_inference_steps is None:
        yield
        return
    if not isinstance(model, ReverseChainSampling):
        raise ValueError(f"num_inference_steps: a model with a reverse chain, got {type(model).__name__}")
    model.predict = partial(type(model).predict, model, num_inference_steps=num_inference_steps)
    model.full_sort_predict = partial(type(model).full_sort_predict, model, num_inference_steps=num_inference_steps)
    try:
        yield
    finally:
        del model.predict, model.full_sort_predict
