"""One test per RecBole 1.2.1 breakage that recbole_diffusion.compat repairs."""

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data.dataset import Dataset
from recbole.utils import init_seed

import recbole_diffusion
from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer
from recbole_diffusion.compat import _MODULES_USING_SPARSE_FLOAT_TENSOR, _sparse_float_tensor, plain_data
from tests.conftest import FAST_SETTINGS


def test_numpy2_aliases_let_config_build():
    for alias in ("float_", "complex_", "unicode_", "bool8"):
        assert hasattr(np, alias)
    config = Config(model="SASRec", dataset="ml-100k")
    assert config["model"] == "SASRec"


def _write_features(folder):
    dataset_dir = folder / "feats"
    dataset_dir.mkdir()
    (dataset_dir / "feats.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        + "".join(f"u{u}\ti{i}\t{u * 10 + i}\n" for u in range(4) for i in range(5))
    )
    (dataset_dir / "feats.item").write_text(
        "item_id:token\tprice:float\tbrand:token\ttags:token_seq\n"
        "i0\t1.0\tb0\tt1 t2\n"
        "i1\t\tb1\t\n"
        "i2\t3.0\t\tt3\n"
        "i3\t5.0\tb0\tt1\n"
        "i4\t\tb1\t\n"
    )


def test_pandas3_missing_values_are_filled(tmp_path):
    """pandas 3 made RecBole's in-place fillna a no-op: NaN floats stayed NaN and empty sequence cells crashed."""
    _write_features(tmp_path)
    config = Config(
        model="BPR",
        dataset="feats",
        config_dict={
            "data_path": str(tmp_path),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "price", "brand", "tags"]},
            "normalize_all": False,
            "checkpoint_dir": str(tmp_path / "saved"),
        },
    )
    dataset = Dataset(config)
    items = dataset.item_feat.set_index(dataset.id2token("item_id", dataset.item_feat["item_id"].values))
    assert not items["price"].isna().any()
    assert items.loc["i1", "price"] == pytest.approx(3.0)  # mean of 1, 3, 5
    assert len(items.loc["i1", "tags"]) == 0
    assert len(items.loc["i0", "tags"]) == 2
    assert items.loc["i2", "brand"] == 0  # the empty brand became the padding token
    assert items.loc["i0", "brand"] == items.loc["i3", "brand"] != 0


@pytest.fixture(scope="module")
def trained_sasrec(data_path, tmp_path_factory):
    """SASRec trained for two epochs on the markov data, its best checkpoint saved: read by the checkpoint tests."""
    settings = {
        **FAST_SETTINGS,
        "data_path": data_path,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
        "n_layers": 1,
        "hidden_size": 16,
        "inner_size": 16,
        "epochs": 2,
    }
    config = Config(model="SASRec", dataset="markov", config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model = get_model("SASRec")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    return trainer, test_data


def test_torch26_checkpoints_load_weights_only(trained_sasrec, data_path):
    trainer, test_data = trained_sasrec
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    assert checkpoint["config"]["model"] == "SASRec"
    assert checkpoint["config"]["MODEL_TYPE"] == "SEQUENTIAL"
    assert checkpoint["config_overrides"]["data_path"] == data_path
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    trainer.resume_checkpoint(trainer.saved_model_file)
    assert trainer.start_epoch == checkpoint["epoch"] + 1


def test_load_data_and_model_rebuilds_the_run(trained_sasrec):
    trainer, test_data = trained_sasrec
    _, model, _, _, _, reloaded_test = recbole_diffusion.load_data_and_model(trainer.saved_model_file)
    batch = next(iter(test_data))[0]
    model.eval()
    trainer.model.eval()
    trainer.model.load_state_dict(torch.load(trainer.saved_model_file, weights_only=True)["state_dict"])
    assert torch.allclose(model.full_sort_predict(batch), trainer.model.full_sort_predict(batch))
    assert len(reloaded_test.dataset) == len(test_data.dataset)


def test_plain_data_is_weights_only_safe(tmp_path):
    from recbole.utils import ModelType

    value = {"a": ModelType.GENERAL, "b": {1, 2}, "c": torch.device("cpu"), "d": np.float64(0.5), "e": (1, [2])}
    path = tmp_path / "plain.pt"
    torch.save(plain_data(value), path)
    loaded = torch.load(path, weights_only=True)
    assert loaded == {"a": "GENERAL", "b": [1, 2], "c": "cpu", "d": 0.5, "e": [1, [2]]}


def test_quick_start_ray_and_hyperopt_are_never_imported():
    code = (
        "import sys, recbole_diffusion, recbole_diffusion.hyper_search\n"
        "recbole_diffusion.Config(model='DreamRec', dataset='ml-100k')\n"
        "bad = [m for m in sys.modules if m.startswith(('recbole.quick_start', 'ray', 'hyperopt'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recbole_exhaustive_search_runs_on_current_hyperopt():
    """RecBole handed hyperopt a RandomState; hyperopt draws with the Generator API (rng.integers)."""
    pytest.importorskip("hyperopt")
    from recbole.trainer.hyper_tuning import HyperTuning

    tried = []

    def objective(params, config_file_list):
        tried.append(params["x"])
        score = {"best_valid_score": params["x"], "valid_score_bigger": True}
        return {"model": "none", "best_valid_result": {}, "test_result": {}, **score}

    HyperTuning(objective, params_dict={"choice": {"x": [1, 2, 3]}}, algo="exhaustive").run()
    assert sorted(tried) == [1, 2, 3]


def test_ensure_dir_is_safe_when_the_folder_appears_meanwhile(tmp_path):
    """Distributed ranks raced in RecBole's exists-then-makedirs; every RecBole caller now uses the safe one."""
    from recbole_diffusion.compat import _MODULES_USING_ENSURE_DIR, ensure_dir

    folder = tmp_path / "a" / "b"
    ensure_dir(str(folder))
    ensure_dir(str(folder))
    assert folder.is_dir()
    for module_name in _MODULES_USING_ENSURE_DIR:
        assert importlib.import_module(module_name).ensure_dir is ensure_dir, module_name


def test_recbole_graph_models_build_their_adjacency_on_current_scipy(tiny_config):
    """scipy >= 1.13 removed dok_matrix._update; LightGCN's adjacency matrix is built with it."""
    config = Config(model="LightGCN", dataset="markov", config_dict={**tiny_config, "embedding_size": 8})
    train_data = data_preparation(config, create_dataset(config))[0]
    model = get_model("LightGCN")(config, train_data._dataset)
    n_nodes = model.n_users + model.n_items
    assert tuple(model.norm_adj_matrix.shape) == (n_nodes, n_nodes)
    assert model.norm_adj_matrix._nnz() > 0


def test_dataset_tensors_own_their_memory_under_pandas_copy_on_write(tiny_config):
    """pandas 3 hands out read-only arrays; RecBole's torch.LongTensor(array) shared them (a UserWarning, and writes
    to the tensor went into pandas' buffer)."""
    config = Config(model="BPR", dataset="markov", config_dict=tiny_config)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="The given NumPy array is not writable")
        dataset = create_dataset(config)
        times = np.array([1.0, 2.0, 3.0], dtype=np.float32)
        frame = pd.DataFrame({"user_id": np.array([1, 2, 3]), "timestamp": times})
        assert not frame["user_id"].values.flags.writeable  # the pandas behaviour being repaired
        interaction = dataset._dataframe_to_interaction(frame)
    interaction["user_id"][0] = 7
    interaction["timestamp"][0] = 7.0
    assert frame["user_id"].tolist() == [1, 2, 3] and frame["timestamp"].tolist() == [1.0, 2.0, 3.0]
    assert interaction["user_id"].dtype == torch.int64 and interaction["timestamp"].dtype == torch.float32


def test_recbole_graph_models_build_sparse_matrices_without_the_deprecated_constructor(tiny_config):
    """RecBole's graph models called torch.sparse.FloatTensor: a deprecation UserWarning at every model built."""
    config = Config(model="LightGCN", dataset="markov", config_dict={**tiny_config, "embedding_size": 8})
    train_data = data_preparation(config, create_dataset(config))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = get_model("LightGCN")(config, train_data._dataset)
    assert model.norm_adj_matrix.is_sparse and model.norm_adj_matrix._nnz() > 0
    for module_name in _MODULES_USING_SPARSE_FLOAT_TENSOR:
        assert importlib.import_module(module_name).torch.sparse.FloatTensor is _sparse_float_tensor, module_name
    indices = torch.tensor([[0, 1, 1], [1, 0, 2]])
    for values in (torch.tensor([0.5, 2.0, 1.0]), torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)):
        for size in ((), (torch.Size([3, 4]),)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                legacy = torch.sparse.FloatTensor(indices, values, *size)
            made = _sparse_float_tensor(indices, values, *size)
            assert made.dtype == legacy.dtype and made.shape == legacy.shape
            assert torch.equal(made.to_dense(), legacy.to_dense())


@pytest.mark.parametrize("model_name", ["EASE", "ItemKNN", "LightGCN", "Pop"])
def test_models_with_extra_state_reload_their_best_checkpoint(tiny_config, model_name):
    """EASE/ItemKNN keep numpy arrays and scipy matrices in ``other_parameter``, LightGCN cached tensors, Pop
    counts; the checkpoint loads with ``weights_only=True`` and restores the model's scores. ``eval_step: 2``: the
    one-epoch trainer of EASE, ItemKNN and Pop must still validate and save."""
    config_dict = {**tiny_config, "embedding_size": 8, "epochs": 2, "eval_step": 2}
    config = Config(model=model_name, dataset="markov", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    batch = next(iter(test_data))[0]
    model.eval()
    with torch.no_grad():
        saved_scores = model.full_sort_predict(batch)
    torch.load(trainer.saved_model_file, weights_only=True)
    for name in getattr(model, "other_parameter_name", []):
        setattr(model, name, None)
    trainer.evaluate(test_data, load_best_model=True)
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch), saved_scores)


def test_extra_state_round_trip_keeps_types_and_values():
    from scipy import sparse

    from recbole_diffusion.compat import restored_value, weights_only_value

    matrix = sparse.random(5, 4, density=0.4, format="coo", random_state=0, dtype=np.float32)
    value = {
        "array": np.arange(6.0).reshape(2, 3),
        "np_matrix": np.asmatrix(np.eye(2)),
        "matrix": matrix,
        "tensor": torch.ones(2),
        "count": np.int64(3),
        "nested": [np.ones(2), (None, 1.5)],
        "layer": torch.nn.Linear(2, 2),
    }
    restored = restored_value(weights_only_value(value))
    np.testing.assert_array_equal(restored["array"], value["array"])
    assert type(restored["array"]) is np.ndarray and type(restored["np_matrix"]) is np.matrix
    assert sparse.issparse(restored["matrix"]) and (restored["matrix"] != matrix.tocsr()).nnz == 0
    assert torch.equal(restored["tensor"], value["tensor"]) and restored["count"] == 3
    np.testing.assert_array_equal(restored["nested"][0], np.ones(2))
    assert restored["nested"][1] == (None, 1.5)
    assert restored["layer"] == "__submodule_in_state_dict__"  # skipped on load: its weights are in the state_dict


def test_pop_counts_every_occurrence_of_an_item_and_no_negatives(tiny_config):
    """RecBole's Pop added 1 to an item once per batch however often it occurred there; with small batches of the
    markov data items recur within a batch. The plugin's Pop.yaml turns off the negative sampling it would count."""
    config = Config(model="Pop", dataset="markov", config_dict={**tiny_config, "train_batch_size": 64})
    assert config["train_neg_sample_args"]["distribution"] == "none"
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = get_model("Pop")(config, train_data._dataset)
    get_trainer(config["MODEL_TYPE"], config["model"])(config, model).fit(train_data, valid_data, saved=False)
    items = train_data._dataset.inter_feat[train_data._dataset.iid_field]
    assert len(items) > len(torch.unique(items)) * 2  # items recur, so some recur within a batch of 64
    assert torch.equal(model.item_cnt[:, 0], torch.bincount(items, minlength=model.n_items))


PRESPLIT_HISTORIES = {
    "train": [[1], [1, 2], [1, 2, 3], [4]],
    "valid": [[1, 2, 3, 4], [4, 5]],
    "test": [[1, 2, 3, 4, 5]],
}


def _write_presplit_files(folder):
    """Pre-split files ``presplit.{train,valid,test}.inter``: per row a user, its history and the next item."""
    dataset_dir = folder / "presplit"
    dataset_dir.mkdir()
    for part, histories in PRESPLIT_HISTORIES.items():
        rows = [f"u{len(history) % 2}\t{' '.join(f'i{item}' for item in history)}\ti9" for history in histories]
        header = "user_id:token\titem_id_list:token_seq\titem_id:token"
        (dataset_dir / f"presplit.{part}.inter").write_text("\n".join([header, *rows]) + "\n")


@pytest.mark.parametrize("model_name", ["DreamRec", "SASRec"])
def test_presplit_benchmark_files_keep_each_history_length(tiny_config, tmp_path, model_name):
    """pandas 3 made SequentialDataset._benchmark_presets give every row the row count as its history length."""
    _write_presplit_files(tmp_path)
    settings = {
        **tiny_config,
        "data_path": str(tmp_path),
        "load_col": None,
        "benchmark_filename": ["train", "valid", "test"],
        "alias_of_item_id": ["item_id_list"],
    }
    config = Config(model=model_name, dataset="presplit", config_dict=settings)
    parts = create_dataset(config).build()
    for part, built in zip(PRESPLIT_HISTORIES, parts):
        lengths = [len(history) for history in PRESPLIT_HISTORIES[part]]
        assert built.inter_feat[built.item_list_length_field].tolist() == lengths


def test_a_recbole_sequential_model_leaves_anomaly_mode_off():
    """RecBole's sine.py switches torch's anomaly mode on at import: every later backward pass would run slowly."""
    from recbole.model.sequential_recommender import sine

    assert sine.SINE is get_model("SINE")
    assert not torch.is_anomaly_enabled()


def test_recbole_training_uses_torch_amp_without_deprecation_warnings(data_path, tmp_path):
    """RecBole's trainer made its scaler and autocast through torch.cuda.amp: a FutureWarning at every training."""
    settings = {**FAST_SETTINGS, "data_path": data_path, "checkpoint_dir": str(tmp_path), "n_layers": 1}
    config = Config(model="SASRec", dataset="markov", config_dict={**settings, "hidden_size": 8, "inner_size": 8})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, get_model("SASRec")(config, train_data._dataset))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        trainer._train_epoch(train_data, 0, show_progress=False)
