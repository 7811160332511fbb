"""DiffRec2-specific tests: seeds and chain inference, the clean history, config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import pytest
import torch

from recbole_diffusion.model.layers import sinusoidal_embedding
from tests.conftest import build_model, model_on
from tests.sequential_configs import DIFFREC2_SMALL


def record_denoiser_calls(model):
    """Wrap ``model.denoise`` to record the batch size and timesteps of every call."""
    calls, denoiser = [], model.denoise

    def recording(x_t, timesteps, history):
        calls.append((x_t.size(0), timesteps.tolist()))
        return denoiser(x_t, timesteps, history)

    model.denoise = recording
    return calls


def test_seeds_inference_is_one_denoising_step_per_seed(tiny_config):
    inference = {"inference_seeds": 4, "inference_timestep": 20}
    _, model, _, _, test_data = build_model("DiffRec2", {**tiny_config, **DIFFREC2_SMALL, **inference})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = record_denoiser_calls(model)
    model.full_sort_predict(batch)
    assert calls == [(4 * len(batch), [20] * (4 * len(batch)))]  # all seeds in one batched call, at inference_timestep


def test_seeds_inference_defaults_to_last_step_and_averages(tiny_config):
    _, model, _, _, test_data = build_model("DiffRec2", {**tiny_config, **DIFFREC2_SMALL, "inference_seeds": 3})
    model.eval()
    batch = next(iter(test_data))[0]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    torch.manual_seed(3)
    history = model(item_seq, item_seq_len)
    averaged = model.generate(history)
    torch.manual_seed(3)
    noise = torch.randn(3 * len(batch), model.hidden_size).view(3, len(batch), -1)
    last = torch.full((len(batch),), 49, dtype=torch.long)
    with torch.no_grad():
        one_by_one = torch.stack([model.denoise(noise[seed], last, history) for seed in range(3)]).mean(dim=0)
    torch.testing.assert_close(averaged, one_by_one)


def test_chain_inference_runs_the_full_reverse_chain(tiny_config):
    _, model, _, _, test_data = build_model("DiffRec2", {**tiny_config, **DIFFREC2_SMALL, "inference_mode": "chain"})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = record_denoiser_calls(model)
    model.full_sort_predict(batch)
    assert [steps[0] for _, steps in calls] == list(range(49, -1, -1))


def test_history_is_not_noised(tiny_config):
    """The encoder sees clean history embeddings, the noisy target right after them, and z_n at every position."""
    _, model, train_data, _, _ = build_model("DiffRec2", {**tiny_config, **DIFFREC2_SMALL})
    batch = next(iter(train_data))
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    seen = []
    model.encoder.register_forward_hook(lambda module, args, output: seen.append(args[1]))
    noisy = torch.randn(len(batch), model.hidden_size)
    steps = torch.randint(0, 50, (len(batch),))
    model.denoise(noisy, steps, model(item_seq, item_seq_len))
    expected = torch.nn.functional.pad(model.item_embedding(item_seq), (0, 0, 0, 1))
    expected[torch.arange(len(batch)), item_seq_len] = noisy
    expected = expected + sinusoidal_embedding(steps, model.hidden_size)[:, None, :]
    torch.testing.assert_close(seen[0], expected)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("inference_mode", "ddim", "inference_mode"),
        ("inference_seeds", 0, "inference_seeds"),
        ("inference_timestep", 50, "inference_timestep"),
        ("rec_loss_weight", -1.0, "rec_loss_weight"),
        ("beta_schedule", "foo", "schedule"),
        ("hidden_size", 31, "hidden_size"),
    ],
)
def test_bad_config_is_rejected(tiny_config, sequential_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(sequential_dataset, "DiffRec2", {**tiny_config, **DIFFREC2_SMALL, key: value})
