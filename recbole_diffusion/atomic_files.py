"""Checks of RecBole's atomic files (``<dataset>.inter``, ``.user``, ``.item``): the header before RecBole reads a
file, the rows when its reading fails, and the interactions left after filtering. Each fault is one line naming the
file, the line or column, and what was expected.
"""

import os
from pathlib import Path

import numpy as np
from recbole.utils import FeatureType, ModelType

from recbole_diffusion.validation import InputError

FEATURE_TYPES = tuple(feature_type.value for feature_type in FeatureType)
FEATURE_SUFFIXES = ("user", "item")
OTHER_SEPARATORS = ("\t", ",", ";", "|", " ")
HEADER_EXAMPLE = "user_id:token, item_id:token, timestamp:float"
LEAVE_ONE_OUT_MINIMUM = 3  # a training, a validation and a test interaction


class DataFileError(InputError):
    """An atomic file cannot be read as RecBole expects; the message names the file and the place."""


def _separator_name(separator):
    return {"\t": "a tab", " ": "a space"}.get(separator, repr(separator))


def atomic_files(config):
    """The interaction files and the user and item feature files RecBole will read for ``config``, as they exist (a
    feature file only when ``load_col`` is ``~`` or names it)."""
    folder, name = Path(config["data_path"]), config["dataset"]
    parts = config["benchmark_filename"]
    inter_files = [folder / f"{name}.{part}.inter" for part in parts] if parts else [folder / f"{name}.inter"]
    load_col = config["load_col"]
    suffixes = [suffix for suffix in FEATURE_SUFFIXES if load_col is None or suffix in load_col]
    feature_files = [folder / f"{name}.{suffix}" for suffix in suffixes]
    return [path for path in inter_files + feature_files if path.is_file()]


def header_columns(path, config):
    """``[(name, type), ...]`` of the file's header, after checking that it is there and well formed."""
    separator = config["field_separator"]
    with open(path, encoding=config["encoding"]) as file:
        header = file.readline().rstrip("\r\n")
    if not header.strip():
        raise DataFileError(
            f"{path}: the file is empty or its first line is blank; expected a header of name:type columns "
            f"separated by {_separator_name(separator)} (field_separator), e.g. {HEADER_EXAMPLE}"
        )
    columns = header.split(separator)
    if len(columns) == 1:
        for other in OTHER_SEPARATORS:
            if other != separator and len(header.split(other)) > 1 and ":" in header.split(other)[1]:
                raise DataFileError(
                    f"{path}, line 1: the columns are separated by {_separator_name(other)}; expected "
                    f"{_separator_name(separator)} (field_separator: set it, or separate the columns by it)"
                )
    pairs = []
    for index, column in enumerate(columns, start=1):
        name, colon, feature_type = column.partition(":")
        if not colon or not name or feature_type not in FEATURE_TYPES:
            problem = "no type suffix" if not colon else f"unknown type {feature_type!r}"
            raise DataFileError(
                f"{path}, line 1, column {index} ({column!r}): {problem}; expected name:type with type one of "
                f"{', '.join(FEATURE_TYPES)}"
            )
        pairs.append((name, feature_type))
    return pairs


def check_atomic_files(config):
    """Check the header of every file RecBole will read, and that the interaction files have the user and item
    columns (``USER_ID_FIELD``, ``ITEM_ID_FIELD``; for a sequential model also ``TIME_FIELD``) among those
    ``load_col`` loads."""
    keys = ("USER_ID_FIELD", "ITEM_ID_FIELD")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and config["TIME_FIELD"] and not config["benchmark_filename"]:
        keys += ("TIME_FIELD",)  # the order of the histories
    load_col = config["load_col"] or {}
    for path in atomic_files(config):
        names = [name for name, _ in header_columns(path, config)]
        if path.suffix != ".inter":
            continue
        loaded = load_col.get("inter", names)
        for key in keys:
            field = config[key]
            if field not in names:
                raise DataFileError(f"{path}, line 1: no column {field!r} ({key}); the header has {', '.join(names)}")
            if field not in loaded:
                raise DataFileError(
                    f"{path}: load_col loads {loaded} from it, not {field!r} ({key}); add it to load_col"
                )


def first_bad_row(path, config):
    """The first row of ``path`` whose number of fields differs from the header's or that has text in a float
    field, described in one line; None when every row reads."""
    separator = config["field_separator"]
    columns = header_columns(path, config)
    with open(path, encoding=config["encoding"]) as file:
        file.readline()
        for number, line in enumerate(file, start=2):
            fields = line.rstrip("\r\n").split(separator)
            if len(fields) != len(columns):
                return (
                    f"{path}, line {number}: {len(fields)} fields separated by {_separator_name(separator)}; the "
                    f"header has {len(columns)}"
                )
            for (name, feature_type), field in zip(columns, fields):
                if feature_type == "float" and field.strip() and not _is_float(field):
                    return f"{path}, line {number}, column {name} (float): not a number: {field!r}"
    return None


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def data_fault(config):
    """One line describing the first unreadable row of the files RecBole reads, or None."""
    for path in atomic_files(config):
        fault = first_bad_row(path, config)
        if fault is not None:
            return fault
    return None


def check_interactions_left(config, dataset):
    """Refuse a filtered ``dataset`` without interactions, or, for a leave-one-out split, without a user who has
    enough interactions for it."""
    inter_file = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    filters = (
        f"user_inter_num_interval {config['user_inter_num_interval']}, item_inter_num_interval "
        f"{config['item_inter_num_interval']}, val_interval {config['val_interval']}"
    )
    if dataset.inter_num == 0:
        raise DataFileError(f"{inter_file}: no interaction is left after filtering ({filters})")
    split = (config["eval_args"] or {}).get("split") or {}
    if "LS" in split and not config["benchmark_filename"]:
        longest = int(np.bincount(np.asarray(dataset.inter_feat[dataset.uid_field])).max())
        if longest < LEAVE_ONE_OUT_MINIMUM:
            raise DataFileError(
                f"{inter_file}: after filtering ({filters}) no user has the {LEAVE_ONE_OUT_MINIMUM} interactions of "
                f"the leave-one-out split (training, validation, test); the most any user has is {longest}"
            )
