"""Where the plugin's yaml files live: ``properties/`` and ``dataset_configs/``.

In the repository (and so in an editable install) they sit beside the package; an installed wheel carries them
inside the package as ``recbole_diffusion/properties`` and ``recbole_diffusion/dataset_configs``.
"""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCE_NAMES = ("properties", "dataset_configs")


def resource_dir(name):
    """The folder ``properties`` or ``dataset_configs``, from the installed package or the repository root."""
    if name not in RESOURCE_NAMES:
        raise ValueError(f"resource_dir: unknown resource {name!r}; allowed: {', '.join(RESOURCE_NAMES)}")
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"recbole_diffusion's {name}/ folder is missing (looked in {_PACKAGE_DIR} and {_PACKAGE_DIR.parent}); "
        "reinstall the package"
    )


def overall_yaml():
    """The plugin-wide defaults file."""
    return resource_dir("properties") / "overall.yaml"


def model_yaml(model_name):
    """``properties/model/<model_name>.yaml`` (may not exist)."""
    return resource_dir("properties") / "model" / f"{model_name}.yaml"


def hyper_space(model_name):
    """``properties/hyper/<model_name>.hyper``, the model's shipped search space (may not exist)."""
    return resource_dir("properties") / "hyper" / f"{model_name}.hyper"


def dataset_yaml(dataset_name):
    """``dataset_configs/<dataset_name>.yaml`` (may not exist)."""
    return resource_dir("dataset_configs") / f"{dataset_name}.yaml"
