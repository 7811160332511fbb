"""DreamRec end to end on tiny synthetic data: training, full-sort evaluation, learnability, leakage, I/O."""

import pytest
import torch
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, run_recbole_diffusion
from tests.conftest import N_ITEMS

DREAMREC_SMALL = {"hidden_size": 32, "inner_size": 32, "diffusion_steps": 50}


def build(config_dict, dataset="markov"):
    config = Config(model="DreamRec", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("DreamRec")(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def test_one_epoch_and_full_sort(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DREAMREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), test_data._dataset.item_num)
    assert torch.isfinite(scores).all()


def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config):
    config = {**tiny_config, **DREAMREC_SMALL, "epochs": 10}
    markov = run_recbole_diffusion("DreamRec", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DreamRec", "random", config_dict=dict(config), saved=False)
    chance = 10 / N_ITEMS
    assert markov["test_result"]["hit@10"] > 0.8
    # 300 test users: chance 0.167, std ~0.022; 0.27 is more than four standard deviations above chance.
    assert noise["test_result"]["hit@10"] < 0.27


def test_ddim_inference_steps(tiny_config):
    config, model, train_data, _, test_data = build({**tiny_config, **DREAMREC_SMALL, "inference_steps": 5})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = []
    model.denoiser.register_forward_hook(lambda *args: calls.append(1))
    model.full_sort_predict(batch)
    assert len(calls) == 2 * 5  # conditional and unconditional denoiser call per DDIM step


def test_save_load_gives_identical_scores(tiny_config, tmp_path):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DREAMREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    reloaded = get_model("DreamRec")(config, train_data._dataset)
    reloaded.load_state_dict(checkpoint["state_dict"])
    model.eval()
    reloaded.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(7)
    original_scores = model.full_sort_predict(batch)
    torch.manual_seed(7)
    reloaded_scores = reloaded.full_sort_predict(batch)
    assert torch.equal(original_scores, reloaded_scores)


def test_same_seed_same_metrics(tiny_config):
    config = {**tiny_config, **DREAMREC_SMALL, "epochs": 2}
    first = run_recbole_diffusion("DreamRec", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("DreamRec", "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion("DreamRec", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


@pytest.mark.parametrize(
    "key, value, message",
    [("denoiser_type", "unet", "denoiser_type"), ("p_uncond", 1.0, "p_uncond"), ("beta_schedule", "foo", "schedule")],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build({**tiny_config, **DREAMREC_SMALL, key: value})
