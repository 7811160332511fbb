"""Config layering, the registry, and data loader / trainer choice by model type and property."""

import sys

import pytest
import yaml
from recbole.data.dataloader import TrainDataLoader, UserDataLoader
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.trainer import Trainer
from recbole.utils import InputType, ModelType, init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, resources
from recbole_diffusion.trainer import DiffusionTrainer
from recbole_diffusion.utils import _PLUGIN_MODELS, register_model
from tests.conftest import SHARED_DATASETS
from tests.test_benchmarks import filtered_dataset


def _write(path, content):
    path.write_text(yaml.safe_dump(content))
    return str(path)


def test_layer_precedence(tmp_path, monkeypatch):
    """model yaml > plugin overall > RecBole; dataset config > model yaml; file < dict < command line."""
    model_defaults = yaml.safe_load(resources.model_yaml("DreamRec").read_text())
    plugin_overall = yaml.safe_load(resources.overall_yaml().read_text())
    first_file = _write(tmp_path / "a.yaml", {"guidance_weight": 3.0, "p_uncond": 0.3, "ddim_eta": 0.3, "seed": 1})
    second_file = _write(tmp_path / "b.yaml", {"p_uncond": 0.4, "ddim_eta": 0.4})
    monkeypatch.setattr(sys, "argv", ["run", "--ddim_eta=0.6"])
    config = Config(
        model="DreamRec",
        dataset="ml-100k",
        config_file_list=[first_file, second_file],
        config_dict={"ddim_eta": 0.5, "p_uncond": 0.5},
    )
    assert config["hidden_size"] == model_defaults["hidden_size"]  # model yaml over RecBole (none) defaults
    assert config["learning_rate"] == model_defaults["learning_rate"]  # model yaml over RecBole's 0.001
    assert config["valid_metric"] == plugin_overall["valid_metric"]  # plugin overall over RecBole's MRR@10
    assert config["MAX_ITEM_LIST_LENGTH"] == 50 and config["user_inter_num_interval"] == "[5,inf)"  # dataset yaml
    assert config["guidance_weight"] == 3.0  # first user file over model yaml
    assert config["seed"] == 1
    assert config["p_uncond"] == 0.5  # dict over files
    assert config["ddim_eta"] == 0.6  # command line over everything


def test_dataset_config_beats_model_yaml(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "dataset_yaml", lambda name: tmp_path / f"{name}.yaml")
    _write(tmp_path / "ml-100k.yaml", {"learning_rate": 0.123, "train_batch_size": 7})
    config = Config(model="DreamRec", dataset="ml-100k", config_dict={"train_batch_size": 9})
    assert config["learning_rate"] == 0.123
    assert config["train_batch_size"] == 9


def test_recbole_model_keeps_its_own_defaults():
    config = Config(model="SASRec", dataset="ml-100k")
    assert config["n_layers"] == 2 and config["inner_size"] == 256  # RecBole's SASRec.yaml
    assert config["train_neg_sample_args"]["distribution"] == "none"  # CE baseline runs without negatives
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}


def test_partial_eval_args_keep_the_dataset_split():
    config = Config(model="DreamRec", dataset="ml-100k", config_dict={"eval_args": {"mode": "uni100"}})
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "uni100", "test": "uni100"}


def test_every_dataset_config_spells_out_the_protocol():
    folder = resources.resource_dir("dataset_configs")
    names = sorted(path.stem for path in folder.glob("*.yaml"))
    assert {"ml-100k", "ml-1m", "beauty", "toys", "sports", "yelp", "steam"} <= set(names)
    for name in names:
        content = yaml.safe_load((folder / f"{name}.yaml").read_text())
        assert content["eval_args"] == {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        }, name
        assert content["MAX_ITEM_LIST_LENGTH"] > 0, name
        config = Config(model="DreamRec", dataset=name)
        assert config["eval_args"]["order"] == "TO", name


class _PluginModelNamedLikeRecBole(GeneralRecommender):
    """A stand-in for a plugin model whose name RecBole also uses (RecBole ships DiffRec)."""

    input_type = InputType.POINTWISE


@pytest.fixture
def plugin_diffrec():
    """Register a plugin general model called "DiffRec" for the test only."""
    get_model("DreamRec")  # load the plugin's models first, so that the real DiffRec is restored afterwards
    real_diffrec = _PLUGIN_MODELS.pop("DiffRec", None)
    model_class = type("DiffRec", (_PluginModelNamedLikeRecBole,), {})
    register_model(model_class)
    yield model_class
    del _PLUGIN_MODELS["DiffRec"]
    if real_diffrec is not None:
        _PLUGIN_MODELS["DiffRec"] = real_diffrec


def test_plugin_model_never_inherits_recbole_yaml_or_loader_of_the_same_name(plugin_diffrec, tiny_config):
    config = Config(model="DiffRec", dataset="markov", config_dict=tiny_config)
    assert get_model("DiffRec") is plugin_diffrec
    # noise_schedule is a key of RecBole's DiffRec.yaml ('linear'); only the plugin's own DiffRec.yaml may set it
    assert config["noise_schedule"] == yaml.safe_load(resources.model_yaml("DiffRec").read_text())["noise_schedule"]
    assert config["noise_schedule"] != "linear"
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    assert type(train_data) is TrainDataLoader  # RecBole would pick UserDataLoader by the name "DiffRec"
    assert get_trainer(config["MODEL_TYPE"], "DiffRec") is DiffusionTrainer  # chosen by type, not by name


def test_user_batch_loader_chosen_by_property(plugin_diffrec, tiny_config):
    plugin_diffrec.train_batch_by_user = True
    config = Config(model="DiffRec", dataset="markov", config_dict=tiny_config)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    assert type(train_data) is UserDataLoader


def test_registry_falls_back_to_recbole_and_explains_unknown_names():
    assert get_model("SASRec").__name__ == "SASRec"
    assert get_model("LightGCN").type == ModelType.GENERAL
    assert get_trainer(ModelType.SEQUENTIAL, "DreamRec") is DiffusionTrainer
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is Trainer
    with pytest.raises(
        ValueError, match=r"Unknown model 'Dreamrec'\. Did you mean: DreamRec.*Plugin models: .*DreamRec"
    ):
        get_model("Dreamrec")
    with pytest.raises(ValueError, match="Unknown model 'NoSuchModel'"):
        get_model("NoSuchModel")


@pytest.mark.parametrize(
    "name, counts",
    [
        ("toys", (19412, 11924, 167597)),  # S3-Rec's 5-core file: the 5-core filter keeps it whole
        ("ml-1m", (6040, 3706, 1000209)),  # DiffuRec's ML-1M: every user, movie and rating
    ],
)
def test_shared_atomic_files_load_with_their_dataset_config(name, counts, tmp_path):
    """dataset_configs/<name>.yaml reads the team's atomic file through data_path with the paper's counts."""
    if not (SHARED_DATASETS / name).is_dir():
        pytest.skip("shared/datasets is not beside the checkout")
    config = Config(
        model="SASRec",
        dataset=name,
        config_dict={"data_path": str(SHARED_DATASETS), "checkpoint_dir": str(tmp_path), "state": "WARNING"},
    )
    dataset = filtered_dataset(config)  # the dataset of the protocol that filters alike, if it was built already
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == counts
