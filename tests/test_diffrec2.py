"""DiffRec2 end to end on tiny synthetic data: training, full-sort evaluation, learnability, leakage, inference, I/O."""

import pytest
import torch
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, run_recbole_diffusion
from recbole_diffusion.model.layers import sinusoidal_embedding
from tests.conftest import N_ITEMS

DIFFREC2_SMALL = {"hidden_size": 32, "inner_size": 64, "diffusion_steps": 50, "learning_rate": 0.005}


def build(config_dict, dataset="markov"):
    config = Config(model="DiffRec2", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("DiffRec2")(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def test_one_epoch_and_full_sort(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIFFREC2_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), test_data._dataset.item_num)
    assert (scores[:, 0] == -torch.inf).all()  # the padding item is never recommended
    assert torch.isfinite(scores[:, 1:]).all()


def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config):
    config = {**tiny_config, **DIFFREC2_SMALL, "epochs": 10}
    markov = run_recbole_diffusion("DiffRec2", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DiffRec2", "random", config_dict=dict(config), saved=False)
    chance = 10 / N_ITEMS
    assert markov["test_result"]["hit@10"] > 0.8 > chance
    # 300 test users: chance 0.167, std ~0.022; 0.27 is more than four standard deviations above chance.
    assert noise["test_result"]["hit@10"] < 0.27


def record_denoiser_calls(model):
    """Wrap ``model.forward`` (the denoiser) to record the batch size and timesteps of every call."""
    calls, denoiser = [], model.forward

    def recording(item_seq, item_seq_len, noisy_target, timesteps):
        calls.append((item_seq.size(0), timesteps.tolist()))
        return denoiser(item_seq, item_seq_len, noisy_target, timesteps)

    model.forward = recording
    return calls


def test_seeds_inference_is_one_denoising_step_per_seed(tiny_config):
    inference = {"inference_seeds": 4, "inference_step": 20}
    config, model, _, _, test_data = build({**tiny_config, **DIFFREC2_SMALL, **inference})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = record_denoiser_calls(model)
    model.full_sort_predict(batch)
    assert calls == [(4 * len(batch), [20] * (4 * len(batch)))]  # all seeds in one batched call, at inference_step


def test_seeds_inference_defaults_to_last_step_and_averages(tiny_config):
    config, model, _, _, test_data = build({**tiny_config, **DIFFREC2_SMALL, "inference_seeds": 3})
    model.eval()
    batch = next(iter(test_data))[0]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    torch.manual_seed(3)
    averaged = model.generate(item_seq, item_seq_len)
    torch.manual_seed(3)
    noise = torch.randn(3 * len(batch), model.hidden_size).view(3, len(batch), -1)
    last = torch.full((len(batch),), 49, dtype=torch.long)
    with torch.no_grad():
        one_by_one = torch.stack([model(item_seq, item_seq_len, noise[seed], last) for seed in range(3)]).mean(dim=0)
    torch.testing.assert_close(averaged, one_by_one)


def test_chain_inference_runs_the_full_reverse_chain(tiny_config):
    config, model, _, _, test_data = build({**tiny_config, **DIFFREC2_SMALL, "inference_mode": "chain"})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = record_denoiser_calls(model)
    model.full_sort_predict(batch)
    assert [steps[0] for _, steps in calls] == list(range(49, -1, -1))


def test_history_is_not_noised(tiny_config):
    """The encoder sees clean history embeddings, the noisy target right after them, and z_n at every position."""
    config, model, train_data, _, _ = build({**tiny_config, **DIFFREC2_SMALL})
    batch = next(iter(train_data))
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    seen = []
    model.encoder.register_forward_hook(lambda module, args, output: seen.append(args[1]))
    noisy = torch.randn(len(batch), model.hidden_size)
    steps = torch.randint(0, 50, (len(batch),))
    model(item_seq, item_seq_len, noisy, steps)
    expected = torch.nn.functional.pad(model.item_embedding(item_seq), (0, 0, 0, 1))
    expected[torch.arange(len(batch)), item_seq_len] = noisy
    expected = expected + sinusoidal_embedding(steps, model.hidden_size)[:, None, :]
    torch.testing.assert_close(seen[0], expected)


def test_save_load_gives_identical_scores(tiny_config, tmp_path):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIFFREC2_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    reloaded = get_model("DiffRec2")(config, train_data._dataset)
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
    config = {**tiny_config, **DIFFREC2_SMALL, "epochs": 2}
    first = run_recbole_diffusion("DiffRec2", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("DiffRec2", "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion("DiffRec2", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("inference_mode", "ddim", "inference_mode"),
        ("inference_seeds", 0, "inference_seeds"),
        ("inference_step", 50, "inference_step"),
        ("rec_loss_weight", -1.0, "rec_loss_weight"),
        ("beta_schedule", "foo", "schedule"),
        ("hidden_size", 31, "hidden_size"),
    ],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build({**tiny_config, **DIFFREC2_SMALL, key: value})
