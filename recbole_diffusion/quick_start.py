"""Quick start: the plugin's ``run_recbole`` (train, early-stop on valid, test the best model).

Mirrors ``recbole.quick_start`` without importing it (that module imports ray at load time, which breaks on
setuptools >= 81 and numpy 2). FLOPs are not computed: thop would run the whole reverse diffusion chain.
"""

import os
import sys
from logging import getLogger

import torch
from recbole.utils import init_seed, set_color

from recbole_diffusion.config import Config
from recbole_diffusion.data import create_dataset, data_preparation
from recbole_diffusion.utils import get_model, get_trainer, init_run_logger

DISTRIBUTED_KEYS = ("local_rank", "world_size", "ip", "port", "nproc", "offset")


def _count_parameters(model):
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def _share_checkpoint_name(trainer):
    """Give every rank rank 0's checkpoint path (each process would otherwise name its own by its clock)."""
    name = [trainer.saved_model_file]
    torch.distributed.broadcast_object_list(name, src=0)
    trainer.saved_model_file = name[0]


def run_recbole_diffusion(
    model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None
):
    """Train ``model`` on ``dataset`` and evaluate the best checkpoint on the test split.

    Args:
        model (str or class, optional): a plugin or RecBole model; read from the config when None.
        dataset (str, optional): dataset name; read from the config when None.
        config_file_list (list of str, optional): yaml files, higher precedence than the built-in layers.
        config_dict (dict, optional): parameters, higher precedence than the files.
        saved (bool): save the best model and evaluate it (else the last model is evaluated).
        queue (multiprocessing queue, optional): where rank 0 puts the result in a distributed run.

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``; for a
        two-stage model (class attribute ``two_stage = True``, e.g. DiffuASR) also the summary of stage 1.

    A two-stage model is not trained as a recommender: its ``prepare_stage_two(config, dataset, train_data,
    valid_data, test_data)`` works on the split data (e.g. writes augmented atomic files) and returns the ``model``
    to train next, its ``data_path`` (the folder holding ``<dataset>/``), ``config_overrides`` and a ``summary``;
    that model is then trained and tested here with the same configuration sources.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model_class = get_model(config["model"])
    if not getattr(model_class, "two_stage", False):
        return _train_and_test(config, model_class, train_data, valid_data, test_data, saved, queue)

    # A two-stage model (DiffuASR) prepares data on the training split, then another model trains on it.
    if not config["single_spec"]:
        raise ValueError(f"{config['model']} runs in a single process (nproc=1)")
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
    init_seed(config["seed"], config["reproducibility"])
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    result = _train_and_test(config, get_model(config["model"]), train_data, valid_data, test_data, saved, queue)
    return {**result, **stage_two["summary"]}


def _train_and_test(config, model_class, train_data, valid_data, test_data, saved, queue):
    logger = getLogger()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_class(config, train_data._dataset).to(config["device"])
    logger.info(model)
    logger.info(set_color("Trainable parameters", "blue") + f": {_count_parameters(model)}")

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if not config["single_spec"]:
        _share_checkpoint_name(trainer)
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
        torch.distributed.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


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
):
    """One process, or ``nproc`` processes of a torch.distributed run (NCCL on GPUs, gloo on the CPU).

    The arguments after ``saved`` are RecBole's: ``world_size`` processes in all (default ``nproc``), rendezvous
    at ``ip:port``, this machine's ranks starting at ``group_offset``.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_diffusion(model, dataset, config_file_list, config_dict, saved)
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
