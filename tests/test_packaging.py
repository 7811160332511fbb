"""Packaging: the yaml and .hyper files ship in the wheel, every package is listed, every model key has a default."""

import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from recbole_diffusion import plugin_model_names, resources

ROOT = Path(__file__).resolve().parents[1]


def test_resource_dirs_are_found_from_the_checkout():
    assert resources.overall_yaml().is_file()
    assert resources.model_yaml("DreamRec").is_file()
    assert resources.hyper_space("DreamRec").is_file()
    assert resources.dataset_yaml("ml-1m").is_file()
    with pytest.raises(ValueError, match="allowed: properties, dataset_configs"):
        resources.resource_dir("models")


def test_setup_cfg_lists_every_python_package():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "recbole_diffusion").rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to setup.cfg [options] packages: {sorted(on_disk - listed)}"


def test_wheel_carries_the_yaml_and_hyper_files(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("recbole_diffusion-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [*(ROOT / "properties").rglob("*.yaml"), *(ROOT / "properties").rglob("*.hyper")]
    for data_file in shipped + list((ROOT / "dataset_configs").glob("*.yaml")):
        assert "recbole_diffusion/" + data_file.relative_to(ROOT).as_posix() in names
    assert "recbole_diffusion/model/sequential_recommender/dreamrec.py" in names


@pytest.mark.parametrize("model_name", plugin_model_names())
def test_every_config_key_a_model_reads_has_a_commented_default(model_name):
    from recbole_diffusion import get_model

    source = Path(sys.modules[get_model(model_name).__module__].__file__).read_text()
    read_keys = set(re.findall(r'config\["(\w+)"\]', source))
    yaml_text = resources.model_yaml(model_name).read_text()
    defaults = yaml.safe_load(yaml_text)
    assert read_keys <= set(defaults), f"{model_name}.yaml lacks {sorted(read_keys - set(defaults))}"
    for line in yaml_text.splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"{model_name}.yaml: uncommented line {line!r}"
    documented = re.search(r"Config keys.*?:\n(.*?)\n\n", source, re.S)
    assert documented, f"{model_name}: the module docstring must list its config keys"
    assert read_keys <= set(re.findall(r"\w+", documented.group(1))), f"{model_name}: docstring misses keys"
