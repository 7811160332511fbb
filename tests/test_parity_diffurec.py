"""benchmarks/parity/adapters/diffurec.py: the export of the plugin's split into the official DiffuRec format, the
history mapping, the plugin config, and the official training step and scoring on a fake official module. The
official code is not needed; the tests that drive it run only when ``PARITY_OFFICIAL_DIFFUREC`` names a snapshot of
WHUIR/DiffuRec.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import diffurec

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_DIFFUREC")
HPARAMS = {
    **diffurec.DEFAULTS,
    "hidden_size": 16,
    "history_length": 5,
    "n_layers": 1,
    "diffusion_steps": 4,
    "epochs": 1,
    "batch_size": 64,
    "lr_step_size": 1,
}


@pytest.fixture(scope="module")
def split(data_path):
    """The plugin's leave-one-out split of the ``markov`` data (no plugin training here: no checkpoint folder)."""
    leave_one_out = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
    columns = {"inter": ["user_id", "item_id", "timestamp"]}
    config_dict = {"data_path": data_path, "load_col": columns, "eval_args": leave_one_out, "state": "WARNING"}
    return harness.build_split("DiffuRec", "markov", {**diffurec.plugin_config(HPARAMS), **config_dict})


def official_samples(train, max_len):
    """The official training samples of ``train`` (user -> items), in our words: every prefix with at least one
    history item; its history truncated to the last ``max_len`` items and left-padded with 0; label: the next item."""
    histories, labels = [], []
    for items in train.values():
        for end in range(2, len(items) + 1):
            tokens = items[: end - 1][-max_len:]
            histories.append([0] * (max_len - len(tokens)) + tokens)
            labels.append(items[end - 1])
    return np.array(histories), np.array(labels)


def plugin_samples(dataset):
    """The plugin's training interactions: histories left-padded as the official ones, and targets."""
    history = dataset.inter_feat["item_id_list"]
    left = diffurec.official_histories(history, dataset.inter_feat["item_length"])
    return left.numpy(), dataset.inter_feat["item_id"].numpy()


def test_export_reproduces_training_targets_and_histories(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    exported = diffurec.export(dataset)
    assert set(exported) == {"train", "smap"}
    assert sorted(exported["smap"].values()) == list(range(1, dataset.item_num))  # 1-based, 0 = padding
    for token, item in exported["smap"].items():
        assert dataset.field2id_token["item_id"][item] == token
    histories, labels = official_samples(exported["train"], HPARAMS["history_length"])
    expected_histories, expected_labels = plugin_samples(dataset)
    assert len(labels) == len(dataset.inter_feat)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(histories, expected_histories)


def test_official_histories_left_pads():
    item_seq = torch.tensor([[3, 1, 0, 0], [2, 0, 0, 0], [4, 5, 6, 7]])
    left = diffurec.official_histories(item_seq, torch.tensor([2, 1, 4]))
    np.testing.assert_array_equal(left, [[0, 0, 3, 1], [0, 0, 0, 2], [4, 5, 6, 7]])


def test_plugin_config_gives_the_intended_sizes(split):
    config, train_data, _, _ = split
    model = harness.get_model("DiffuRec")(config, train_data._dataset)
    assert model.hidden_size == HPARAMS["hidden_size"] and model.max_seq_length == HPARAMS["history_length"]
    assert model.item_embedding.weight.shape == (train_data._dataset.item_num, HPARAMS["hidden_size"])
    transformer = model.transformer
    assert len(transformer.layers) == HPARAMS["n_layers"] and transformer.n_heads == diffurec.OFFICIAL_HEADS
    assert transformer.layers[0].linear1.out_features == 4 * HPARAMS["hidden_size"]
    assert transformer.attention_mask == "queries"  # the official mask (the plugin's default is "keys")
    assert transformer.dropout.p == HPARAMS["dropout"] and model.emb_dropout.p == HPARAMS["emb_dropout"]
    assert model.diffusion.num_steps == HPARAMS["diffusion_steps"] and model.inference_steps is None
    scale = 1000 / HPARAMS["diffusion_steps"]  # the official trunc_lin schedule, in our words
    end = scale * 0.02 + 0.01 if scale * 0.02 + 0.01 <= 1 else scale * 0.001 + 0.01  # the official fallback (T < 50)
    official_betas = np.linspace(scale * 0.0001 + 0.01, end, HPARAMS["diffusion_steps"])
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), official_betas, rtol=1e-6)
    assert model.lambda_uncertainty == HPARAMS["lambda_uncertainty"]
    assert config["learning_rate"] == HPARAMS["learning_rate"] and config["train_batch_size"] == HPARAMS["batch_size"]
    assert (config["lr_step_size"], config["lr_gamma"]) == (HPARAMS["lr_step_size"], HPARAMS["lr_gamma"])
    args = diffurec.official_args(HPARAMS, train_data._dataset.item_num - 1, 100, "cpu")
    assert (args.hidden_size, args.max_len, args.num_blocks) == (16, 5, 1) and args.noise_schedule == "trunc_lin"


class FakeModel(nn.Module):
    """A stand-in for the official ``Att_Diffuse_model``: the prediction is a learnt vector per last history item;
    records the histories it scores and the train / eval mode."""

    def __init__(self, diffu, args):
        super().__init__()
        self.item_embeddings = nn.Embedding(args.item_num + 1, args.hidden_size)
        self.transition = nn.Embedding(args.item_num + 1, args.hidden_size)
        self.seen, self.modes = [], []

    def forward(self, sequence, tag, train_flag=True):
        if not train_flag:
            self.seen.append(sequence)
            self.modes.append(self.training)
        return None, self.transition(sequence[:, -1]), None, None, None, None

    def loss_diffu_ce(self, rep_diffu, labels):
        return F.cross_entropy(rep_diffu @ self.item_embeddings.weight.t(), labels.squeeze(-1))

    def diffu_rep_pre(self, rep_diffu):
        return rep_diffu @ self.item_embeddings.weight.t()


class FakeModelModule:
    Att_Diffuse_model = FakeModel

    @staticmethod
    def create_model_diffu(args):
        return None


class FakeDataTrain:
    """The official ``Data_Train`` in our words (every prefix, left-padded), batched by a shuffled DataLoader."""

    def __init__(self, data_train, args):
        histories, labels = official_samples(data_train, args.max_len)
        self.data = torch.utils.data.TensorDataset(torch.tensor(histories), torch.tensor(labels)[:, None])
        self.batch_size = args.batch_size

    def get_pytorch_dataloaders(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size, shuffle=True)


class FakeUtilsModule:
    Data_Train = FakeDataTrain


def test_official_training_step_and_scoring_on_a_fake_module(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    hparams = {**HPARAMS, "learning_rate": 0.05}
    runner = diffurec.OfficialRunner(None, dataset, hparams, seed=100, official=(FakeModelModule, FakeUtilsModule))
    before = runner.target_embedding_weight().clone()
    first = runner.train_epoch()
    assert first > 0 and not torch.equal(before, runner.target_embedding_weight())
    assert runner.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * HPARAMS["lr_gamma"])
    for _ in range(3):
        runner.train_epoch()
    row, users_per_second = harness.evaluate_both_scorings(config, test_data, runner.full_sort_scores, seed=100)
    assert row["hit@10"] > 0.5 and users_per_second > 0  # markov data: the last item tells the next
    assert set(runner.model.modes) == {False, True}  # eval mode, then dropout on
    interaction = next(iter(test_data))[0]
    scores = runner.full_sort_scores(interaction, False)
    assert scores.shape == (len(interaction), dataset.item_num)
    last_items = interaction["item_id_list"][torch.arange(len(interaction)), interaction["item_length"] - 1]
    np.testing.assert_array_equal(runner.model.seen[-1][:, -1], last_items)  # left-padded: last item at the end


def test_options():
    args, adapter, hparams = run_parity.parse_args(
        ["--model=DiffuRec", "--official=x", "--hidden_size=64", "--history_length=10", "--attention_mask=keys"]
    )
    assert adapter is diffurec and (hparams["hidden_size"], hparams["history_length"]) == (64, 10)
    assert diffurec.plugin_config(hparams)["attention_mask"] == "keys" and hparams["epochs"] == 5


def test_missing_official_snapshot_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.py"):
        diffurec.load_official(tmp_path)


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official DiffuRec snapshot")
def test_official_data_and_side(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    _, utils = diffurec.load_official(OFFICIAL_DIR)
    args = diffurec.official_args(HPARAMS, dataset.item_num - 1, 100, "cpu")
    official = utils.Data_Train(diffurec.export(dataset)["train"], args)
    official_dataset = official.get_pytorch_dataloaders().dataset
    histories, labels = zip(*(official_dataset[index] for index in range(len(official_dataset))))
    expected_histories, expected_labels = plugin_samples(dataset)
    np.testing.assert_array_equal(torch.stack(histories), expected_histories)
    np.testing.assert_array_equal(torch.cat(labels), expected_labels)
    row = harness.run_official_side(diffurec, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in harness.METRICS) and row["norm_ratio"] > 0
