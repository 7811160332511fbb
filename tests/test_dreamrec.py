"""DreamRec-specific tests: DDIM inference and config validation.
Training, learnability, save / load and reproducibility are in test_sequential_models.py."""

import pytest

from tests.conftest import build_model, count_calls_in_full_sort, model_on
from tests.sequential_configs import DREAMREC_SMALL


def test_ddim_inference_steps(tiny_config):
    _, model, _, _, test_data = build_model("DreamRec", {**tiny_config, **DREAMREC_SMALL, "inference_steps": 5})
    denoiser_calls = count_calls_in_full_sort(model, model.denoiser, test_data)
    assert denoiser_calls == 2 * 5  # conditional and unconditional denoiser call per DDIM step


@pytest.mark.parametrize(
    "key, value, message",
    [("denoiser_type", "unet", "denoiser_type"), ("p_uncond", 1.0, "p_uncond"), ("beta_schedule", "foo", "schedule")],
)
def test_bad_config_is_rejected(tiny_config, sequential_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(sequential_dataset, "DreamRec", {**tiny_config, **DREAMREC_SMALL, key: value})
