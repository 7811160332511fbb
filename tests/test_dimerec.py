"""DimeRec-specific tests: guidance extraction (GEM), spherical noising and inference, config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import pytest
import torch

from recbole_diffusion.diffusion import right_angle_noise_scale
from tests.conftest import build_model, model_on
from tests.sequential_configs import DIMEREC_SMALL


def test_rule_based_guidance_is_the_last_items_on_the_sphere(tiny_config):
    _, model, *_ = build_model("DimeRec", {**tiny_config, **DIMEREC_SMALL, "gem_type": "rule", "n_interests": 3})
    item_seq = torch.tensor([[5, 6, 7, 8, 0], [9, 4, 0, 0, 0]])
    guidance = model.forward(item_seq, torch.tensor([4, 2]))
    expected = model.item_vectors(torch.tensor([[6, 7, 8], [0, 9, 4]]))
    assert torch.equal(guidance, expected)
    assert torch.allclose(guidance[0].norm(dim=-1), torch.ones(3)) and guidance[1, 0].abs().sum() == 0


def test_model_based_guidance_ignores_padding(tiny_config):
    _, model, *_ = build_model("DimeRec", {**tiny_config, **DIMEREC_SMALL, "n_interests": 2})
    guidance = model.forward(torch.tensor([[5, 6, 0, 0]]), torch.tensor([2]))
    other_padding = model.forward(torch.tensor([[5, 6, 0, 0, 0, 0, 0]]), torch.tensor([2]))
    assert guidance.shape == (1, 2, 32) and torch.allclose(guidance, other_padding)
    # Each interest is a convex combination of the two history items only.
    history = model.item_vectors(torch.tensor([5, 6]))
    coefficients = torch.linalg.lstsq(history.t(), guidance[0].t()).solution
    assert torch.allclose(history.t() @ coefficients, guidance[0].t(), atol=1e-5)
    assert torch.allclose(coefficients.sum(dim=0), torch.ones(2), atol=1e-5)


def test_training_noises_on_the_sphere(tiny_config):
    config, model, train_data, *_ = build_model("DimeRec", {**tiny_config, **DIMEREC_SMALL})
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
    config = {**tiny_config, **DIMEREC_SMALL, "inference_steps": inference_steps}
    _, model, _, _, test_data = build_model("DimeRec", config)
    model.eval()
    batch = next(iter(test_data))[0]
    seen = []
    model.denoiser.register_forward_hook(lambda *args: seen.append(1))
    guidance = model.forward(batch["item_id_list"], batch["item_length"])
    generated = model.generate(guidance)
    assert len(seen) == calls  # one denoiser call per reverse step, no classifier-free guidance
    assert torch.allclose(generated.norm(dim=-1), torch.ones(len(batch)), atol=1e-5)


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
def test_bad_config_is_rejected(tiny_config, sequential_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(sequential_dataset, "DimeRec", {**tiny_config, **DIMEREC_SMALL, key: value})
