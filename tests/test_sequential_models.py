"""Behaviour every sequential diffusion model shares, on tiny synthetic data: one epoch of training and full-sort
evaluation, learning the Markov pattern while staying at chance on random data (no leakage), save / load, and
seed reproducibility. Model-specific tests live in each model's own test file."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from recbole.config import Config as RecBoleConfig
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_diffusion import get_model, resources, run_recbole_diffusion
from tests.conftest import build_model, fit_and_reload, fit_test_and_full_sort
from tests.sequential_configs import (
    DIFFDIV_SMALL,
    DIFFREC2_SMALL,
    DIFFUREC_SMALL,
    DIMEREC_SMALL,
    DIQDIFF_SMALL,
    DREAMREC_SMALL,
)


def assert_cosine_scores(model, scores):
    assert scores[:, 1:].abs().max() <= 1 + 1e-5


def assert_codebook_filled(model, scores):
    assert model.codebook.abs().sum() > 0


@dataclass(frozen=True)
class ModelCase:
    name: str
    small_config: dict
    learning_epochs: int  # enough for HR@10 > 0.8 on the markov data
    reproducibility_epochs: int = 2
    learning_variants: tuple = ({},)  # settings the learnability test runs separately
    check_trained: Callable | None = None  # model-specific check of the trained model and its full-sort scores


MODEL_CASES = [
    ModelCase("DreamRec", DREAMREC_SMALL, learning_epochs=10),
    ModelCase("DiffuRec", DIFFUREC_SMALL, learning_epochs=10),
    ModelCase("DiffRec2", DIFFREC2_SMALL, learning_epochs=10),
    ModelCase(
        "DimeRec",
        DIMEREC_SMALL,
        learning_epochs=3,
        reproducibility_epochs=1,
        learning_variants=({"gem_type": "model"}, {"gem_type": "rule"}),
        check_trained=assert_cosine_scores,
    ),
    ModelCase("DiQDiff", DIQDIFF_SMALL, learning_epochs=5, check_trained=assert_codebook_filled),
    ModelCase("DiffDiv", DIFFDIV_SMALL, learning_epochs=8),
]


def variant_id(case, variant):
    return "-".join([case.name, *(f"{key}={value}" for key, value in variant.items())])


EACH_MODEL = pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in MODEL_CASES])

EACH_LEARNING_VARIANT = pytest.mark.parametrize(
    "case, variant",
    [
        pytest.param(case, variant, id=variant_id(case, variant))
        for case in MODEL_CASES
        for variant in case.learning_variants
    ],
)


@EACH_MODEL
def test_one_epoch_and_full_sort(tiny_config, case):
    config, model, train_data, valid_data, test_data = build_model(case.name, {**tiny_config, **case.small_config})
    _, scores = fit_test_and_full_sort(config, model, train_data, valid_data, test_data)
    if case.check_trained:
        case.check_trained(model, scores)


@EACH_LEARNING_VARIANT
def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config, case, variant):
    config = {**tiny_config, **case.small_config, **variant, "epochs": case.learning_epochs}
    markov = run_recbole_diffusion(case.name, "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion(case.name, "random", config_dict=dict(config), saved=False)
    assert markov["test_result"]["hit@10"] > 0.8
    # Chance is 10 / N_ITEMS = 0.167 with std ~0.022 over 300 test users; 0.27 is over four std above it.
    assert noise["test_result"]["hit@10"] < 0.27


@EACH_MODEL
def test_save_load_gives_identical_scores(tiny_config, case):
    config, model, train_data, valid_data, test_data = build_model(case.name, {**tiny_config, **case.small_config})
    _, reloaded = fit_and_reload(config, model, train_data, valid_data)
    batch = next(iter(test_data))[0]
    torch.manual_seed(7)
    original_scores = model.full_sort_predict(batch)
    torch.manual_seed(7)
    reloaded_scores = reloaded.full_sort_predict(batch)
    assert torch.equal(original_scores, reloaded_scores)


@EACH_MODEL
def test_same_seed_same_metrics(tiny_config, case):
    config = {**tiny_config, **case.small_config, "epochs": case.reproducibility_epochs}
    first = run_recbole_diffusion(case.name, "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion(case.name, "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion(case.name, "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


@EACH_MODEL
def test_plain_recbole_config_and_trainer(tiny_config, case):
    """The README recipe for every model: RecBole's own Config, data preparation and Trainer with the model yaml."""
    model_class = get_model(case.name)
    config = RecBoleConfig(
        model=model_class,
        dataset="markov",
        config_file_list=[str(resources.model_yaml(case.name))],
        config_dict={**tiny_config, **case.small_config},
    )
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = recbole_data_preparation(config, recbole_create_dataset(config))
    trainer = Trainer(config, model_class(config, train_data._dataset))
    trainer.fit(train_data, valid_data)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert 0.0 <= result["hit@10"] <= 1.0


@pytest.mark.parametrize("case", [case for case in MODEL_CASES if case.name != "DiffRec2"], ids=lambda case: case.name)
@pytest.mark.parametrize("inference_steps", [0, 10_000, 2.5, True])
def test_bad_inference_steps_are_rejected_when_the_model_is_built(tiny_config, case, inference_steps):
    with pytest.raises(ValueError, match="inference_steps: an int in 1.."):
        build_model(case.name, {**tiny_config, **case.small_config, "inference_steps": inference_steps})
