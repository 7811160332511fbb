"""Repairs that let RecBole 1.2.1 run on numpy 2, pandas 3 and torch >= 2.6.

``apply()`` runs once when :mod:`recbole_diffusion` is imported. Each repair is small, targeted and covered by
``tests/test_compat.py``:

* numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``; RecBole's
  ``Config.compatibility_settings`` reads the first three, so every ``Config()`` raised AttributeError.
* pandas 3 (copy-on-write) turns ``df[col].fillna(..., inplace=True)`` into a silent no-op. RecBole's
  ``Dataset._fill_nan`` then leaves NaN in token and float columns, and ``Dataset._load_feat`` crashes on an empty
  cell of a ``token_seq``/``float_seq`` column. pandas 3 also made ``Series.agg(len)`` return the length of the
  Series instead of each cell's length; RecBole relies on the latter for every ``token_seq``/``float_seq``
  field (remapping, normalisation, discretisation, benchmark-file item_length), which crashed or gave every row
  the same wrong length. Dataset construction now runs with the per-cell meaning, and so does
  ``SequentialDataset._benchmark_presets``, which runs after it for pre-split files (``benchmark_filename``) and set
  every ``item_length`` to the number of rows, without an error.
* torch >= 2.6 loads checkpoints with ``weights_only=True``; RecBole pickled the whole ``Config`` object into each
  checkpoint, so ``Trainer.evaluate(load_best_model=True)`` and ``Trainer.resume_checkpoint`` raised
  UnpicklingError. Checkpoints now hold the configuration as plain data and are written with torch's default
  pickle protocol (RecBole's protocol 4 emits FRAME opcodes that the weights-only unpickler rejects), so they load
  with ``weights_only=True``. Models' extra state (``other_parameter``: EASE's and ItemKNN's numpy arrays and scipy
  matrices, ...) is stored as tensors and turned back into arrays and matrices on load; submodules in it are left
  to the ``state_dict``, which holds their weights already.
* A distributed run on the CPU (gloo backend, see :class:`recbole_diffusion.Config`) needs
  ``DistributedDataParallel`` without ``device_ids``; RecBole always passes ``device_ids=[local_rank]``.
* ``recbole.utils.ensure_dir`` checks for a folder and then creates it; the processes of a distributed run race
  there (FileExistsError in the trainer or logger set-up). It now creates the folder with ``exist_ok=True``.
* scipy >= 1.13 dropped ``dok_matrix._update``, which RecBole's graph models (LightGCN, NGCF, NCL, ...) call to
  build their adjacency matrix; it is restored as an update of the matrix's own dict.
* ``recbole.quick_start`` imports ray at module level (which needs ``pkg_resources`` and ``np.bool8``); the plugin
  never imports it and has its own quick start.
* RecBole's exhaustive hyperparameter search (``recbole.trainer.hyper_tuning.exhaustive_search``) hands hyperopt a
  ``np.random.RandomState``, but hyperopt (0.3) draws with the ``np.random.Generator`` API (``rng.integers``), so
  every exhaustive search failed at its first trial; it now gets ``np.random.default_rng``.
* ``TraditionalTrainer`` (EASE, Pop, ItemKNN, ...) trains one epoch but keeps ``eval_step`` from the config, so with
  ``eval_step > 1`` it never validated, never saved a checkpoint, and ``evaluate(load_best_model=True)`` raised
  FileNotFoundError; its ``eval_step`` is now capped at its one epoch.
* ``Pop`` counted an item once per training batch however often it occurs there (``item_cnt[item] =
  item_cnt[item] + 1`` with repeated indices adds 1 once), so with large batches every popular item saturated at the
  number of batches and the popularity order was lost; it now counts every occurrence. (RecBole's default negative
  sampling also put one random item per interaction into the counts: the plugin's ``properties/model/Pop.yaml``
  turns it off.)
* ``recbole.trainer.trainer`` makes its gradient scaler and autocast context through ``torch.cuda.amp``, deprecated
  since torch 2.4 (a FutureWarning at every training; the names are to be removed); its ``amp`` is now ``torch.amp``
  with both bound to CUDA, as the old names were.
* RecBole's graph models (LightGCN, NGCF, NCL, SGL, GCMC, DMF, DGCF, SpectralCF, KGIN, MCCLK and a layer) build
  their sparse matrices with the legacy ``torch.sparse.FloatTensor(indices, values[, size])`` constructor,
  deprecated (a UserWarning at every model built, DDRM's LightGCN pretraining included); inside those modules it now
  makes the same COO tensor through ``torch.sparse_coo_tensor`` (the legacy one kept the values' dtype too).
* pandas 3 (copy-on-write) hands out read-only arrays from ``Series.values``; ``Dataset._dataframe_to_interaction``
  turns them into tensors with ``torch.LongTensor(array)`` / ``torch.FloatTensor(array)``, which share the array's
  memory (a UserWarning at every dataset built: writing to such a tensor writes into memory pandas may share with
  other frames). Inside ``recbole.data.dataset.dataset`` those constructors now copy a read-only array first.
* RecBole's ``sine.py`` switches torch's anomaly mode on for the whole process when it is imported (with the first
  RecBole sequential model); the package is imported once at start and the mode left as it was.
"""

import contextlib
import enum
import functools
import importlib
import os
import types
import warnings

import numpy as np
import pandas as pd
import scipy.sparse
import torch

_REMOVED_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
}

_applied = False


def restore_numpy_aliases():
    """Give numpy 2 back the aliases that RecBole 1.2.1 (and ray 2.6) still use."""
    for name, value in _REMOVED_NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def plain_data(value):
    """Convert a configuration value to types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, dict):
        return {str(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain_data(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.generic):  # before the plain types: np.float64 is a float subclass
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


_NUMPY_ARRAY = "__numpy_array__"
_SCIPY_SPARSE = "__scipy_sparse_csr__"
_SUBMODULE = "__submodule_in_state_dict__"


def weights_only_value(value):
    """``value`` (a model's ``other_parameter`` entry) in types that ``torch.load(weights_only=True)`` accepts:
    numpy arrays and scipy sparse matrices become tagged dicts of tensors, containers are converted item by item,
    and a submodule becomes a tag (its weights are in the ``state_dict``). :func:`restored_value` inverts it.
    """
    if isinstance(value, torch.nn.Module):
        return _SUBMODULE
    if isinstance(value, np.ndarray):  # np.matrix (EASE's item similarity) stays a matrix
        return {_NUMPY_ARRAY: torch.from_numpy(np.ascontiguousarray(value)), "matrix": isinstance(value, np.matrix)}
    if scipy.sparse.issparse(value):
        matrix = value.tocsr()
        parts = (matrix.data, matrix.indices, matrix.indptr)
        return {_SCIPY_SPARSE: [torch.from_numpy(np.asarray(part)) for part in parts], "shape": list(matrix.shape)}
    if isinstance(value, dict):
        return {key: weights_only_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(weights_only_value(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def restored_value(value):
    """Invert :func:`weights_only_value` (arrays back to numpy, matrices back to scipy CSR)."""
    if isinstance(value, dict) and _NUMPY_ARRAY in value:
        array = value[_NUMPY_ARRAY].numpy()
        return np.asmatrix(array) if value["matrix"] else array
    if isinstance(value, dict) and _SCIPY_SPARSE in value:
        data, indices, indptr = (part.numpy() for part in value[_SCIPY_SPARSE])
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=tuple(value["shape"]))
    if isinstance(value, dict):
        return {key: restored_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(restored_value(item) for item in value)
    return value


def _load_other_parameter(self, para):
    """Replacement of ``AbstractRecommender.load_other_parameter`` for checkpoints of :func:`checkpoint_state`."""
    if para is None:
        return
    for key, value in para.items():
        if not (isinstance(value, torch.nn.Module) or (isinstance(value, str) and value == _SUBMODULE)):
            setattr(self, key, restored_value(value))


def checkpoint_state(trainer, epoch):
    """The content of a RecBole trainer checkpoint, with the config stored as plain data."""
    return {
        "config": plain_data(trainer.config.final_config_dict),
        "config_overrides": plain_data(trainer.config.external_config_dict),
        "epoch": epoch,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "state_dict": trainer.model.state_dict(),
        "other_parameter": weights_only_value(trainer.model.other_parameter()),
        "optimizer": trainer.optimizer.state_dict(),
    }


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """Replacement of ``Trainer._save_checkpoint`` that writes a weights-only loadable checkpoint."""
    from recbole.utils import set_color

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    torch.save(checkpoint_state(self, epoch), saved_model_file)
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def _fill_nan(self):
    """Replacement of ``Dataset._fill_nan`` that assigns the filled columns instead of filling a copy in place."""
    from recbole.utils import FeatureType, set_color

    self.logger.debug(set_color("Filling nan", "green"))
    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(
                    lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                )


def _read_csv_with_empty_sequences(*args, **kwargs):
    """``pd.read_csv`` for RecBole's ``_load_feat``: empty ``*_seq`` cells become '' instead of NaN.

    ``_load_feat`` reads columns named ``field:type`` and then fills empty sequence cells with an in-place
    ``fillna`` that pandas 3 ignores; filling them here gives the behaviour RecBole intended.
    """
    frame = pd.read_csv(*args, **kwargs)
    sequence_columns = [column for column in frame.columns if str(column).endswith("_seq")]
    if sequence_columns:
        frame[sequence_columns] = frame[sequence_columns].fillna("")
    return frame


@contextlib.contextmanager
def _per_cell_length_aggregation():
    """Within the block, ``Series.agg(len)`` gives each cell's length (pandas < 3 behaviour RecBole relies on)."""
    original_agg = pd.Series.agg

    def agg(series, func=None, *args, **kwargs):
        if func is len:
            return series.map(len)
        return original_agg(series, func, *args, **kwargs)

    pd.Series.agg = agg
    try:
        yield
    finally:
        pd.Series.agg = original_agg


def _with_per_cell_length_aggregation(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _per_cell_length_aggregation():
            return method(*args, **kwargs)

    return wrapper


def _module_copy(module, **replaced):
    """A stand-in for ``module`` (to bind to a name inside one RecBole module) with some attributes replaced."""
    copy = types.ModuleType(module.__name__)
    copy.__dict__.update(module.__dict__)
    copy.__dict__.update(replaced)
    return copy


def _pandas_for_recbole_dataset():
    """A stand-in for the ``pd`` name inside ``recbole.data.dataset.dataset`` with the repaired ``read_csv``."""
    return _module_copy(pd, read_csv=_read_csv_with_empty_sequences)


def _numpy_for_recbole_hyper_tuning():
    """A stand-in for the ``np`` name inside ``recbole.trainer.hyper_tuning`` whose ``random.RandomState`` is
    ``np.random.default_rng`` (the only random generator that module makes is the exhaustive search's)."""
    return _module_copy(np, random=_module_copy(np.random, RandomState=np.random.default_rng))


def _amp_for_recbole_trainer():
    """A stand-in for the ``amp`` name (``torch.cuda.amp``) inside ``recbole.trainer.trainer``: ``torch.amp`` with
    ``GradScaler`` and ``autocast`` for CUDA, what ``torch.cuda.amp``'s deprecated names make."""
    return _module_copy(
        torch.amp,
        GradScaler=functools.partial(torch.amp.GradScaler, "cuda"),
        autocast=functools.partial(torch.amp.autocast, "cuda"),
    )


def _copying_read_only_arrays(constructor):
    """``constructor`` (``torch.LongTensor``, ``torch.FloatTensor``) that copies a read-only numpy array first, so the
    tensor owns writable memory instead of sharing a buffer that pandas may share with other frames."""

    @functools.wraps(constructor)
    def make(*args, **kwargs):
        if len(args) == 1 and isinstance(args[0], np.ndarray) and not args[0].flags.writeable:
            args = (args[0].copy(),)
        return constructor(*args, **kwargs)

    return make


def _torch_for_recbole_dataset():
    """A stand-in for the ``torch`` name inside ``recbole.data.dataset.dataset`` whose ``LongTensor`` and
    ``FloatTensor`` copy read-only arrays."""
    return _module_copy(
        torch,
        LongTensor=_copying_read_only_arrays(torch.LongTensor),
        FloatTensor=_copying_read_only_arrays(torch.FloatTensor),
    )


# RecBole modules that call the legacy ``torch.sparse.FloatTensor`` constructor.
_MODULES_USING_SPARSE_FLOAT_TENSOR = (
    "recbole.model.layers",
    "recbole.model.general_recommender.dgcf",
    "recbole.model.general_recommender.dmf",
    "recbole.model.general_recommender.gcmc",
    "recbole.model.general_recommender.lightgcn",
    "recbole.model.general_recommender.ncl",
    "recbole.model.general_recommender.ngcf",
    "recbole.model.general_recommender.sgl",
    "recbole.model.general_recommender.spectralcf",
    "recbole.model.knowledge_aware_recommender.kgin",
    "recbole.model.knowledge_aware_recommender.mcclk",
)


def _sparse_float_tensor(indices, values, size=None):
    """What ``torch.sparse.FloatTensor(indices, values[, size])`` makes, without the deprecated constructor."""
    shape = () if size is None else (size,)
    return torch.sparse_coo_tensor(indices, values, *shape, check_invariants=True)


def _torch_for_recbole_sparse_models():
    """A stand-in for the ``torch`` name inside RecBole's graph models whose ``sparse.FloatTensor`` is
    :func:`_sparse_float_tensor`."""
    return _module_copy(torch, sparse=_module_copy(torch.sparse, FloatTensor=_sparse_float_tensor))


def _distributed_data_parallel(module, device_ids=None, **kwargs):
    """``DistributedDataParallel`` that drops RecBole's ``device_ids`` for a module on the CPU."""
    if all(parameter.device.type == "cpu" for parameter in module.parameters()):
        device_ids = None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **kwargs)


def ensure_dir(dir_path):
    """Create ``dir_path`` (and parents) unless it exists; safe when several processes do it at once."""
    os.makedirs(dir_path, exist_ok=True)


_MODULES_USING_ENSURE_DIR = (
    "recbole.utils",
    "recbole.utils.utils",
    "recbole.utils.logger",
    "recbole.trainer.trainer",
    "recbole.data.dataset.dataset",
    "recbole.data.utils",
)


def _with_eval_step_within_epochs(init):
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.eval_step = min(self.eval_step, self.epochs)

    return wrapper


def _pop_calculate_loss(self, interaction):
    """RecBole's ``Pop.calculate_loss``, adding every occurrence of an item in the batch to its count."""
    item = interaction[self.ITEM_ID]
    self.item_cnt.index_add_(0, item, torch.ones_like(item).unsqueeze(1))
    self.max_cnt = torch.max(self.item_cnt, dim=0)[0]
    return torch.nn.Parameter(torch.zeros(1)).to(self.device)


def restore_dok_update():
    """Give ``scipy.sparse.dok_matrix`` back the ``_update(entries)`` method that RecBole's graph models call."""
    if not hasattr(scipy.sparse.dok_matrix, "_update"):
        scipy.sparse.dok_matrix._update = lambda matrix, entries: matrix._dict.update(entries)


def import_sequential_models_without_anomaly_mode():
    """Import RecBole's sequential models and leave torch's anomaly mode as it was.

    ``recbole/model/sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` when it is
    imported, that is when a RecBole sequential model (SASRec, GRU4Rec, ...) is first resolved, e.g. by a comparison.
    From then on every training step of the process, the plugin's models' included, recorded a stack trace for each
    autograd node and checked each backward output for NaN: slower training, and a comparison's efficiency figures
    measured in a mode that a single run of the same model did not have.
    """
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(enabled, check_nan)


def apply():
    """Apply every repair once; later calls do nothing."""
    global _applied
    if _applied:
        return
    restore_numpy_aliases()

    import recbole.data.dataset.dataset as dataset_module
    import recbole.data.dataset.sequential_dataset as sequential_dataset_module
    import recbole.trainer.hyper_tuning as hyper_tuning_module  # imports hyperopt only when a search runs
    import recbole.trainer.trainer as trainer_module
    from recbole.model.abstract_recommender import AbstractRecommender
    from recbole.model.general_recommender.pop import Pop

    dataset_module.Dataset._fill_nan = _fill_nan
    # The one remaining chained in-place fillna in _load_feat is harmless now (its cells are already filled).
    warnings.filterwarnings(
        "ignore", category=pd.errors.ChainedAssignmentError, module=r"recbole\.data\.dataset\.dataset"
    )
    dataset_module.pd = _pandas_for_recbole_dataset()
    dataset_module.torch = _torch_for_recbole_dataset()
    dataset_module.Dataset.__init__ = _with_per_cell_length_aggregation(dataset_module.Dataset.__init__)
    sequential_dataset = sequential_dataset_module.SequentialDataset
    sequential_dataset._benchmark_presets = _with_per_cell_length_aggregation(sequential_dataset._benchmark_presets)
    trainer_module.Trainer._save_checkpoint = _save_checkpoint
    traditional = trainer_module.TraditionalTrainer
    traditional.__init__ = _with_eval_step_within_epochs(traditional.__init__)
    AbstractRecommender.load_other_parameter = _load_other_parameter
    Pop.calculate_loss = _pop_calculate_loss
    trainer_module.DistributedDataParallel = _distributed_data_parallel
    trainer_module.amp = _amp_for_recbole_trainer()
    hyper_tuning_module.np = _numpy_for_recbole_hyper_tuning()
    restore_dok_update()
    import_sequential_models_without_anomaly_mode()
    for module_name in _MODULES_USING_ENSURE_DIR:
        importlib.import_module(module_name).ensure_dir = ensure_dir
    torch_for_sparse_models = _torch_for_recbole_sparse_models()
    for module_name in _MODULES_USING_SPARSE_FLOAT_TENSOR:
        importlib.import_module(module_name).torch = torch_for_sparse_models
    _applied = True
