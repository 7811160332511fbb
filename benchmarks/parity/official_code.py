"""Loading an official snapshot's files: what every parity adapter needs before its own shims.

The official code is never copied into this project; adapters import it by path from the snapshot folder given as
``--official``, each file as a new module under a name of the adapter's choosing (official file names such as
``model.py`` or ``utils.py`` are too generic to be put in ``sys.modules`` as they are).
"""

import importlib.util
from pathlib import Path


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
