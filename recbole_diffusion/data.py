"""Dataset and data loader creation that choose by model type and property, never by model name.

RecBole picks a dataset class by ``<model name>Dataset`` and a train loader from a table of model names
(``DiffRec``, ``LDiffRec``, ``MultiVAE``, ...). For RecBole's own models these functions keep RecBole's choice;
for plugin models they read the class: ``type`` picks the dataset class unless the class names its own
``dataset_class`` (:class:`LastPrefixDataset` for the models that train on every position of a history at once), and
``train_batch_by_user = True`` picks RecBole's ``UserDataLoader`` (one row per user, as auto-encoder style models
need).
"""

import os
import pickle
import urllib.error
from logging import getLogger

import pandas as pd
import torch
from recbole.data import utils as recbole_data_utils
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader, TrainDataLoader, UserDataLoader
from recbole.data.dataset import Dataset, SequentialDataset
from recbole.utils import ModelType, set_color

from recbole_diffusion.atomic_files import DataFileError, check_atomic_files, check_interactions_left, data_fault
from recbole_diffusion.utils import get_model, is_plugin_model

_DATASET_CLASS_BY_TYPE = {ModelType.GENERAL: Dataset, ModelType.SEQUENTIAL: SequentialDataset}


class LastPrefixDataset(SequentialDataset):
    """RecBole's sequential dataset whose training split keeps one row per user: the longest prefix (the last
    ``MAX_ITEM_LIST_LENGTH`` training items before the user's last training item, and that item).

    For a model that predicts the next item at every position of a history in one pass (ADRec's official training
    data), the shorter prefixes RecBole's augmentation adds are the same targets again. Validation and test rows are
    RecBole's.
    """

    def build(self):
        train, valid, test = super().build()
        users = train.inter_feat[train.uid_field]
        is_last_row = torch.ones(len(users), dtype=torch.bool)
        is_last_row[:-1] = users[1:] != users[:-1]  # rows of a user are consecutive and in time order
        train.inter_feat = train.inter_feat[torch.nonzero(is_last_row).squeeze(1)]
        return [train, valid, test]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's atomic files are neither local nor shipped, and could not be downloaded."""


def _missing_dataset_message(config, reason):
    inter_file = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    return (
        f"Dataset {config['dataset']!r} not found: expected the RecBole atomic file {inter_file}. "
        f"Put the atomic files ({config['dataset']}.inter, optionally .user/.item) in that folder, or point "
        f"--data_path at the folder that holds {config['dataset']}/ (e.g. --data_path=../shared/datasets). "
        f"({reason})"
    )


def plugin_dataset_class(config):
    """The dataset class for a plugin model: ``model.dataset_class`` if set, else by model type."""
    model_class = get_model(config["model"])
    dataset_class = getattr(model_class, "dataset_class", None) or _DATASET_CLASS_BY_TYPE.get(config["MODEL_TYPE"])
    if dataset_class is None:
        raise ValueError(f"model {config['model']}: no dataset class for model type {config['MODEL_TYPE']}")
    return dataset_class


def _build_dataset(config):
    if not is_plugin_model(get_model(config["model"])):
        return recbole_data_utils.create_dataset(config)
    dataset_class = plugin_dataset_class(config)
    saved_file = config["dataset_save_path"] or os.path.join(
        config["checkpoint_dir"], f"{config['dataset']}-{dataset_class.__name__}.pth"
    )
    if os.path.exists(saved_file):
        with open(saved_file, "rb") as file:
            dataset = pickle.load(file)
        compared_args = recbole_data_utils.dataset_arguments + ["seed", "repeatable"]
        if all(config[arg] == dataset.config[arg] for arg in compared_args):
            getLogger().info(set_color("Load filtered dataset from", "pink") + f": [{saved_file}]")
            return dataset
    dataset = dataset_class(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def create_dataset(config):
    """Build the filtered dataset for ``config`` (RecBole's ``create_dataset``, model-type aware).

    Raises:
        DatasetNotFoundError: the atomic files are missing and RecBole could not download them.
        DataFileError: an atomic file is malformed, or filtering leaves too few interactions
            (:mod:`recbole_diffusion.atomic_files`).
    """
    inter_file = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    if os.path.isfile(inter_file) or config["benchmark_filename"]:
        check_atomic_files(config)
        try:
            dataset = _build_dataset(config)
        except (ValueError, pd.errors.ParserError) as error:
            fault = data_fault(config)
            if fault is None:
                raise
            raise DataFileError(fault) from error
        check_interactions_left(config, dataset)
        return dataset
    try:
        return _build_dataset(config)
    except (urllib.error.URLError, OSError, ValueError, EOFError, KeyError) as error:
        raise DatasetNotFoundError(_missing_dataset_message(config, f"download failed: {error}")) from error
    except SystemExit as error:
        raise DatasetNotFoundError(_missing_dataset_message(config, "download declined")) from error


def train_loader_class(config):
    """The training data loader class for ``config['model']``."""
    model_class = get_model(config["model"])
    if not is_plugin_model(model_class):
        return recbole_data_utils.get_dataloader(config, "train")
    return UserDataLoader if getattr(model_class, "train_batch_by_user", False) else TrainDataLoader


def eval_loader_class(config, phase):
    """The evaluation data loader class for ``phase`` ('valid' or 'test')."""
    return FullSortEvalDataLoader if config["eval_args"]["mode"][phase] == "full" else NegSampleEvalDataLoader


def data_preparation(config, dataset):
    """Split ``dataset`` and build the train, valid and test loaders (RecBole's ``data_preparation``).

    Knowledge-graph models are RecBole's only; for them RecBole's own function is used.
    """
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        return recbole_data_utils.data_preparation(config, dataset)
    loaders = recbole_data_utils.load_split_dataloaders(config)
    if loaders is not None:
        dataset._change_feat_format()
        return loaders
    built_datasets = dataset.build()
    train_dataset, valid_dataset, test_dataset = built_datasets
    train_sampler, valid_sampler, test_sampler = recbole_data_utils.create_samplers(config, dataset, built_datasets)
    loaders = (
        train_loader_class(config)(config, train_dataset, train_sampler, shuffle=config["shuffle"]),
        eval_loader_class(config, "valid")(config, valid_dataset, valid_sampler, shuffle=False),
        eval_loader_class(config, "test")(config, test_dataset, test_sampler, shuffle=False),
    )
    if config["save_dataloaders"]:
        recbole_data_utils.save_split_dataloaders(config, dataloaders=loaders)
    getLogger().info(
        set_color("[Training]: ", "pink") + f"loader = {type(loaders[0]).__name__}, "
        f"train_batch_size = {config['train_batch_size']}, train_neg_sample_args = {config['train_neg_sample_args']}"
    )
    getLogger().info(
        set_color("[Evaluation]: ", "pink") + f"eval_batch_size = {config['eval_batch_size']}, "
        f"eval_args = {config['eval_args']}"
    )
    return loaders
