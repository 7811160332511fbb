"""Quick start: the plugin's ``run_recbole`` (train, early-stop on valid, test the best model).

Mirrors ``recbole.quick_start`` without importing it (that module imports ray at load time, which breaks on
setuptools >= 81 and numpy 2). FLOPs are not computed: thop would run the whole reverse diffusion chain.
"""

import gc
import itertools
import os
import socket
import sys
from datetime import datetime
from logging import getLogger
from pathlib import Path

import torch
from recbole.trainer import Trainer
from recbole.utils import init_seed, set_color

from recbole_diffusion.cells import config_hash, config_snapshot, epoch_checkpoint_hash
from recbole_diffusion.config import Config
from recbole_diffusion.data import create_dataset, data_preparation
from recbole_diffusion.preflight import check_config, check_dataset
from recbole_diffusion.run_trainer import RunTrainer, run_trainer_class
from recbole_diffusion.trainer import stop_on_non_finite_values
from recbole_diffusion.two_stage import is_two_stage
from recbole_diffusion.utils import get_model, get_trainer, init_run_logger
from recbole_diffusion.validation import ConfigError

DISTRIBUTED_KEYS = ("local_rank", "world_size", "ip", "port", "nproc", "offset")
EPOCH_CHECKPOINT_SUFFIX = "-last_epoch.pth"
_RUNS_IN_THIS_PROCESS = itertools.count(1)


def count_parameters(model):
    """The number of trainable parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def checkpoint_file(config):
    """A new best-checkpoint path for a run, unique per process and readable:
    ``<checkpoint_dir>/<model>-<dataset>-<date>_<time>-<host>-p<pid>.pth`` (``-r<n>`` added for the n-th run of one
    process). RecBole's ``<model>-<time>.pth`` collided for runs started in the same second."""
    run_number = next(_RUNS_IN_THIS_PROCESS)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name = f"{config['model']}-{config['dataset']}-{stamp}-{socket.gethostname()}-p{os.getpid()}"
    name += f"-r{run_number}" if run_number > 1 else ""
    return Path(config["checkpoint_dir"]) / f"{name}.pth"


def epoch_checkpoint_of(best_file):
    """The epoch checkpoint beside the best checkpoint ``best_file`` of a single run."""
    best_file = Path(best_file)
    return best_file.with_name(best_file.name[: -len(".pth")] + EPOCH_CHECKPOINT_SUFFIX)


def _resumed_checkpoints(resume, snapshot_hash):
    """``(best, last_epoch)`` of the run that ``resume`` (its best or its epoch checkpoint) belongs to."""
    resume = Path(resume)
    if resume.name.endswith(EPOCH_CHECKPOINT_SUFFIX):
        best = resume.with_name(resume.name[: -len(EPOCH_CHECKPOINT_SUFFIX)] + ".pth")
    else:
        best = resume
    last_epoch = epoch_checkpoint_of(best)
    if not last_epoch.is_file():
        allowed = f"a checkpoint of an interrupted run, with its epoch checkpoint {last_epoch}"
        raise ConfigError("resume", allowed, str(resume))
    if epoch_checkpoint_hash(last_epoch) != snapshot_hash:
        raise ConfigError(
            "resume", "a checkpoint of a run with this config (give the interrupted run's options again)", str(resume)
        )
    return best, last_epoch


def _share_checkpoint_name(trainer):
    """Give every rank rank 0's checkpoint path (each process would otherwise name its own by its clock)."""
    name = [trainer.saved_model_file]
    torch.distributed.broadcast_object_list(name, src=0)
    trainer.saved_model_file = name[0]


def run_recbole_diffusion(
    model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None, resume=None
):
    """Train ``model`` on ``dataset`` and evaluate the best checkpoint on the test split.

    Args:
        model (str or class, optional): a plugin or RecBole model; read from the config when None.
        dataset (str, optional): dataset name; read from the config when None.
        config_file_list (list of str, optional): yaml files, higher precedence than the built-in layers.
        config_dict (dict, optional): parameters, higher precedence than the files.
        saved (bool): save the best model and evaluate it (else the last model is evaluated).
        queue (multiprocessing queue, optional): where rank 0 puts the result in a distributed run.
        resume (str, optional): a checkpoint of an interrupted single run (its ``.pth`` or its epoch checkpoint
            ``-last_epoch.pth``) to continue from its last finished epoch, with this run's config.

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``; for a
        two-stage model (a :class:`recbole_diffusion.two_stage.TwoStageModel`, e.g. DiffuASR) also the summary of
        stage 1.

    A two-stage model is not trained as a recommender: its ``prepare_stage_two(config, dataset, train_data,
    valid_data, test_data)`` works on the split data (e.g. writes augmented atomic files) and returns the ``model``
    to train next, its ``data_path`` (the folder holding ``<dataset>/``), ``config_overrides`` and a ``summary``;
    that model is then trained and tested here with the same configuration sources.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_config(config)
    model_class = get_model(config["model"])
    if resume is not None and (is_two_stage(model_class) or not config["single_spec"]):
        raise ConfigError("resume", "a single-process run of a one-stage model", resume)
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = create_dataset(config)
    check_dataset(config, dataset)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if not is_two_stage(model_class):
        return _train_and_test_run(config, model_class, train_data, valid_data, test_data, saved, queue, resume)

    # A two-stage model (DiffuASR) prepares data on the training split, then another model trains on it.
    if not config["single_spec"]:
        raise ConfigError("nproc", f"1 ({config['model']} runs in a single process)", config["nproc"])
    stage_two = model_class.prepare_stage_two(config, dataset, train_data, valid_data, test_data)
    config = Config(
        model=stage_two["model"], dataset=config["dataset"], config_file_list=config_file_list, config_dict=config_dict
    )
    # Set after parsing, so that e.g. a --data_path argument cannot win; recorded as overrides, so that the
    # checkpoint of the next model reloads (load_data_and_model) with these data.
    for key, value in {"data_path": stage_two["data_path"], **stage_two["config_overrides"]}.items():
        config.external_config_dict[key] = value
        config[key] = value
    config["data_path"] = os.path.join(stage_two["data_path"], config["dataset"])  # as RecBole's Config joins it
    check_config(config)
    init_seed(config["seed"], config["reproducibility"])
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    result = _train_and_test_run(config, get_model(config["model"]), train_data, valid_data, test_data, saved, queue)
    return {**result, **stage_two["summary"]}


def train_and_test(config, model_class, train_data, valid_data, test_data, saved=True, checkpoints=None, queue=None):
    """The one train-and-test flow, of a single run and of a comparison cell: build the model, train it with early
    stopping on ``valid_data``, test the best checkpoint (the last model unless ``saved``) on ``test_data``.

    A model with a RecBole ``Trainer`` trains with its trainer class subclassed by
    :func:`recbole_diffusion.run_trainer.run_trainer_class` (epoch times, epoch checkpoints, the record of each
    evaluation) and stops at the first NaN or infinite loss. In a single process, ``checkpoints`` is the pair
    ``(best, last_epoch)`` of paths of its best-validation checkpoint and its epoch checkpoint (default: a new
    :func:`checkpoint_file` and :func:`epoch_checkpoint_of` it); training continues from ``last_epoch`` when it holds
    the state of a run with this config. The epoch checkpoint is left for the caller to remove.

    Returns:
        (dict, trainer): ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``; and
        the trainer (``trainer.last_evaluation`` is the test's record).
    """
    logger = getLogger()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_class(config, train_data._dataset).to(config["device"])
    logger.info(model)
    logger.info(set_color("Trainable parameters", "blue") + f": {count_parameters(model)}")

    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    if not issubclass(trainer_class, Trainer):  # RecBole's decision-tree trainers keep their own files
        trainer = trainer_class(config, model)
        trainer.saved_model_file = str(checkpoints[0] if checkpoints else checkpoint_file(config))
    else:
        trainer = run_trainer_class(trainer_class)(config, model)
        stop_on_non_finite_values(trainer)
        if not config["single_spec"]:
            trainer.saved_model_file = str(checkpoint_file(config))
            _share_checkpoint_name(trainer)
        else:
            if checkpoints is None:
                best = checkpoint_file(config)
                checkpoints = best, epoch_checkpoint_of(best)
            best, last_epoch = checkpoints
            if trainer.keep_epoch_checkpoints(train_data, best, last_epoch, config_hash(config_snapshot(config))):
                logger.info(set_color("Resumed", "green") + f" from {last_epoch} at epoch {trainer.start_epoch}")
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    if not config["single_spec"]:
        torch.distributed.barrier()  # rank 0 has written the best checkpoint before any rank reads it
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
    if not config["single_spec"]:
        _end_distributed_run(trainer)
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result, trainer


def _train_and_test_run(config, model_class, train_data, valid_data, test_data, saved, queue, resume=None):
    """:func:`train_and_test` as a single run does it: continue from ``resume``, remove the epoch checkpoint when the
    run is complete."""
    checkpoints = None
    if resume is not None:
        checkpoints = _resumed_checkpoints(resume, config_hash(config_snapshot(config)))
    elif config["single_spec"]:
        best = checkpoint_file(config)
        checkpoints = best, epoch_checkpoint_of(best)
    if checkpoints is not None:
        getLogger().info(f"an interrupted run continues with --resume={checkpoints[1]}")
    result, trainer = train_and_test(config, model_class, train_data, valid_data, test_data, saved, checkpoints, queue)
    if isinstance(trainer, RunTrainer) and trainer.epoch_checkpoint is not None:
        trainer.epoch_checkpoint.unlink(missing_ok=True)  # the run is complete: nothing to resume
    return result


def _end_distributed_run(trainer):
    """Wait for every rank, free DDP's reducer, then the process group, while the interpreter is fully alive.

    A gloo group torn down at interpreter exit, with DDP still holding it, can abort the process.
    """
    torch.distributed.barrier()
    del trainer.distributed_model
    gc.collect()
    torch.distributed.destroy_process_group()


def run_recbole_diffusions(rank, *args):
    """Entry point of one process of a distributed run (``torch.multiprocessing.spawn`` target)."""
    kwargs = args[-1]
    kwargs["config_dict"] = {**(kwargs.get("config_dict") or {}), "local_rank": rank}
    run_recbole_diffusion(*args[:3], **kwargs)


def run(
    model,
    dataset,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
    resume=None,
):
    """One process, or ``nproc`` processes of a torch.distributed run (NCCL on GPUs, gloo on the CPU).

    ``resume`` continues an interrupted single run (:func:`run_recbole_diffusion`). The arguments after ``saved``
    are RecBole's: ``world_size`` processes in all (default ``nproc``), rendezvous at ``ip:port``, this machine's
    ranks starting at ``group_offset``. The config is checked here, before any process starts.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_diffusion(model, dataset, config_file_list, config_dict, saved, resume=resume)
    if resume is not None:
        raise ConfigError("resume", "a single-process run (nproc=1)", resume)
    check_config(Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict))
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    distributed_config = {
        **(config_dict or {}),
        "world_size": nproc if world_size == -1 else world_size,
        "ip": ip,
        "port": port,
        "nproc": nproc,
        "offset": group_offset,
    }
    kwargs = {"config_dict": distributed_config, "queue": queue, "saved": saved}
    mp.spawn(run_recbole_diffusions, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def load_data_and_model(model_file):
    """Rebuild config, model (with the saved weights), dataset and loaders from a plugin checkpoint.

    The checkpoint is read with ``weights_only=True``; its config overrides (less those of a distributed run)
    are replayed through :class:`Config`, so the rebuilt model runs in this single process.
    """
    checkpoint = torch.load(model_file, map_location="cpu", weights_only=True)
    saved_config = checkpoint["config"]
    overrides = {key: value for key, value in checkpoint["config_overrides"].items() if key not in DISTRIBUTED_KEYS}
    config = Config(model=saved_config["model"], dataset=saved_config["dataset"], config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
