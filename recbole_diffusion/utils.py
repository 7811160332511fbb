"""Model and trainer registry (plugin models first, RecBole's as the fallback) and per-run logging."""

import difflib
import importlib
import importlib.util
import inspect
import logging

import colorlog
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import ModelType, init_logger
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils.logger import RemoveColorFilter

_PLUGIN_MODELS = {}
_PLUGIN_TRAINERS = {}
_RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
)
# RecBole's own get_model walks into exlib_recommender for every unknown name, and that package imports
# lightgbm and xgboost (not installed by RecBole): only look there for the two models it holds.
_RECBOLE_EXLIB_MODELS = ("LightGBM", "XGBoost")


class ModelNotFoundError(ValueError):
    """No plugin or RecBole model has the requested name."""


def register_model(model_class):
    """Class decorator: make ``model_class`` available to :func:`get_model` under its class name."""
    if not (inspect.isclass(model_class) and issubclass(model_class, AbstractRecommender)):
        raise TypeError(f"register_model: {model_class!r} is not a RecBole AbstractRecommender subclass")
    _PLUGIN_MODELS[model_class.__name__] = model_class
    return model_class


def register_trainer(model_name):
    """Class decorator: use the decorated trainer class for the plugin model ``model_name``."""

    def decorator(trainer_class):
        _PLUGIN_TRAINERS[model_name] = trainer_class
        return trainer_class

    return decorator


def _load_plugin_models():
    importlib.import_module("recbole_diffusion.model")


def plugin_model_names():
    """Sorted names of the plugin's models."""
    _load_plugin_models()
    return sorted(_PLUGIN_MODELS)


def is_plugin_model(model_class):
    """Whether ``model_class`` is a model registered by this plugin."""
    _load_plugin_models()
    return _PLUGIN_MODELS.get(getattr(model_class, "__name__", None)) is model_class


def recbole_model_names():
    """Names of RecBole's built-in models (only computed for error messages)."""
    names = set()
    for package in _RECBOLE_MODEL_PACKAGES:
        module = importlib.import_module(f"recbole.model.{package}")
        names.update(
            name
            for name, value in vars(module).items()
            if inspect.isclass(value) and issubclass(value, AbstractRecommender)
        )
    return sorted(names)


def _recbole_model(model_name):
    """RecBole's model class called exactly ``model_name``, or None."""
    packages = ("exlib_recommender",) if model_name in _RECBOLE_EXLIB_MODELS else _RECBOLE_MODEL_PACKAGES
    for package in packages:
        module_path = f"recbole.model.{package}.{model_name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            return getattr(importlib.import_module(module_path), model_name, None)
    return None


def get_model(model_name):
    """The model class called ``model_name``: a plugin model, else a RecBole model.

    Raises:
        ModelNotFoundError: no such model; the message lists close matches and the plugin's models.
    """
    _load_plugin_models()
    if model_name in _PLUGIN_MODELS:
        return _PLUGIN_MODELS[model_name]
    model_class = _recbole_model(str(model_name))
    if model_class is None:
        known = plugin_model_names() + recbole_model_names()
        same_but_case = [name for name in known if name.lower() == str(model_name).lower()]
        close = same_but_case + [
            name
            for name in difflib.get_close_matches(str(model_name), known, n=5, cutoff=0.5)
            if name not in same_but_case
        ]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(
            f"Unknown model {model_name!r}.{hint} Plugin models: {', '.join(plugin_model_names())}; "
            f"RecBole's models (SASRec, GRU4Rec, BERT4Rec, LightGCN, MultiVAE, ...) are available too."
        )
    return model_class


def get_trainer(model_type, model_name):
    """The trainer class for a model: the plugin's registered trainer, else RecBole's choice.

    For a plugin model the choice is made by model type only, never by a RecBole model of the same name: RecBole's
    ``KGTrainer`` or ``TraditionalTrainer`` for those types, else the plugin's ``DiffusionTrainer`` (RecBole's
    ``Trainer`` with the embedding-collapse check).
    """
    _load_plugin_models()
    if model_name in _PLUGIN_TRAINERS:
        return _PLUGIN_TRAINERS[model_name]
    if model_name in _PLUGIN_MODELS:
        trainer_module = importlib.import_module("recbole.trainer")
        by_type = {ModelType.KNOWLEDGE: "KGTrainer", ModelType.TRADITIONAL: "TraditionalTrainer"}
        if model_type in by_type:
            return getattr(trainer_module, by_type[model_type])
        from recbole_diffusion.trainer import DiffusionTrainer  # imports recbole.trainer: only when needed

        return DiffusionTrainer
    return recbole_get_trainer(model_type, model_name)


def init_run_logger(config):
    """RecBole's ``init_logger`` for one more run in this process (a comparison, a search trial).

    ``init_logger`` configures the root logger with ``logging.basicConfig``, which does nothing once the root has
    handlers: every later run of the process would log to the first run's file. The handlers an earlier
    ``init_logger`` attached (its file handler, its coloured console handler) are closed and removed first.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        from_recbole = any(isinstance(log_filter, RemoveColorFilter) for log_filter in handler.filters) or isinstance(
            handler.formatter, colorlog.ColoredFormatter
        )
        if from_recbole:
            root.removeHandler(handler)
            handler.close()
    init_logger(config)
