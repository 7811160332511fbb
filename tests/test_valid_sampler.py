"""``valid_inference_steps``: validation (early stopping, checkpoint choice) scores with its own, cheaper sampler while
the test keeps ``inference_steps``; validation never changes the training that follows; bad values."""

import csv
import inspect

import pytest
import torch
import yaml

from benchmarks import valid_sampler
from recbole_diffusion import get_trainer
from recbole_diffusion.diffusion.gaussian import GaussianDiffusion
from tests.conftest import build_model
from tests.sequential_configs import DIFFDIV_SMALL, DIFFUREC_SMALL, DIMEREC_SMALL, DIQDIFF_SMALL, DREAMREC_SMALL

REVERSE_CHAIN_MODELS = {
    "DreamRec": DREAMREC_SMALL,
    "DiffuRec": DIFFUREC_SMALL,
    "DiQDiff": DIQDIFF_SMALL,
    "DimeRec": DIMEREC_SMALL,
    "DiffDiv": DIFFDIV_SMALL,
}


def trainer_for(name, config_dict):
    config, model, train_data, valid_data, test_data = build_model(name, config_dict)
    return get_trainer(config["MODEL_TYPE"], name)(config, model), train_data, valid_data, test_data


@pytest.mark.parametrize("name", sorted(REVERSE_CHAIN_MODELS))
def test_validation_and_test_use_their_own_samplers(name, tiny_config, monkeypatch):
    settings = {**tiny_config, **REVERSE_CHAIN_MODELS[name], "inference_steps": None, "valid_inference_steps": 2}
    trainer, train_data, valid_data, test_data = trainer_for(name, settings)
    steps_used = []
    sample = GaussianDiffusion.sample
    signature = inspect.signature(sample)

    def recording_sample(*args, **kwargs):  # every chain, DimeRec's spherical one too, runs through sample()
        steps_used.append(signature.bind(*args, **kwargs).arguments.get("num_inference_steps"))
        return sample(*args, **kwargs)

    monkeypatch.setattr(GaussianDiffusion, "sample", recording_sample)
    trainer._valid_epoch(valid_data)
    assert set(steps_used) == {2}
    steps_used.clear()
    trainer.evaluate(test_data, load_best_model=False)
    assert set(steps_used) == {None}


def test_validation_leaves_the_training_stream_alone(tiny_config):
    """Two runs that differ only in their validation sampler train identical weights."""
    weights = []
    for valid_steps in (None, 1):
        settings = {**tiny_config, **DREAMREC_SMALL, "epochs": 3, "eval_step": 1, "valid_inference_steps": valid_steps}
        trainer, train_data, valid_data, _ = trainer_for("DreamRec", settings)
        for epoch in range(3):
            trainer._train_epoch(train_data, epoch)
            trainer._valid_epoch(valid_data)
        weights.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("value, allowed", [(0, "in 1..20"), (1.5, "an int"), (True, "an int"), (21, "in 1..20")])
def test_bad_valid_inference_steps(value, allowed, tiny_config):
    settings = {**tiny_config, **DREAMREC_SMALL, "diffusion_steps": 20, "valid_inference_steps": value}
    with pytest.raises(ValueError, match=f"valid_inference_steps: .*{allowed}"):
        build_model("DreamRec", settings)


def test_benchmark_script_validates_one_training_with_both_samplers(tiny_config, tmp_path):
    settings = {**tiny_config, **DREAMREC_SMALL, "stopping_step": 1}
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings))
    output = tmp_path / "out"
    arguments = ["--model=DreamRec", "--dataset=markov", "--epochs=3", "--valid_inference_steps=2"]
    valid_sampler.main([*arguments, f"--config_files={tmp_path / 'settings.yaml'}", f"--output={output}"])
    with open(output / "epochs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert 2 <= len(rows) <= 3 and float(rows[0]["DDIM 2 steps seconds"]) > 0
    summary = (output / "summary.md").read_text()
    assert "| kept checkpoint (epoch, from 0) |" in summary and "| test ndcg@10 |" in summary
    assert str(tmp_path) not in summary


def test_benchmark_script_refuses_a_model_without_reverse_chain(tiny_config, tmp_path):
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(tiny_config))
    with pytest.raises(SystemExit, match="--model: a model with a reverse chain"):
        valid_sampler.main(
            [
                "--model=SASRec",
                "--dataset=markov",
                "--epochs=1",
                "--valid_inference_steps=2",
                f"--config_files={tmp_path / 'settings.yaml'}",
            ]
        )
