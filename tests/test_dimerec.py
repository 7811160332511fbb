"""DimeRec end to end on tiny synthetic data: training, full-sort evaluation, learnability, leakage, I/O."""

import pytest
import torch
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, run_recbole_diffusion
from recbole_diffusion.diffusion import right_angle_noise_scale
from tests.conftest import N_ITEMS

DIMEREC_SMALL = {"hidden_size": 32, "denoiser_hidden_size": 64, "diffusion_steps": 50, "n_negatives": 20}


def build(config_dict, dataset="markov"):
    config = Config(model="DimeRec", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("DimeRec")(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def test_one_epoch_and_full_sort(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIMEREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), test_data._dataset.item_num)
    assert torch.isneginf(scores[:, 0]).all()  # the padding item is never recommended
    assert torch.isfinite(scores[:, 1:]).all() and scores[:, 1:].abs().max() <= 1 + 1e-5  # cosine scores


@pytest.mark.parametrize("gem_type", ["model", "rule"])
def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config, gem_type):
    config = {**tiny_config, **DIMEREC_SMALL, "gem_type": gem_type, "epochs": 3}
    markov = run_recbole_diffusion("DimeRec", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DimeRec", "random", config_dict=dict(config), saved=False)
    assert markov["test_result"]["hit@10"] > 0.8
    # 300 test users: chance 10/60 = 0.167, std ~0.022; 0.27 is more than four standard deviations above chance.
    assert noise["test_result"]["hit@10"] < 0.27 and 10 / N_ITEMS == pytest.approx(0.167, abs=1e-3)


def test_rule_based_guidance_is_the_last_items_on_the_sphere(tiny_config):
    _, model, *_ = build({**tiny_config, **DIMEREC_SMALL, "gem_type": "rule", "n_interests": 3})
    item_seq = torch.tensor([[5, 6, 7, 8, 0], [9, 4, 0, 0, 0]])
    guidance = model.forward(item_seq, torch.tensor([4, 2]))
    expected = model.item_vectors(torch.tensor([[6, 7, 8], [0, 9, 4]]))
    assert torch.equal(guidance, expected)
    assert torch.allclose(guidance[0].norm(dim=-1), torch.ones(3)) and guidance[1, 0].abs().sum() == 0


def test_model_based_guidance_ignores_padding(tiny_config):
    _, model, *_ = build({**tiny_config, **DIMEREC_SMALL, "n_interests": 2})
    guidance = model.forward(torch.tensor([[5, 6, 0, 0]]), torch.tensor([2]))
    other_padding = model.forward(torch.tensor([[5, 6, 0, 0, 0, 0, 0]]), torch.tensor([2]))
    assert guidance.shape == (1, 2, 32) and torch.allclose(guidance, other_padding)
    # Each interest is a convex combination of the two history items only.
    history = model.item_vectors(torch.tensor([5, 6]))
    coefficients = torch.linalg.lstsq(history.t(), guidance[0].t()).solution
    assert torch.allclose(history.t() @ coefficients, guidance[0].t(), atol=1e-5)
    assert torch.allclose(coefficients.sum(dim=0), torch.ones(2), atol=1e-5)


def test_training_noises_on_the_sphere(tiny_config):
    config, model, train_data, *_ = build({**tiny_config, **DIMEREC_SMALL})
    # Default noise scale: the walk reaches a right angle from x0 at the last step, on average.
    assert model.noise_scale == pytest.approx(right_angle_noise_scale(model.diffusion, config["hidden_size"]))
    inputs = []
    model.denoiser.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    loss = model.calculate_loss(next(iter(train_data)))
    assert torch.isfinite(loss) and loss.requires_grad
    noisy = inputs[0][:, : config["hidden_size"]]
    assert torch.allclose(noisy.norm(dim=-1), torch.ones(len(noisy)), atol=1e-5)


@pytest.mark.parametrize("inference_steps, calls", [(None, 50), (5, 5)])
def test_inference_denoiser_calls(tiny_config, inference_steps, calls):
    _, model, _, _, test_data = build({**tiny_config, **DIMEREC_SMALL, "inference_steps": inference_steps})
    model.eval()
    batch = next(iter(test_data))[0]
    seen = []
    model.denoiser.register_forward_hook(lambda *args: seen.append(1))
    guidance = model.forward(batch["item_id_list"], batch["item_length"])
    generated = model.generate(guidance)
    assert len(seen) == calls  # one denoiser call per reverse step, no classifier-free guidance
    assert torch.allclose(generated.norm(dim=-1), torch.ones(len(batch)), atol=1e-5)


def test_save_load_gives_identical_scores(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIMEREC_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    reloaded = get_model("DimeRec")(config, train_data._dataset)
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
    config = {**tiny_config, **DIMEREC_SMALL, "epochs": 1}
    first = run_recbole_diffusion("DimeRec", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("DimeRec", "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion("DimeRec", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("gem_type", "transformer", "gem_type"),
        ("n_interests", 0, "n_interests"),
        ("n_interests", 11, "n_interests"),
        ("n_negatives", 0, "n_negatives"),
        ("temperature", 0.0, "temperature"),
        ("recon_weight", -1.0, "recon_weight"),
        ("noise_scale", 0.0, "noise_scale"),
        ("beta_schedule", "foo", "schedule"),
    ],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build({**tiny_config, **DIMEREC_SMALL, key: value})
