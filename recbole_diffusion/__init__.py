"""recbole_diffusion: diffusion recommenders as a RecBole plugin.

Importing the package repairs RecBole 1.2.1 for numpy 2, pandas 3 and torch >= 2.6 (see :mod:`.compat`) and adds
the diversity metrics ILD and CategoryCoverage to RecBole's evaluator (see :mod:`.metrics`).
"""

from recbole_diffusion import compat

compat.apply()

from recbole_diffusion.config import Config  # noqa: E402
from recbole_diffusion.data import DatasetNotFoundError, create_dataset, data_preparation  # noqa: E402
from recbole_diffusion.metrics import register_metrics  # noqa: E402
from recbole_diffusion.quick_start import load_data_and_model, run, run_recbole_diffusion  # noqa: E402
from recbole_diffusion.utils import (  # noqa: E402
    ModelNotFoundError,
    get_model,
    get_trainer,
    plugin_model_names,
    register_model,
    register_trainer,
)

register_metrics()

__version__ = "0.1.0"
__all__ = [
    "Config",
    "DatasetNotFoundError",
    "create_dataset",
    "data_preparation",
    "get_model",
    "get_trainer",
    "load_data_and_model",
    "ModelNotFoundError",
    "plugin_model_names",
    "register_model",
    "register_trainer",
    "run",
    "run_recbole_diffusion",
]
