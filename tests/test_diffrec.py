"""DiffRec and T-DiffRec end to end on tiny data, and equivalence with RecBole's built-in DiffRec."""

import numpy as np
import pytest
import torch
from recbole.config import Config as RecBoleConfig
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.data.dataloader import UserDataLoader
from recbole.model.general_recommender.diffrec import DiffRec as RecBoleDiffRec
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_diffusion import Config
from tests.conftest import build_model, model_on
from tests.sequential_configs import DIFFREC_SMALL

pytest_plugins = ["tests.general_data"]  # fixtures general_config, general_data_path


@pytest.mark.parametrize("model_name", ["DiffRec", "TDiffRec"])
def test_users_are_batched_and_feed_the_importance_sampler(general_config, model_name):
    _, model, train_data, _, _ = build_model(model_name, {**general_config, **DIFFREC_SMALL})
    assert type(train_data) is UserDataLoader
    assert int(model.timestep_sampler.loss_count.sum()) == 0
    model.calculate_loss(next(iter(train_data)))
    assert int(model.timestep_sampler.loss_count.sum()) > 0  # the loss history of importance sampling is fed


def test_plugin_defaults_not_recbole_yaml(general_config):
    config = Config(model="DiffRec", dataset="markov", config_dict=general_config)
    assert config["noise_schedule"] == "linear-var"  # RecBole's DiffRec.yaml says linear
    assert config["dims_dnn"] == [200, 600]  # RecBole's DiffRec.yaml says [300]
    assert "time-aware" not in config.final_config_dict


def test_dims_are_mirrored():
    from recbole_diffusion.model.layers import DiffRecDenoiser

    denoiser = DiffRecDenoiser(50, [200, 600], 10)
    sizes = [(layer.in_features, layer.out_features) for layer in denoiser.mlp if isinstance(layer, torch.nn.Linear)]
    assert sizes == [(60, 600), (600, 200), (200, 600), (600, 50)]


EQUIVALENCE_CONFIGS = [
    {"mean_type": "x0", "noise_schedule": "linear-var", "sampling_steps": 0, "reweight": True},
    {"mean_type": "eps", "noise_schedule": "linear", "sampling_steps": 3, "reweight": True, "noise_scale": 0.1},
]


@pytest.mark.parametrize("overrides", EQUIVALENCE_CONFIGS)
def test_same_as_recbole_builtin_diffrec(general_config, overrides):
    """Same seed and config as RecBole's own DiffRec (one hidden layer, where RecBole's unmirrored dims agree):
    the same weights after training and the same metrics."""
    shared = {
        **general_config,
        "epochs": 3,
        "steps": 10,
        "noise_scale": 0.005,
        "noise_min": 0.005,
        "noise_max": 0.01,
        "beta_fixed": True,
        "history_num_per_term": 2,
        "sampling_noise": False,
        "dims_dnn": [32],
        "embedding_size": 10,
        "mlp_act_func": "tanh",
        "learning_rate": 0.001,
        "train_batch_size": 64,
        "train_neg_sample_args": None,
        **overrides,
    }
    results, weights = [], []
    for use_recbole in (True, False):
        if use_recbole:
            config = RecBoleConfig(model=RecBoleDiffRec, dataset="markov", config_dict=dict(shared))
            init_seed(config["seed"], config["reproducibility"])
            train_data, valid_data, test_data = recbole_data_preparation(config, recbole_create_dataset(config))
            init_seed(config["seed"], config["reproducibility"])
            model = RecBoleDiffRec(config, train_data._dataset)
        else:
            config, model, train_data, valid_data, test_data = build_model("DiffRec", dict(shared))
        trainer = Trainer(config, model)
        trainer.fit(train_data, valid_data, saved=False)
        torch.manual_seed(0)  # sampling_steps > 0 noises the history at inference
        results.append(trainer.evaluate(test_data, load_best_model=False))
        weights.append([parameter.detach().clone() for parameter in model.parameters()])
    assert results[0] == results[1]
    for recbole_weight, plugin_weight in zip(*weights):
        torch.testing.assert_close(plugin_weight, recbole_weight, rtol=1e-4, atol=1e-5)


def test_inference_runs_all_steps_without_noise(general_config):
    _, model, _, _, test_data = build_model("DiffRec", {**general_config, **DIFFREC_SMALL, "sampling_steps": 4})
    model.eval()
    calls = []
    model.denoiser.register_forward_hook(lambda *args: calls.append(1))
    batch = next(iter(test_data))[0]
    model.full_sort_predict(batch)
    assert len(calls) == 10  # the chain runs all T steps from the history noised for T' steps
    model.sampling_steps = 0
    assert torch.equal(model.full_sort_predict(batch), model.full_sort_predict(batch))  # no noise anywhere


def test_time_aware_weights_follow_each_users_time_order(general_config):
    _, model, train_data, _, _ = build_model(
        "TDiffRec", {**general_config, **DIFFREC_SMALL, "w_min": 0.2, "w_max": 1.0}
    )
    dataset = train_data._dataset
    user = 5
    rows = dataset.inter_feat[dataset.inter_feat["user_id"] == user]
    items_in_time_order = rows["item_id"][np.argsort(rows["timestamp"].numpy(), kind="stable")]
    vector = model.get_rating_matrix(torch.tensor([user]))[0]
    expected = torch.linspace(0.2, 1.0, len(items_in_time_order))
    torch.testing.assert_close(vector[items_in_time_order], expected)
    assert int((vector > 0).sum()) == len(items_in_time_order)


def test_time_aware_model_needs_timestamps(general_config):
    config = {
        **general_config,
        **DIFFREC_SMALL,
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"order": "RO"},
    }
    with pytest.raises(ValueError, match="timestamp"):
        build_model("TDiffRec", config, dataset="no_time")


def test_no_dense_user_item_matrix(general_config):
    _, model, train_data, _, _ = build_model("DiffRec", {**general_config, **DIFFREC_SMALL})
    n_users, n_items = train_data._dataset.user_num, train_data._dataset.item_num
    tensors = [*model.state_dict().values(), *(value for value in vars(model).values() if torch.is_tensor(value))]
    assert all(tensor.numel() < n_users * n_items for tensor in tensors)


@pytest.mark.parametrize(
    "model_name, key, value, message",
    [
        ("DiffRec", "noise_schedule", "binomial", "noise_schedule"),
        ("DiffRec", "mean_type", "v", "mean_type"),
        ("DiffRec", "noise_scale", 0.0, "noise_scale"),
        ("DiffRec", "sampling_steps", 11, "sampling_steps"),
        ("DiffRec", "dims_dnn", [], "dims_dnn"),
        ("DiffRec", "mlp_act_func", "swish", "mlp_act_func"),
        ("DiffRec", "history_num_per_term", 0, "history_num_per_term"),
        ("TDiffRec", "w_min", 2.0, "w_min"),
    ],
)
def test_bad_config_is_rejected(general_config, general_dataset, model_name, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(general_dataset, model_name, {**general_config, **DIFFREC_SMALL, key: value})
