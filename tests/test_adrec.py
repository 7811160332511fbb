"""ADRec-specific tests: one training row per user, next-item targets, the in-command pretraining and its cache, the
warm-up with a frozen item table, the last-position reverse chain, and config validation. Training, learnability,
save / load and reproducibility are in test_models.py."""

import pytest
import torch

from recbole_diffusion import get_trainer
from recbole_diffusion.model.layers import left_aligned, next_item_targets
from recbole_diffusion.pretrain import NextItemTransformer
from recbole_diffusion.validation import ConfigError
from tests.conftest import N_ITEMS, build_model, count_calls_in_full_sort
from tests.sequential_configs import ADREC_SMALL


@pytest.fixture
def adrec_config(tiny_config):
    return {**tiny_config, **ADREC_SMALL}


def test_next_item_targets_shift_the_history_and_end_with_the_target():
    item_seq = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [1, 2, 3, 4, 5]])
    targets = next_item_targets(item_seq, torch.tensor([3, 2, 5]), torch.tensor([11, 12, 13]))
    assert targets.tolist() == [[6, 7, 11, 0, 0], [9, 12, 0, 0, 0], [2, 3, 4, 5, 13]]


def test_training_split_keeps_each_users_longest_prefix(adrec_config):
    _, adrec, train_data, _, _ = build_model("ADRec", adrec_config)
    _, dreamrec, all_prefixes, _, _ = build_model("DreamRec", adrec_config)  # RecBole's augmentation: every prefix
    kept, every = train_data._dataset.inter_feat, all_prefixes._dataset.inter_feat
    users = every["user_id"]
    assert sorted(kept["user_id"].tolist()) == sorted(set(users.tolist()))  # one row per user
    for row in range(len(kept)):
        user = kept["user_id"][row]
        rows = torch.nonzero(users == user).squeeze(1)
        last = rows[-1]  # the user's last training target and the history before it
        assert kept["item_id"][row] == every["item_id"][last]
        assert torch.equal(kept["item_id_list"][row], every["item_id_list"][last])
    assert len(every) > 3 * len(kept)


def test_pretraining_is_cached_and_leaves_the_random_state_alone(adrec_config, monkeypatch):
    torch.manual_seed(0)
    _, first, _, _, _ = build_model("ADRec", adrec_config)
    after_first = torch.rand(1)

    def no_training(*args, **kwargs):
        raise AssertionError("pretrained again instead of loading the cache")

    monkeypatch.setattr(NextItemTransformer, "__init__", no_training)
    torch.manual_seed(0)
    _, second, _, _, _ = build_model("ADRec", adrec_config)
    assert torch.equal(torch.rand(1), after_first)
    assert torch.equal(first.item_embedding.weight, second.item_embedding.weight)


@pytest.mark.parametrize("left_padding", [True, False])
def test_padding_row_keeps_its_pretrained_start_only_under_left_padding(adrec_config, left_padding):
    _, model, _, _, _ = build_model("ADRec", {**adrec_config, "left_padding": left_padding})
    padding_row = model.item_embedding.weight[0].abs().sum()
    assert (padding_row > 0) if left_padding else (padding_row == 0)


def test_pretrained_table_predicts_next_items_better_than_its_initialisation(adrec_config):
    config, model, train_data, _, _ = build_model("ADRec", adrec_config)
    rows = train_data._dataset.inter_feat
    targets = next_item_targets(rows["item_id_list"], rows["item_length"], rows["item_id"])
    histories = left_aligned(rows["item_id_list"], rows["item_length"])  # left_padding, as the pretraining's rows
    targets = left_aligned(targets, rows["item_length"])
    real = targets > 0
    network = NextItemTransformer(config, model.n_items).eval()

    def next_item_loss(table):
        with torch.no_grad():
            network.item_embedding.weight.copy_(table)
            hidden = network.transformer(network.layer_norm(network.item_embedding(histories)))
            return torch.nn.functional.cross_entropy(hidden[real] @ table.t(), targets[real])

    initial = next_item_loss(network.item_embedding.weight.detach().clone())
    assert next_item_loss(model.item_embedding.weight.detach()) < initial - 0.2


def test_item_table_is_frozen_during_the_warm_up_then_trains(adrec_config):
    settings = {"freeze_epochs": 2, "warmup_weight_decay": False, "weight_decay": 0.01}
    config, model, train_data, _, _ = build_model("ADRec", {**adrec_config, **settings})
    trainer = get_trainer(config["MODEL_TYPE"], "ADRec")(config, model)
    pretrained = model.item_embedding.weight.detach().clone()
    encoder = model.encoder.layers[0].linear1.weight.detach().clone()
    for epoch in range(2):
        trainer._train_epoch(train_data, epoch)
        assert torch.equal(model.item_embedding.weight, pretrained)
    assert not torch.equal(model.encoder.layers[0].linear1.weight, encoder)  # the rest trains from the start
    assert int(model.trained_batches) == model.frozen_batches == 2 * len(train_data)
    trainer._train_epoch(train_data, 2)
    assert not torch.equal(model.item_embedding.weight, pretrained)


def test_weight_decay_alone_moves_the_frozen_table_under_warmup_weight_decay(adrec_config):
    settings = {"freeze_epochs": 2, "warmup_weight_decay": True, "lr_cosine_epochs": None}
    config, model, train_data, _, _ = build_model("ADRec", {**adrec_config, **settings, "weight_decay": 0.0})
    pretrained = model.item_embedding.weight.detach().clone()
    get_trainer(config["MODEL_TYPE"], "ADRec")(config, model)._train_epoch(train_data, 0)
    assert torch.equal(model.item_embedding.weight, pretrained)  # the loss's gradient does not reach it

    config, model, train_data, _, _ = build_model("ADRec", {**adrec_config, **settings, "weight_decay": 0.01})
    pretrained = model.item_embedding.weight.detach().clone()
    trainer = get_trainer(config["MODEL_TYPE"], "ADRec")(config, model)
    for epoch in range(2):
        trainer._train_epoch(train_data, epoch)
    # Adam on the weight-decay term alone steps every entry one learning rate towards zero per batch.
    drift = model.frozen_batches * config["learning_rate"]
    large = pretrained.abs() > 2 * drift
    assert large.sum() > pretrained.numel() / 5
    towards_zero = ((pretrained - model.item_embedding.weight.detach()) * pretrained.sign())[large]
    assert (towards_zero > 0.5 * drift).all() and (towards_zero <= 1.001 * drift).all()


def test_left_aligned_moves_the_padding_before_the_entries():
    rows = torch.tensor([[5, 6, 7, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]])
    assert left_aligned(rows, torch.tensor([3, 5, 1])).tolist() == [[0, 0, 5, 6, 7], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]]


def test_left_padding_aligns_histories_and_targets_to_the_last_position(adrec_config):
    _, model, _, _, _ = build_model("ADRec", adrec_config)
    item_seq, lengths = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]), torch.tensor([3, 2])
    history, targets, last = model.aligned_rows(item_seq, lengths, torch.tensor([11, 12]))
    assert history.tolist() == [[0, 0, 5, 6, 7], [0, 0, 0, 8, 9]]
    assert targets.tolist() == [[0, 0, 6, 7, 11], [0, 0, 0, 9, 12]]
    assert last.tolist() == [4, 4]


def test_reverse_chain_runs_at_the_last_position_once_per_step(adrec_config):
    _, model, _, _, test_data = build_model("ADRec", adrec_config)
    assert count_calls_in_full_sort(model, model.denoiser, test_data) == ADREC_SMALL["diffusion_steps"]
    assert count_calls_in_full_sort(model, model.encoder, test_data) == 1  # the history is encoded once
    _, model, _, _, test_data = build_model("ADRec", {**adrec_config, "inference_steps": 3})
    assert count_calls_in_full_sort(model, model.denoiser, test_data) == 3


@pytest.mark.parametrize("left_padding", [True, False])
def test_only_left_padding_lets_the_history_see_padding(adrec_config, left_padding):
    settings = {"MAX_ITEM_LIST_LENGTH": 40, "left_padding": left_padding}
    _, model, _, _, test_data = build_model("ADRec", {**adrec_config, **settings})
    model.eval()
    batch = next(iter(test_data))[0]
    short = batch["item_length"] < batch["item_id_list"].size(1)
    assert short.any()
    condition = model.forward(batch["item_id_list"], batch["item_length"])
    last = batch["item_id_list"].size(1) - 1 if left_padding else batch["item_length"] - 1
    assert torch.equal(condition.last_position, torch.full_like(batch["item_length"], 0) + last)
    torch.manual_seed(4)
    scores = model.full_sort_predict(batch)
    batch["item_id_list"] = torch.cat([batch["item_id_list"], torch.zeros_like(batch["item_id_list"])], dim=1)
    torch.manual_seed(4)
    longer = model.full_sort_predict(batch)
    if left_padding:  # more padding before the history changes what its items attend to
        assert not torch.allclose(longer[short], scores[short], atol=1e-4)
    else:
        torch.testing.assert_close(longer, scores)  # more padding, same scores


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"freeze_epochs": -1}, "freeze_epochs"),
        ({"denoiser_layers": 0}, "denoiser_layers"),
        ({"mse_weight": -1.0}, "mse_weight"),
        ({"pretrain_epochs": 0}, "pretrain_epochs"),
        ({"hidden_size": 31, "n_heads": 1}, "hidden_size"),
        ({"lambda_uncertainty": 0.0}, "lambda_uncertainty"),
        ({"warmup_weight_decay": "yes"}, "warmup_weight_decay"),
        ({"left_padding": 1}, "left_padding"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(adrec_config, settings, key):
    with pytest.raises(ConfigError, match=key):
        build_model("ADRec", {**adrec_config, **settings})


def test_item_embedding_file_of_the_wrong_width_is_refused(adrec_config, tmp_path):
    import numpy as np

    path = tmp_path / "items.npy"
    np.save(path, np.zeros((N_ITEMS, 7), dtype=np.float32))
    with pytest.raises(ConfigError, match="item_emb_path"):
        build_model("ADRec", {**adrec_config, "item_emb_path": str(path)})
