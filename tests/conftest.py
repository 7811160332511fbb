"""Shared fixtures: tiny synthetic RecBole datasets and a fast configuration.

``markov``: every user walks a fixed random permutation of the items (item_{k+1} = next[item_k]) from a random
start, so the next item is fully determined by the last one: a sequential model must reach a high HR@10.
``random``: every item is drawn uniformly and independently, so no model can beat chance (HR@10 = 10 / n_items);
a model that does has seen the target.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model

N_USERS = 300
N_ITEMS = 60
SEQUENCE_LENGTH = 12
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SCRIPT = Path(__file__).resolve().parents[1] / "run_recbole_diffusion.py"


def write_atomic_inter(folder, name, sequences):
    """Write ``{user: [items in order]}`` as ``<folder>/<name>/<name>.inter`` with per-user timestamps."""
    dataset_dir = Path(folder) / name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user, items in sequences.items():
        lines += [f"u{user}\ti{item}\t{position}" for position, item in enumerate(items, start=1)]
    (dataset_dir / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return dataset_dir


def markov_sequences(seed=0):
    rng = np.random.default_rng(seed)
    successor = rng.permutation(N_ITEMS)
    sequences = {}
    for user in range(N_USERS):
        item = int(rng.integers(N_ITEMS))
        walk = [item]
        for _ in range(SEQUENCE_LENGTH - 1):
            item = int(successor[item])
            walk.append(item)
        sequences[user] = walk
    return sequences


def random_sequences(seed=0):
    rng = np.random.default_rng(seed)
    return {user: rng.integers(N_ITEMS, size=SEQUENCE_LENGTH).tolist() for user in range(N_USERS)}


def build_model(model_name, config_dict, dataset="markov"):
    """Config, seeded model and train / valid / test data for ``model_name`` on one of the synthetic datasets."""
    config = Config(model=model_name, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def training_dataset(model_name, config_dict, dataset="markov"):
    """The training split's dataset of ``model_name`` on one of the synthetic datasets (no model built)."""
    config = Config(model=model_name, dataset=dataset, config_dict=config_dict)
    return data_preparation(config, create_dataset(config))[0]._dataset


def model_on(dataset, model_name, config_dict):
    """``model_name`` built from ``config_dict`` on an already built training ``dataset``: a check of a configuration
    (the model's constructor validates it) without preparing the data again."""
    config = Config(model=model_name, dataset=dataset.dataset_name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    return get_model(model_name)(config, dataset)


def run_script(tmp_path, *args):
    """``run_recbole_diffusion.py`` with ``args`` in a subprocess working in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300
    )


def script_args(data_path, tmp_path):
    """Command-line settings of a fast script run on the synthetic datasets in ``data_path``."""
    return [
        f"--data_path={data_path}",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}",
        "--MAX_ITEM_LIST_LENGTH=10",
        "--epochs=1",
        "--show_progress=False",
        "--hidden_size=16",
        "--inner_size=16",
        "--n_layers=1",
    ]


def count_calls_in_full_sort(model, module, test_data):
    """How many times ``module`` runs while ``model``, in eval mode, full-sort scores the first test batch."""
    model.eval()
    batch = next(iter(test_data))[0]
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    model.full_sort_predict(batch)
    return len(calls)


@pytest.fixture(autouse=True, scope="session")
def isolated_session_argv():
    """RecBole's Config reads every --key=value of sys.argv; pytest's own flags must not leak into it, also not in the
    fixtures that train once for several tests (built before any test's own fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["pytest"])
        yield


@pytest.fixture(autouse=True)
def isolated_argv(monkeypatch):
    """The same for each test: a test that sets sys.argv leaves it to itself."""
    monkeypatch.setattr(sys, "argv", ["pytest"])


@pytest.fixture(scope="session")
def data_path(tmp_path_factory):
    """A folder with the ``markov`` and ``random`` datasets."""
    folder = tmp_path_factory.mktemp("datasets")
    write_atomic_inter(folder, "markov", markov_sequences())
    write_atomic_inter(folder, "random", random_sequences())
    return str(folder)


FAST_SETTINGS = {
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "MAX_ITEM_LIST_LENGTH": 10,
    "metrics": ["Hit", "NDCG"],
    "topk": [10],
    "valid_metric": "Hit@10",
    "show_progress": False,
    "state": "WARNING",
    "seed": 2020,
    "reproducibility": True,
    "epochs": 1,
    "train_batch_size": 256,
    "eval_batch_size": 1024,
    "stopping_step": 100,
}


@pytest.fixture
def tiny_config(data_path, tmp_path):
    """Fast settings shared by the tests: small models, few epochs, leave-one-out full-sort evaluation."""
    return {**FAST_SETTINGS, "data_path": data_path, "checkpoint_dir": str(tmp_path / "saved")}


@pytest.fixture(scope="session")
def general_data_path(tmp_path_factory):
    """A folder with the general models' ``markov``, ``random_distinct`` and ``no_time`` (tests/general_data.py)."""
    from tests.general_data import random_distinct_sequences, write_untimed_inter

    folder = tmp_path_factory.mktemp("general_datasets")
    write_atomic_inter(folder, "markov", markov_sequences())
    write_atomic_inter(folder, "random_distinct", random_distinct_sequences())
    write_untimed_inter(folder, "no_time", markov_sequences())
    return str(folder)


@pytest.fixture(scope="session")
def sequential_dataset(data_path):
    """The markov training data as the sequential models see it with ``FAST_SETTINGS``, built once (model_on)."""
    return training_dataset("DreamRec", {**FAST_SETTINGS, "data_path": data_path})


@pytest.fixture(scope="session")
def general_dataset(general_data_path):
    """The general models' markov training data with ``FAST_SETTINGS``, built once (model_on)."""
    return training_dataset("DiffRec", {**FAST_SETTINGS, "data_path": general_data_path})


@pytest.fixture
def general_config(tiny_config, general_data_path):
    """``tiny_config`` on the general datasets (leave-one-out by time, full sort; train history masked)."""
    return {**tiny_config, "data_path": general_data_path}
