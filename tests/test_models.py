"""What every diffusion model shares, checked on one training per model: the contract of
``recbole_diffusion.model.sampling`` (forward, denoise, generate, predict, full_sort_predict; the step count of a
reverse chain as a call argument; the padding item never recommended), learning the planted pattern of the synthetic
``markov`` data well above chance while staying at chance on random data (no leakage), identical scores after a
save and reload, and the same first epoch (loss and weights) from a second training with the same seed (for a
sequential model the README recipe: a plain RecBole Config and Trainer).

A new model is one line in ``MODEL_CASES``. Model-specific behaviour lives in each model's own test file.
"""

import inspect
from dataclasses import dataclass, field

import pytest
import torch
from recbole.config import Config as RecBoleConfig
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_diffusion import get_model, get_trainer, resources
from recbole_diffusion.model.sampling import ReverseChainSampling
from tests.conftest import FAST_SETTINGS, N_ITEMS, build_model, model_on
from tests.general_data import RANDOM_DISTINCT_CHANCE
from tests.sequential_configs import (
    ADREC_SMALL,
    DDRM_SMALL,
    DIFFDIV_SMALL,
    DIFFREC2_SMALL,
    DIFFREC_SMALL,
    DIFFUREC_SMALL,
    DIMEREC_SMALL,
    DIQDIFF_SMALL,
    DREAMREC_SMALL,
    LDIFFREC_SMALL,
    PREFERDIFF_SMALL,
)

SEQUENTIAL_CHANCE = 10 / N_ITEMS  # 0.167, std ~0.022 over 300 test users


@dataclass(frozen=True)
class ModelCase:
    """``small_config``: the model's small size and, where it speeds up learning the tiny data, its learning rate
    and batch size; ``epochs``: enough for Hit@10 > ``min_hit`` on the markov data with a margin (the fit is
    validated once, after its last epoch, and tested there)."""

    name: str
    small_config: dict
    epochs: int
    min_hit: float = 0.8
    general: bool = False  # a general (collaborative) model: the general datasets, chance RANDOM_DISTINCT_CHANCE
    variant: dict = field(default_factory=dict)

    @property
    def id(self):
        return "-".join([self.name, *(f"{key}={value}" for key, value in self.variant.items())])


DIFFREC_FAST = {**DIFFREC_SMALL, "train_batch_size": 32, "learning_rate": 0.005}

MODEL_CASES = [
    ModelCase("DreamRec", DREAMREC_SMALL, epochs=5),
    ModelCase("DiffuRec", {**DIFFUREC_SMALL, "learning_rate": 0.005}, epochs=3),
    ModelCase("DiffRec2", {**DIFFREC2_SMALL, "learning_rate": 0.02}, epochs=4),
    ModelCase("DimeRec", DIMEREC_SMALL, epochs=3, variant={"gem_type": "model"}),
    ModelCase("DimeRec", DIMEREC_SMALL, epochs=3, variant={"gem_type": "rule"}),
    ModelCase("DiQDiff", DIQDIFF_SMALL, epochs=3),
    ModelCase("DiffDiv", {**DIFFDIV_SMALL, "learning_rate": 0.01}, epochs=4),
    ModelCase("DiffRec", DIFFREC_FAST, epochs=4, general=True),
    ModelCase("TDiffRec", DIFFREC_FAST, epochs=4, general=True),
    ModelCase("LDiffRec", {**LDIFFREC_SMALL, "learning_rate": 0.01}, epochs=6, general=True),
    ModelCase("LTDiffRec", {**LDIFFREC_SMALL, "learning_rate": 0.01}, epochs=6, general=True, min_hit=0.7),
    ModelCase("DDRM", {**DDRM_SMALL, "pretrain_epochs": 10}, epochs=5, general=True),
    ModelCase("ADRec", ADREC_SMALL, epochs=3),
    ModelCase("PreferDiff", PREFERDIFF_SMALL, epochs=10),
]


@dataclass
class Fit:
    """One training of a case on ``markov`` (its checkpoint saved) and one on random data, both tested."""

    case: ModelCase
    settings: dict
    config: object
    model: object
    trainer: object
    train_data: object
    test_data: object
    first_epoch_loss: float
    first_epoch_state: dict  # the weights and buffers after the first epoch
    markov_hit: float
    random_hit: float


def case_settings(case, data_path, general_data_path, checkpoint_dir):
    data = {"data_path": general_data_path if case.general else data_path, "checkpoint_dir": str(checkpoint_dir)}
    # Validation once, after the last epoch: the trainer trains the same model whatever its eval_step.
    training = {"epochs": case.epochs, "eval_step": case.epochs}
    return {**FAST_SETTINGS, **data, **case.small_config, **case.variant, **training}


def train_and_test(model_name, settings, dataset, saved):
    """Train on ``dataset`` with the plugin's trainer and test the final model (from its checkpoint if ``saved``);
    also the first epoch's loss and weights."""
    config, model, train_data, valid_data, test_data = build_model(model_name, settings, dataset=dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    first_epoch = []
    train_epoch = trainer._train_epoch

    def recording_epoch(*args, **kwargs):
        loss = train_epoch(*args, **kwargs)
        if not first_epoch:
            first_epoch.extend([float(loss), {key: value.clone() for key, value in model.state_dict().items()}])
        return loss

    trainer._train_epoch = recording_epoch
    trainer.fit(train_data, valid_data, saved=saved)
    result = trainer.evaluate(test_data, load_best_model=saved)
    model.eval()
    return config, model, trainer, train_data, test_data, *first_epoch, result["hit@10"]


@pytest.fixture(scope="module", params=MODEL_CASES, ids=lambda case: case.id)
def fit(request, data_path, general_data_path, tmp_path_factory):
    case = request.param
    settings = case_settings(case, data_path, general_data_path, tmp_path_factory.mktemp("saved"))
    *trained, markov_hit = train_and_test(case.name, settings, "markov", saved=True)
    random_data = "random_distinct" if case.general else "random"
    random_hit = train_and_test(case.name, {**settings, "eval_step": 0}, random_data, saved=False)[-1]
    return Fit(case, settings, *trained, markov_hit, random_hit)


def test_learns_the_planted_pattern_and_stays_at_chance_on_random_data(fit):
    assert fit.markov_hit > fit.case.min_hit
    # four standard deviations above chance over 300 test users
    chance = RANDOM_DISTINCT_CHANCE if fit.case.general else SEQUENTIAL_CHANCE
    assert fit.random_hit < chance + 0.1


def test_contract_methods(fit):
    model = fit.model
    assert list(inspect.signature(model.denoise).parameters)[:2] == ["x_t", "timesteps"]
    assert len(inspect.signature(model.denoise).parameters) == 3  # x_t, timesteps, condition
    if isinstance(model, ReverseChainSampling):
        for method in (model.generate, model.predict, model.full_sort_predict):
            assert inspect.signature(method).parameters["num_inference_steps"].default is None


def test_full_sort_scores_never_recommend_the_padding_item(fit):
    batch = next(iter(fit.test_data))[0]
    scores = fit.model.full_sort_predict(batch)
    assert scores.shape == (len(batch), fit.test_data._dataset.item_num)
    assert (scores[:, 0] == -torch.inf).all()
    assert torch.isfinite(scores[:, 1:]).all()


def test_the_step_count_is_a_call_argument(fit, monkeypatch):
    model = fit.model
    if not isinstance(model, ReverseChainSampling):
        pytest.skip("no reverse chain of a shortenable length")
    steps_seen = []
    denoise = model.denoise

    def recording(x_t, timesteps, condition):
        steps_seen.append(int(timesteps.max()))  # [batch] steps, or [batch, length] (ADRec: per position)
        return denoise(x_t, timesteps, condition)

    monkeypatch.setattr(model, "denoise", recording)
    batch = next(iter(fit.test_data))[0]
    model.full_sort_predict(batch, num_inference_steps=2)
    assert len(set(steps_seen)) == 2 and min(steps_seen) == 0
    assert model.inference_steps == fit.config["inference_steps"]  # not state: the call left the model as it was


def test_reloaded_checkpoint_scores_the_same(fit):
    reloaded = get_model(fit.case.name)(fit.config, fit.train_data._dataset)
    reloaded.load_state_dict(torch.load(fit.trainer.saved_model_file, weights_only=True)["state_dict"])
    reloaded.eval()
    batch = next(iter(fit.test_data))[0]
    torch.manual_seed(7)
    original = fit.model.full_sort_predict(batch)
    torch.manual_seed(7)
    # equal up to float rounding: the same weights at other addresses can take other SIMD paths in the matmuls
    torch.testing.assert_close(reloaded.full_sort_predict(batch), original, rtol=1e-5, atol=1e-5)


def first_epoch(trainer, train_data):
    """The loss and the weights of one training epoch of ``trainer``."""
    loss = float(trainer._train_epoch(train_data, 0))
    return loss, trainer.model.state_dict()


def assert_same_first_epoch(fit, loss, state):
    assert loss == fit.first_epoch_loss
    assert state.keys() == fit.first_epoch_state.keys()
    for key, value in state.items():
        assert torch.equal(value, fit.first_epoch_state[key]), key


def test_plain_recbole_config_and_trainer_repeat_the_first_epoch(fit):
    """The README recipe: RecBole's own Config, data preparation and Trainer with the model yaml. With the same seed
    a sequential model's first epoch is the plugin's (the same data, model and random draws: the same loss and
    weights), so this second training also shows that a seed reproduces a training."""
    model_class = get_model(fit.case.name)
    config = RecBoleConfig(
        model=model_class,
        dataset="markov",
        config_file_list=[str(resources.model_yaml(fit.case.name))],
        config_dict=fit.settings,
    )
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = recbole_data_preparation(config, recbole_create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    loss, state = first_epoch(Trainer(config, model_class(config, train_data._dataset)), train_data)
    if fit.case.general or hasattr(model_class, "dataset_class"):
        # RecBole batches the interactions, the plugin batches users (DiffRec) or its own pairs; RecBole trains a
        # sequential model with its own dataset class (ADRec: one row per user) on every prefix instead
        assert loss == loss and abs(loss) < float("inf")
    else:
        assert_same_first_epoch(fit, loss, state)


def test_same_seed_repeats_the_first_epoch_of_a_general_model(fit):
    """Reproducibility of a general model (a sequential one's is shown by the plain RecBole run): a second training
    through the plugin with the same seed and settings has the fit's first-epoch loss and weights."""
    if not fit.case.general:
        pytest.skip("the plain RecBole run repeats a sequential model's first epoch")
    config, model, train_data, _, _ = build_model(fit.case.name, fit.settings)
    assert_same_first_epoch(
        fit, *first_epoch(get_trainer(config["MODEL_TYPE"], fit.case.name)(config, model), train_data)
    )


REVERSE_CHAIN_CASES = [case for case in MODEL_CASES if issubclass(get_model(case.name), ReverseChainSampling)]


@pytest.mark.parametrize("case", REVERSE_CHAIN_CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("inference_steps", [0, 10_000, 2.5, True])
def test_bad_inference_steps_are_rejected_when_the_model_is_built(
    tiny_config, sequential_dataset, case, inference_steps
):
    with pytest.raises(ValueError, match="inference_steps: an int in 1.."):
        model_on(
            sequential_dataset, case.name, {**tiny_config, **case.small_config, "inference_steps": inference_steps}
        )
