"""benchmarks/parity/adapters/preferdiff.py: the export of the plugin's split into the official PreferDiff batches, the
plugin and official configs, the official training step and scoring on a fake official model, and the plugin side.
The official code is not needed; the tests that drive it run only when ``PARITY_OFFICIAL_PREFERDIFF`` names a snapshot
of lswhim/PreferDiff (its repository root).
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
from benchmarks.parity.adapters import preferdiff
from tests.official_encoders import copy_guidance_encoder

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_PREFERDIFF")
HPARAMS = {
    **preferdiff.DEFAULTS,
    "hidden_size": 16,
    "history_length": 5,
    "timesteps": 20,
    "ddim_step": 5,
    "epochs": 1,
    "batch_size": 64,
}


@pytest.fixture(scope="module")
def split(data_path, tmp_path_factory):
    """The plugin's leave-one-out split of the ``markov`` data with the adapter's plugin config."""
    config_dict = {
        **preferdiff.plugin_config(HPARAMS),
        "data_path": data_path,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "state": "WARNING",
        "seed": 100,
    }
    return harness.build_split("PreferDiff", "markov", config_dict)


class FakeSequenceDataset(torch.utils.data.Dataset):
    """The official ``SequenceDataset`` in our words: the last item is the label, the rest the history, right-padded
    with 0 to ``max_seq_length``."""

    def __init__(self, config, sequences, indexes):
        self.config, self.sequences = config, sequences

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, index):
        history, label = self.sequences[index][:-1], self.sequences[index][-1]
        padded = history + [0] * (self.config["max_seq_length"] - len(history))
        return {"item_seqs": torch.tensor(padded), "labels": torch.tensor(label), "seq_lengths": len(history)}


def test_export_reproduces_training_targets_and_histories(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    sequences = preferdiff.export(dataset)
    config = preferdiff.official_config(HPARAMS, dataset.item_num - 1, "cpu")
    official = FakeSequenceDataset(config, sequences, None)
    assert len(official) == len(dataset.inter_feat)
    rows = [official[index] for index in range(len(official))]
    np.testing.assert_array_equal(torch.stack([row["item_seqs"] for row in rows]), dataset.inter_feat["item_id_list"])
    np.testing.assert_array_equal([row["seq_lengths"] for row in rows], dataset.inter_feat["item_length"])
    np.testing.assert_array_equal(torch.stack([row["labels"] for row in rows]), dataset.inter_feat["item_id"])


def test_plugin_and_official_configs_give_the_intended_model(split):
    config, train_data, _, _ = split
    model = harness.get_model("PreferDiff")(config, train_data._dataset)
    blocks = model.encoder.blocks
    assert model.hidden_size == 16 and model.max_seq_length == 5 and len(blocks) == preferdiff.OFFICIAL_LAYERS
    assert model.encoder.n_heads == preferdiff.OFFICIAL_HEADS and model.encoder.residual_stream
    assert blocks[0]["feed_forward"][0].out_features == 16  # official FFN: hidden -> hidden
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), np.linspace(1e-4, 0.02, 20), rtol=1e-6)
    assert model.inference_steps == 20 // 5 + 1  # as many denoiser calls as the official DDIM
    assert (model.guidance_weight, model.p_uncond, model.loss_type) == (2.0, 0.1, "cosine")
    assert (model.gamma, model.preference_weight, model.negative_sampling) == (5.0, 0.4, "batch")
    assert model.item_embedding.weight.requires_grad  # trainable ids, as the official ab=iids
    assert (config["learner"], config["learning_rate"], config["weight_decay"]) == ("adamw", 0.0001, 0.0)
    assert config["train_batch_size"] == 64 and config["clip_grad_norm"] is None
    official = preferdiff.official_config(HPARAMS, 59, "cpu")
    assert official["select_pool"] == [1, 60] and official["ab"] == "iids" and official["mode"] == "neg"
    assert (official["lamda"], official["w"], official["ddim_step"]) == (0.4, 2.0, 5)


class FakeDiffusion:
    def sample(self, model, guidance):
        model.modes.append(model.training)
        return guidance


class FakePreferDiff(nn.Module):
    """A stand-in for the official ``PreferDiff``: the representation is a learnt vector per last history item, the
    loss a cross-entropy over the item table; records the histories it scores and the train / eval mode."""

    def __init__(self, config):
        super().__init__()
        self.item_embeddings = nn.Embedding(config["item_num"] + 1, config["hidden_size"], padding_idx=0)
        self.transition = nn.Embedding(config["item_num"] + 1, config["hidden_size"])
        self.none_embedding = nn.Embedding(1, config["hidden_size"])  # the official names, unused here
        self.denoise_nn = nn.Linear(3 * config["hidden_size"], config["hidden_size"])
        self.feed_forward = nn.Conv1d(config["hidden_size"], config["hidden_size"], 1)
        self.diff = FakeDiffusion()
        self.seen, self.modes, self.batch_sizes = [], [], []

    def get_representation(self, batch):
        last = batch["item_seqs"][torch.arange(len(batch["item_seqs"])), batch["seq_lengths"] - 1]
        self.seen.append(last)
        return self.transition(last).squeeze()  # the official squeeze(): 1-D for a batch of one

    def get_all_embeddings(self, device=None):
        return self.item_embeddings.weight.data

    def forward(self, batch):
        self.batch_sizes.append(len(batch["labels"]))
        logits = self.get_representation(batch) @ self.item_embeddings.weight.t()
        return {"loss": F.cross_entropy(logits, batch["labels"])}


def test_official_training_step_and_scoring_on_a_fake_model(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    hparams = {**HPARAMS, "learning_rate": 0.05}
    runner = preferdiff.OfficialRunner(None, dataset, hparams, seed=100, official=(FakePreferDiff, FakeSequenceDataset))
    assert isinstance(runner.optimizer, torch.optim.AdamW)
    before = runner.target_embedding_weight().clone()
    assert runner.train_epoch() > 0 and not torch.equal(before, runner.target_embedding_weight())
    rows = len(dataset.inter_feat)
    assert runner.model.batch_sizes == [64] * (rows // 64) + [rows % 64] * (rows % 64 > 0)  # one pass, last partial
    for _ in range(4):
        runner.train_epoch()
    _, metrics, scorings = harness.adapter_protocol(preferdiff)
    row, users_per_second = harness.evaluate_both_scorings(
        config, test_data, runner.full_sort_scores, 100, metrics, scorings
    )
    assert row["hit@10"] > 0.5 and users_per_second > 0  # markov data: the last item tells the next
    assert set(runner.model.modes) == {False} and "dropout_hit@10" not in row  # eval mode only, as officially
    interaction = next(iter(test_data))[0]
    scores = runner.full_sort_scores(interaction[:1], False)  # a batch of one (the official squeeze)
    assert scores.shape == (1, dataset.item_num)
    last = interaction["item_id_list"][0, interaction["item_length"][0] - 1]
    assert runner.model.seen[-1].tolist() == [last]  # histories right-padded as the plugin's, same ids


def test_plugin_init_keeps_the_official_item_and_null_embeddings(split):
    _, train_data, _, _ = split
    fake = (FakePreferDiff, FakeSequenceDataset)
    torch.manual_seed(0)
    official = preferdiff.OfficialRunner(None, train_data._dataset, HPARAMS, seed=100, official=fake).model
    torch.manual_seed(0)
    hparams = {**HPARAMS, "plugin_init": True}
    changed = preferdiff.OfficialRunner(None, train_data._dataset, hparams, seed=100, official=fake).model
    assert torch.equal(official.item_embeddings.weight, changed.item_embeddings.weight)
    assert torch.equal(official.none_embedding.weight, changed.none_embedding.weight)
    for weight in (changed.denoise_nn.weight, changed.feed_forward.weight):
        assert weight.std().item() == pytest.approx(preferdiff.PLUGIN_INIT_STD, rel=0.15)
    assert not changed.denoise_nn.bias.any() and official.denoise_nn.bias.any()
    assert not changed.feed_forward.bias.any()


def test_plugin_side_reports_every_column(split):
    config, train_data, _, test_data = split
    _, metrics, scorings = harness.adapter_protocol(preferdiff)
    row = harness.run_plugin_side(config, train_data, test_data, 100, metrics, scorings, preferdiff)
    assert set(harness.columns(metrics, scorings)) - set(row) == {"side", "seed"} and "dropout_hit@10" not in row
    assert all(0 <= row[metric] <= 1 for metric in harness.METRICS)
    assert row["train_seconds_per_epoch"] > 0 and 0 < row["norm_ratio"] < 10


def test_options():
    args, adapter, hparams = run_parity.parse_args(
        ["--model=PreferDiff", "--official=x", "--hidden_size=64", "--loss_type=l2", "--lamda=0.5", "--epochs=3"]
    )
    assert adapter is preferdiff and (hparams["hidden_size"], hparams["epochs"]) == (64, 3)
    plugin = preferdiff.plugin_config(hparams)
    assert (plugin["loss_type"], plugin["preference_weight"], plugin["inference_steps"]) == ("l2", 0.5, 21)
    with pytest.raises(SystemExit):
        run_parity.parse_args(["--model=PreferDiff", "--official=x", "--preference_weight=0.5"])


def test_missing_official_snapshot_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="models/PreferDiff/_model.py"):
        preferdiff.load_official(tmp_path)


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official PreferDiff snapshot")
def test_official_data_and_side(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    model_class, sequence_dataset = preferdiff.load_official(OFFICIAL_DIR)
    assert not {"models", "modules", "diffusion", "base", "recdata"} & set(sys.modules)  # bare names taken out
    official_config = preferdiff.official_config(HPARAMS, dataset.item_num - 1, "cpu")
    official = sequence_dataset(official_config, preferdiff.export(dataset), [0] * len(dataset.inter_feat))
    expected = FakeSequenceDataset(official_config, preferdiff.export(dataset), None)
    for index in (0, len(official) // 2, len(official) - 1):
        for key in ("item_seqs", "labels", "seq_lengths"):
            np.testing.assert_array_equal(official[index][key], expected[index][key])
    model = model_class(official_config)
    assert model.item_embeddings.weight.shape == (dataset.item_num, 16) and len(model.layers) == 1
    row = harness.run_official_side(preferdiff, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in harness.METRICS) and row["norm_ratio"] > 0


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official PreferDiff snapshot")
def test_plugin_guidance_is_the_official_representation(split):
    """With the same weights, the plugin's PreferDiff encodes every history as the official ``get_representation``."""
    config, train_data, _, test_data = split
    torch.manual_seed(0)
    model = harness.get_model("PreferDiff")(config, train_data._dataset).eval()
    model_class, _ = preferdiff.load_official(OFFICIAL_DIR)
    official = model_class(preferdiff.official_config(HPARAMS, train_data._dataset.item_num - 1, "cpu")).eval()
    copy_guidance_encoder(model.encoder, official.layers, official.positional_embeddings)
    with torch.no_grad():
        official.item_embeddings.weight.copy_(model.item_embedding.weight)
        interaction = next(iter(test_data))[0]
        batch = {"item_seqs": interaction["item_id_list"], "seq_lengths": interaction["item_length"]}
        guidance = model.forward(batch["item_seqs"], batch["seq_lengths"])
        torch.testing.assert_close(guidance, official.get_representation(batch), rtol=1e-5, atol=1e-5)
