"""DDRM end to end on tiny data: frozen backbone, loss, inference, I/O."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from tests.conftest import build_model, model_on
from tests.sequential_configs import DDRM_SMALL


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
    """One checkpoint_dir for the module: the backbone is pretrained once, then served from its cache (keyed by the
    pretraining settings and the training split; the caller's random state is the same either way)."""
    return str(tmp_path_factory.mktemp("ddrm_pretrain"))


@pytest.fixture
def ddrm_config(general_config, pretrain_dir):
    # one pretraining epoch: these tests need a frozen backbone, not a good one
    return {**general_config, **DDRM_SMALL, "pretrain_epochs": 1, "checkpoint_dir": pretrain_dir}


def test_the_backbone_stays_frozen(ddrm_config):
    config, model, train_data, _, _ = build_model("DDRM", ddrm_config)
    assert config["train_neg_sample_args"]["distribution"] == "uniform"  # BPR with RecBole's negatives
    backbone = model.item_embedding.clone()
    assert not any(parameter is model.item_embedding for parameter in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.calculate_loss(next(iter(train_data))).backward()
    optimizer.step()
    assert torch.equal(model.item_embedding, backbone)


def test_loss_is_weighted_bpr_plus_reconstruction(ddrm_config):
    _, model, _, _, _ = build_model("DDRM", {**ddrm_config, "alpha": 0.3, "beta": 2.0})
    model.eval()  # no dropout, so the same seed gives the same denoised embeddings
    batch = Interaction(
        {"user_id": torch.tensor([1, 2, 3]), "item_id": torch.tensor([4, 5, 6]), "neg_item_id": torch.tensor([7, 8, 9])}
    )
    torch.manual_seed(3)
    loss = model.calculate_loss(batch)
    torch.manual_seed(3)
    user, item, reconstruction = model.denoise_pair(batch["user_id"], batch["item_id"])
    positive = (user * item).sum(-1)
    negative = (user * model.item_embedding[batch["neg_item_id"]]).sum(-1)
    expected = ((0.7 * -F.logsigmoid(positive - negative) + 0.3 * reconstruction) * torch.sigmoid(positive) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_more_sampling_steps_than_steps_noise_to_the_last_step(ddrm_config, monkeypatch):
    """The official LightGCN runs: noise the history mean to step T - 1, then sampling_steps reverse steps."""
    _, model, _, _, test_data = build_model("DDRM", {**ddrm_config, "steps": 4, "sampling_steps": 6})
    model.eval()
    noised, denoised = [], []
    q_sample = model.diffusion.q_sample
    monkeypatch.setattr(model.diffusion, "q_sample", lambda x, t, *a: noised.append(int(t[0])) or q_sample(x, t, *a))
    model.item_denoiser.register_forward_hook(lambda module, inputs, output: denoised.append(int(inputs[1][0])))
    scores = model.full_sort_predict(next(iter(test_data))[0])
    assert noised == [3] and denoised == [5, 4, 3, 2, 1, 0] and torch.isfinite(scores[:, 1:]).all()  # 0: padding


def dead_denoisers(model):
    """Make the denoisers output constant vectors whose inner product is about -360: every triple weighs ~0."""
    for denoiser, value in ((model.user_denoiser, 2.0), (model.item_denoiser, -2.0)):
        output = denoiser.mlp[-1]
        torch.nn.init.zeros_(output.weight)
        torch.nn.init.constant_(output.bias, value)


@pytest.mark.parametrize("beta, dead, warnings", [(1.0, False, 0), (1.0, True, 1), (0.0, True, 0)])
def test_vanished_triple_weights_are_warned_once(ddrm_config, caplog, beta, dead, warnings):
    _, model, train_data, _, _ = build_model("DDRM", {**ddrm_config, "beta": beta})
    if dead:
        dead_denoisers(model)
    batch = next(iter(train_data))
    with caplog.at_level(logging.WARNING):
        losses = [model.calculate_loss(batch) for _ in range(2)]
    messages = [record.getMessage() for record in caplog.records]
    messages = [message for message in messages if "weighs sigmoid(positive score)" in message]
    assert len(messages) == warnings
    if warnings:
        assert "beta=1.0" in messages[0] and "beta: 0" in messages[0]
        assert losses[0].item() < 1e-12  # the state the warning names: nothing left to optimise
        losses[0].backward()
        assert all(p.grad is None or p.grad.abs().max() < 1e-12 for p in model.parameters())


def test_inference_runs_the_item_denoiser_for_sampling_steps(ddrm_config):
    _, model, _, _, test_data = build_model("DDRM", {**ddrm_config, "steps": 8, "sampling_steps": 3})
    model.eval()
    calls = []
    model.item_denoiser.register_forward_hook(lambda *args: calls.append(1))
    model.user_denoiser.register_forward_hook(lambda *args: calls.append("user"))
    model.full_sort_predict(next(iter(test_data))[0])
    assert calls == [1, 1, 1]


def test_given_embedding_files_are_used_and_validated(ddrm_config, tmp_path):
    _, model, train_data, _, _ = build_model("DDRM", ddrm_config)
    dataset = train_data._dataset
    items, users = tmp_path / "items.npy", tmp_path / "users.npy"
    np.save(items, model.item_embedding[1:].numpy())
    np.save(users, model.user_embedding.numpy())
    _, from_files, _, _, _ = build_model(
        "DDRM", {**ddrm_config, "item_emb_path": str(items), "user_emb_path": str(users)}
    )
    assert torch.equal(from_files.item_embedding, model.item_embedding)
    with pytest.raises(ValueError, match="user embeddings"):
        build_model("DDRM", {**ddrm_config, "item_emb_path": str(items)})
    np.save(users, np.zeros((dataset.user_num + 3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="user embedding file"):
        build_model("DDRM", {**ddrm_config, "item_emb_path": str(items), "user_emb_path": str(users)})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("alpha", 1.5, "alpha"),
        ("beta", -1.0, "beta"),
        ("sampling_steps", 0, "sampling_steps"),
        ("dims_dnn", [], "dims_dnn"),
        ("noise_schedule", "binomial", "noise_schedule"),
        ("pretrain_backbone", "NGCF", "pretrain_backbone"),
    ],
)
def test_bad_config_is_rejected(ddrm_config, general_dataset, key, value, message):
    with pytest.raises(ValueError, match=message):
        model_on(general_dataset, "DDRM", {**ddrm_config, key: value})
