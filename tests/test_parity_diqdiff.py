"""benchmarks/parity/adapters/diqdiff.py: the export (DiffuRec's, shared), the plugin config, the official args and
the official training step and scoring on a fake official module. The official code is not needed; the test that
drives it runs only when ``PARITY_OFFICIAL_DIQDIFF`` names a snapshot of maowenyu-11/DiQDiff.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import diffurec, diqdiff

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_DIQDIFF")
HPARAMS = {
    **diqdiff.DEFAULTS,
    "hidden_size": 16,
    "history_length": 5,
    "n_layers": 1,
    "num_codes": 3,
    "diffusion_steps": 4,
    "epochs": 1,
    "batch_size": 64,
    "lr_step_size": 1,
}


@pytest.fixture(scope="module")
def split(data_path):
    """The plugin's leave-one-out split of the ``markov`` data (no plugin training here)."""
    leave_one_out = {
        "split": {"LS": "valid_and_test"},
        "order": "TO",
        "group_by": "user",
        "mode": "full",
    }
    columns = {"inter": ["user_id", "item_id", "timestamp"]}
    config_dict = {
        "data_path": data_path,
        "load_col": columns,
        "eval_args": leave_one_out,
        "state": "WARNING",
    }
    return harness.build_split(
        "DiQDiff", "markov", {**diqdiff.plugin_config(HPARAMS), **config_dict}
    )


def official_samples(train, max_len):
    """The official ``Data_Train`` samples of ``train`` in our words (see tests/test_parity_diffurec.py)."""
    histories, labels = [], []
    for items in train.values():
        for end in range(2, len(items) + 1):
            tokens = items[: end - 1][-max_len:]
            histories.append([0] * (max_len - len(tokens)) + tokens)
            labels.append(items[end - 1])
    return np.array(histories), np.array(labels)


def test_export_is_diffurecs_and_round_trips(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    assert (
        diffurec.export is diffurec.export
    )  # one export for both (same official utils.py)
    exported = diffurec.export(dataset)
    assert set(exported) == {"train", "smap"}
    assert sorted(exported["smap"].values()) == list(range(1, dataset.item_num))
    histories, labels = official_samples(exported["train"], HPARAMS["history_length"])
    left = diffurec.official_histories(
        dataset.inter_feat["item_id_list"], dataset.inter_feat["item_length"]
    )
    np.testing.assert_array_equal(labels, dataset.inter_feat["item_id"].numpy())
    np.testing.assert_array_equal(histories, left.numpy())


def test_plugin_config_gives_the_intended_model(split):
    config, train_data, _, _ = split
    model = harness.get_model("DiQDiff")(config, train_data._dataset)
    assert (
        model.hidden_size == HPARAMS["hidden_size"]
        and model.max_seq_length == HPARAMS["history_length"]
    )
    assert model.num_codes == HPARAMS["num_codes"]
    assert (
        model.code_logits.in_features
        == HPARAMS["history_length"] * HPARAMS["hidden_size"]
    )
    assert (
        model.gumbel_temperature == 0.1 and model.contrast_temperature == 0.07
    )  # official constants
    assert (model.lambda_history, model.lambda_code, model.lambda_contrast) == (
        1.0,
        0.6,
        0.05,
    )
    transformer = model.transformer
    assert (
        len(transformer.layers) == HPARAMS["n_layers"]
        and transformer.n_heads == diffurec.OFFICIAL_HEADS
    )
    assert transformer.layers[0].linear1.out_features == 4 * HPARAMS["hidden_size"]
    assert transformer.attention_mask == "queries"
    assert model.emb_dropout.p == HPARAMS["emb_dropout"]
    assert (
        model.diffusion.num_steps == HPARAMS["diffusion_steps"]
        and model.inference_steps is None
    )
    assert (
        config["train_batch_size"] == HPARAMS["batch_size"]
        and config["lr_step_size"] == 1
    )
    args = diqdiff.official_args(HPARAMS, train_data._dataset.item_num - 1, 100, "cpu")
    assert args.num_cluster == 3 and isinstance(args.num_cluster, int)
    assert (args.lambda_intent, args.lambda_history, args.lambda_contra) == (
        0.6,
        1.0,
        0.05,
    )
    assert (args.hidden_size, args.max_len, args.num_blocks, args.noise_schedule) == (
        16,
        5,
        1,
        "trunc_lin",
    )


class FakeCoDiffu(nn.Module):
    """A stand-in for the official ``CoDiffu``: a learnt vector per last history item; ``loss_diffu_ce`` returns
    (CE, contrastive) as the official one; records the train / eval mode it scores in."""

    def __init__(self, args):
        super().__init__()
        self.item_embeddings = nn.Embedding(args.item_num + 1, args.hidden_size)
        self.transition = nn.Embedding(args.item_num + 1, args.hidden_size)
        self.modes = []

    def forward(self, sequence, tag, train_flag):
        if not train_flag:
            self.modes.append(self.training)
        return self.transition(sequence[:, -1]), None

    def loss_diffu_ce(self, rep_diffu, labels):
        ce = F.cross_entropy(
            rep_diffu @ self.item_embeddings.weight.t(), labels.squeeze(-1)
        )
        return ce, torch.tensor(1.0)

    def diffu_rep_pre(self, rep_diffu):
        return rep_diffu @ self.item_embeddings.weight.t()


class FakeCodiffuModule:
    CoDiffu = FakeCoDiffu


class FakeDataTrain:
    def __init__(self, data_train, args):
        histories, labels = official_samples(data_train, args.max_len)
        self.data = torch.utils.data.TensorDataset(
            torch.tensor(histories), torch.tensor(labels)[:, None]
        )
        self.batch_size = args.batch_size

    def get_pytorch_dataloaders(self):
        return torch.utils.data.DataLoader(
            self.data, batch_size=self.batch_size, shuffle=True
        )


class FakeUtilsModule:
    Data_Train = FakeDataTrain


def test_official_training_step_and_scoring_on_a_fake_module(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    hparams = {**HPARAMS, "learning_rate": 0.05, "lambda_contrast": 0.5}
    runner = diqdiff.OfficialRunner(
        None, dataset, hparams, seed=100, official=(FakeCodiffuModule, FakeUtilsModule)
    )
    before = runner.target_embedding_weight().clone()
    first = runner.train_epoch()
    assert first > 0.5 and not torch.equal(
        before, runner.target_embedding_weight()
    )  # CE + 0.5 x contrast (1)
    assert runner.optimizer.param_groups[0]["lr"] == pytest.approx(
        0.05 * HPARAMS["lr_gamma"]
    )
    for _ in range(3):
        runner.train_epoch()
    row, _ = harness.evaluate_both_scorings(
        config, test_data, runner.full_sort_scores, seed=100
    )
    assert row["hit@10"] > 0.5  # markov data: the last item tells the next
    assert set(runner.model.modes) == {False, True}
    interaction = next(iter(test_data))[0]
    assert runner.full_sort_scores(interaction, False).shape == (
        len(interaction),
        dataset.item_num,
    )


def test_options():
    _, adapter, hparams = run_parity.parse_args(
        [
            "--model=DiQDiff",
            "--official=x",
            "--hidden_size=64",
            "--history_length=10",
            "--num_codes=4",
        ]
    )
    assert adapter is diqdiff and (hparams["hidden_size"], hparams["num_codes"]) == (
        64,
        4,
    )
    assert (
        diqdiff.plugin_config(hparams)["num_codes"] == 4
        and diqdiff.plugin_config(hparams)["attention_mask"] == "queries"
    )


def test_missing_official_snapshot_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="codiffu.py"):
        diqdiff.load_official(tmp_path)


def test_faiss_stand_in_is_removed_after():
    had = "faiss" in sys.modules
    with diqdiff.faiss_stand_in():
        assert "faiss" in sys.modules
    assert ("faiss" in sys.modules) == had


@pytest.mark.skipif(
    not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(),
    reason="no official DiQDiff snapshot",
)
def test_official_side(split):
    config, train_data, _, test_data = split
    row = harness.run_official_side(
        diqdiff, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100
    )
    assert (
        all(0 <= row[metric] <= 1 for metric in harness.METRICS)
        and row["norm_ratio"] > 0
    )
