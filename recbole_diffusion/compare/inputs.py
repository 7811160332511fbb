"""The checks of :func:`recbole_diffusion.compare.compare`'s arguments, made before any data is loaded, and which
models a comparison runs: the popularity model it adds, and the baselines."""

from pathlib import Path

from recbole.utils import ModelType

from recbole_diffusion.two_stage import is_two_stage
from recbole_diffusion.utils import get_model, is_plugin_model
from recbole_diffusion.validation import InputError, is_positive_int

STEP_GRID_KEY = "inference_step_grid"
SEQUENTIAL_POPULARITY, GENERAL_POPULARITY = "SequentialPop", "Pop"
POPULARITY_MODELS = (SEQUENTIAL_POPULARITY, GENERAL_POPULARITY)


class CompareInputError(InputError):
    """An argument of :func:`compare` is unusable; the message names it."""


def checked_models(models):
    """``models`` (a list or a comma-separated str) as a list, the popularity model of their kind of data first
    unless named; refused: repeats, two-stage models, sequential beside non-sequential models."""
    if isinstance(models, str):
        models = [name.strip() for name in models.split(",")]
    models = list(models)
    if not models or not all(isinstance(name, str) and name for name in models):
        raise CompareInputError(f"models: expected one or more model names, got {models!r}")
    repeated = sorted({name for name in models if models.count(name) > 1})
    if repeated:
        raise CompareInputError(f"models: each model may appear once, repeated: {', '.join(repeated)}")
    for name in models:
        if is_two_stage(get_model(name)):
            raise CompareInputError(
                f"models: {name} is a two-stage model, which compare does not support; run it alone"
            )
    sequential = [name for name in models if get_model(name).type == ModelType.SEQUENTIAL]
    if sequential and len(sequential) < len(models):
        others = [name for name in models if name not in sequential]
        message = (
            f"models: sequential ({', '.join(sequential)}) and non-sequential ({', '.join(others)}) models read "
            "different data and splits; compare them in separate runs"
        )
        if GENERAL_POPULARITY in others:
            message += f"; the popularity model of a sequential comparison is {SEQUENTIAL_POPULARITY}, added by itself"
        raise CompareInputError(message)
    popularity = SEQUENTIAL_POPULARITY if sequential else GENERAL_POPULARITY
    return models if popularity in models else [popularity, *models]


def is_baseline(model_name):
    """Whether ``model_name`` is a baseline of a comparison: a popularity model or any non-plugin model."""
    return model_name in POPULARITY_MODELS or not is_plugin_model(get_model(model_name))


def checked_seeds(seeds):
    """``seeds`` as a list of distinct ints."""
    seeds = list(seeds)
    if not seeds or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise CompareInputError(f"seeds: expected one or more integer seeds, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise CompareInputError(f"seeds: each seed may appear once, got {seeds!r}")
    return seeds


def checked_cells(cells, models, seeds):
    """``cells`` as a set of (model, seed) pairs after checking each against ``models`` and ``seeds``; ``None``
    (every cell) stays ``None``."""
    if cells is None:
        return None
    cells = list(cells)
    if not cells:
        raise CompareInputError("cells: expected one or more (model, seed) cells, got none")
    checked = set()
    for cell in cells:
        if not isinstance(cell, (tuple, list)) or len(cell) != 2:
            raise CompareInputError(f"cells: expected (model, seed) pairs, got {cell!r}")
        name, seed = cell
        if name not in models:
            raise CompareInputError(
                f"cells: {name}:{seed}: {name} is not one of the compared models ({', '.join(models)})"
            )
        if seed not in seeds or isinstance(seed, bool):
            raise CompareInputError(
                f"cells: {name}:{seed}: {seed!r} is not one of the seeds ({', '.join(map(str, seeds))})"
            )
        if (name, seed) in checked:
            raise CompareInputError(f"cells: {name}:{seed} is named twice")
        checked.add((name, seed))
    return checked


def checked_model_config_files(model_config_files, models):
    """``model_config_files`` as a dict of lists of str, after checking its models and files."""
    model_config_files = model_config_files or {}
    if not isinstance(model_config_files, dict):
        raise CompareInputError(f"model_config_files: expected a dict model name -> files, got {model_config_files!r}")
    checked = {}
    for name, files in model_config_files.items():
        if name not in models:
            raise CompareInputError(
                f"model_config_files: {name!r} is not one of the compared models ({', '.join(models)})"
            )
        if isinstance(files, (str, Path)) or not files:
            raise CompareInputError(f"model_config_files: {name}: expected a list of yaml files, got {files!r}")
        missing = [str(path) for path in files if not Path(path).is_file()]
        if missing:
            raise CompareInputError(f"model_config_files: {name}: no such file: {', '.join(missing)}")
        checked[name] = [str(path) for path in files]
    return checked


def check_step_grid(grid):
    """Refuse an ``inference_step_grid`` that is not a list of positive step counts and ``None``."""
    if not isinstance(grid, (list, tuple)) or not all(steps is None or is_positive_int(steps) for steps in grid):
        raise CompareInputError(
            f"{STEP_GRID_KEY}: expected a list of positive step counts and ~ (the full DDPM chain), got {grid!r}"
        )
