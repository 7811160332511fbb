"""Loading an official snapshot's files: what every parity adapter needs before its own shims.

The official code is never copied into this project; adapters import it by path from the snapshot folder given as
``--official``, each file as a new module under a name of the adapter's choosing (official file names such as
``model.py`` or ``utils.py`` are too generic to be put in ``sys.modules`` as they are).
"""

import importlib.util
from pathlib import Path

import torch
from torch import nn

from recbole_diffusion.model.layers import init_normal_weights


def checked_snapshot(official_dir, files, folder):
    """``official_dir`` as a Path; FileNotFoundError naming the missing ``files`` (paths relative to it) when it is
    not the snapshot's ``folder`` (e.g. ``DiffRec/``, ``the repository root``)."""
    official_dir = Path(official_dir)
    missing = [name for name in files if not (official_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"not an official snapshot ({folder}): {', '.join(missing)} missing in {official_dir}"
        )
    return official_dir


def load_module(name, path):
    """Import the file ``path`` as a new module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def plugin_initialisation(model, std, kept=("item_embeddings", "none_embedding")):
    """Give an official DreamRec-style ``model`` the initialisation of the plugin's ``initializer_range: std`` (the
    adapters' ``plugin_init`` modification): Linear, Embedding and Conv1d weights N(0, ``std``), biases 0, LayerNorm
    the identity; the embeddings named in ``kept`` keep their official values."""
    saved = {name: getattr(model, name).weight.clone() for name in kept}
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            module.weight.normal_(0.0, std)
            module.bias.zero_()
        else:
            init_normal_weights(module, std)
    for name, weight in saved.items():
        getattr(model, name).weight.copy_(weight)
