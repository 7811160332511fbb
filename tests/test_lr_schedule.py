"""The learning-rate schedules of DiffusionTrainer: the step decay (``lr_step_size`` / ``lr_gamma``, the official
StepLR of DiffuRec and DiQDiff) and the cosine annealing (``lr_cosine_epochs``, ADRec's official CosineAnnealingLR):
the rate per epoch, resuming from a checkpoint, off by default, bad values."""

import math

import pytest

from recbole_diffusion import get_trainer
from tests.conftest import build_model, markov_sequences, write_atomic_inter
from tests.sequential_configs import DIFFUREC_SMALL, DREAMREC_SMALL

DECAY = {"lr_step_size": 2, "lr_gamma": 0.5, "learning_rate": 0.01}


@pytest.fixture(scope="module")
def few_users_path(tmp_path_factory):
    """The markov data of 20 users: one batch an epoch (the rate is set per epoch, whatever an epoch holds)."""
    folder = tmp_path_factory.mktemp("few_users")
    sequences = markov_sequences()
    write_atomic_inter(folder, "markov", {user: sequences[user] for user in range(20)})
    return str(folder)


@pytest.fixture
def lr_config(tiny_config, few_users_path):
    return {**tiny_config, "data_path": few_users_path}


def trainer_for(name, config_dict):
    config, model, train_data, valid_data, _ = build_model(name, config_dict)
    return config, get_trainer(config["MODEL_TYPE"], name)(config, model), train_data, valid_data


def current_lr(trainer):
    (rate,) = {group["lr"] for group in trainer.optimizer.param_groups}
    return rate


def test_rate_of_each_epoch_is_the_step_decay(lr_config):
    _, trainer, train_data, _ = trainer_for("DiffuRec", {**lr_config, **DIFFUREC_SMALL, **DECAY})
    rates = []
    for epoch in range(5):
        trainer._train_epoch(train_data, epoch)
        rates.append(current_lr(trainer))
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])  # StepLR(step_size=2, gamma=0.5)


def test_resumed_run_continues_the_schedule(lr_config):
    config_dict = {**lr_config, **DIFFUREC_SMALL, **DECAY}
    _, trainer, train_data, valid_data = trainer_for("DiffuRec", config_dict)
    for epoch in range(3):
        trainer._train_epoch(train_data, epoch)
    trainer._save_checkpoint(2, verbose=False)
    _, resumed, _, _ = trainer_for("DiffuRec", {**config_dict, "epochs": 5})
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.start_epoch == 3
    resumed.fit(train_data, valid_data, saved=False)  # epochs 3 and 4
    assert current_lr(resumed) == pytest.approx(0.0025)


def test_off_by_default_on_for_the_official_models(lr_config):
    config, trainer, train_data, _ = trainer_for("DreamRec", {**lr_config, **DREAMREC_SMALL})
    assert config["lr_step_size"] is None and trainer.lr_decay is None
    for epoch in range(3):
        trainer._train_epoch(train_data, epoch)
    assert current_lr(trainer) == config["learning_rate"]
    for name in ("DiffuRec", "DiQDiff"):  # the official StepLR(100, 0.1)
        _, trainer, _, _ = trainer_for(name, lr_config)
        assert trainer.lr_decay == (100, 0.1)
        assert trainer.epoch_learning_rate(99) == trainer.learning_rate
        assert trainer.epoch_learning_rate(100) == pytest.approx(0.1 * trainer.learning_rate)


def test_rate_of_each_epoch_is_the_cosine_annealing(lr_config):
    cosine = {"lr_cosine_epochs": 4, "learning_rate": 0.01}
    _, trainer, train_data, _ = trainer_for("DreamRec", {**lr_config, **DREAMREC_SMALL, **cosine})
    rates = []
    for epoch in range(5):
        trainer._train_epoch(train_data, epoch)
        rates.append(current_lr(trainer))
    expected = [0.01 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(5)]  # CosineAnnealingLR(T_max=4)
    assert rates == pytest.approx(expected) and rates[-1] == pytest.approx(0.0)


def test_cosine_annealing_is_adrecs_default(lr_config):
    _, trainer, _, _ = trainer_for("ADRec", {**lr_config, "pretrain_epochs": 1, "hidden_size": 16, "inner_size": 32})
    assert trainer.lr_cosine_epochs == 500 and trainer.lr_decay is None
    assert trainer.epoch_learning_rate(250) == pytest.approx(trainer.learning_rate / 2)


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"lr_step_size": 0}, "lr_step_size"),
        ({"lr_step_size": 2.5}, "lr_step_size"),
        ({"lr_step_size": True}, "lr_step_size"),
        ({"lr_step_size": 2, "lr_gamma": 0.0}, "lr_gamma"),
        ({"lr_step_size": 2, "lr_gamma": 1.5}, "lr_gamma"),
        ({"lr_step_size": 2, "lr_gamma": None}, "lr_gamma"),
        ({"lr_cosine_epochs": 0}, "lr_cosine_epochs"),
        ({"lr_cosine_epochs": 10, "lr_step_size": 2}, "lr_cosine_epochs"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(lr_config, settings, key):
    with pytest.raises(ValueError, match=key):
        trainer_for("DreamRec", {**lr_config, **DREAMREC_SMALL, **settings})
