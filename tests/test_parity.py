"""benchmarks/parity/: the export of the plugin's split into the official DreamRec format, the id mappings, the
evaluation wrapper (RecBole's evaluator on a fake official model whose scores are known), the official training step
on a fake official module, and the plugin side. The official code is not needed; the test that drives it runs only
when ``PARITY_OFFICIAL_DREAMREC`` names a snapshot of YangZhengyi98/DreamRec.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import dreamrec
from tests.official_encoders import copy_guidance_encoder

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_DREAMREC")
HPARAMS = {**dreamrec.DEFAULTS, "history_length": 5, "timesteps": 10, "epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def split(data_path, tmp_path_factory):
    config_dict = {
        **dreamrec.plugin_config(HPARAMS),
        "data_path": data_path,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved")),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "state": "WARNING",
        "seed": 100,
        "hidden_size": 16,
        "inner_size": 16,
    }
    return harness.build_split("DreamRec", "markov", config_dict)


def test_export_reproduces_training_targets_and_histories(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    frame = dreamrec.export(dataset)
    item_num = dataset.item_num - 1
    seq = np.stack(frame["seq"].to_numpy())
    history = dataset.inter_feat["item_id_list"].numpy()
    lengths = dataset.inter_feat["item_length"].numpy()
    assert len(frame) == len(dataset.inter_feat) and seq.shape[1] == HPARAMS["history_length"]
    np.testing.assert_array_equal(frame["next"].to_numpy() + 1, dataset.inter_feat["item_id"].numpy())
    np.testing.assert_array_equal(frame["len_seq"].to_numpy(), lengths)
    np.testing.assert_array_equal(np.where(seq == item_num, 0, seq + 1), history)  # back to plugin ids
    positions = np.arange(seq.shape[1])[None, :]
    assert ((seq == item_num) == (positions >= lengths[:, None])).all()  # right-padded after len_seq items
    assert ((frame["next"] >= 0) & (frame["next"] < item_num)).all()
    statis = dreamrec.data_statis(dataset)
    assert statis["seq_size"][0] == HPARAMS["history_length"] and statis["item_num"][0] == item_num


def test_id_mappings_are_inverse():
    item_seq = torch.tensor([[3, 1, 0, 0], [2, 0, 0, 0]])
    np.testing.assert_array_equal(dreamrec.official_states(item_seq, 5), [[2, 0, 5, 5], [1, 5, 5, 5]])
    official = torch.arange(6.0)[None, :]  # official ids 0..4, padding row 5 last
    np.testing.assert_array_equal(dreamrec.plugin_scores(official), [[5, 0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(dreamrec.plugin_item_table(official.T)[:, 0], [5, 0, 1, 2, 3, 4])


class FakeTenc(nn.Module):
    """A stand-in for the official ``Tenc``: ``predict`` scores the known next item (official ids) highest, the
    padding row higher still, or (``reverse``) the next item lowest; records the train / eval mode it was called in."""

    successor = {}
    reverse = False
    modes = []

    def __init__(self, hidden_size, item_num, state_size, dropout, diffuser_type, device):
        super().__init__()
        self.item_num = item_num
        self.item_embeddings = nn.Embedding(item_num + 1, hidden_size)
        nn.init.normal_(self.item_embeddings.weight, 0, 1)
        self.none_embedding = nn.Embedding(1, hidden_size)
        self.step_mlp = nn.Linear(hidden_size, hidden_size)

    def cacu_x(self, target):
        return self.item_embeddings(target)

    def cacu_h(self, states, len_states, p):
        return self.item_embeddings(states).mean(dim=1)

    def forward(self, x, h, step):
        return x + h

    def predict(self, states, len_states, diff):
        self.modes.append(self.training)
        last = states[torch.arange(len(states)), len_states - 1]
        scores = torch.zeros(len(states), self.item_num + 1)
        targets = torch.tensor([self.successor[int(item)] for item in last])
        scores[torch.arange(len(states)), targets] = -1.0 if self.reverse else 1.0
        scores[:, -1] = 10.0  # the padding row: the evaluator must mask it
        return scores


class FakeDiffusion:
    def __init__(self, timesteps, beta_start, beta_end, w):
        self.calls = 0

    def p_losses(self, denoise_model, x_start, h, t, loss_type):
        assert loss_type == "l2" and t.max() < HPARAMS["timesteps"]
        self.calls += 1
        predicted = denoise_model(x_start, h, t)
        return ((predicted - x_start) ** 2).mean(), predicted


class FakeOfficial:
    Tenc = FakeTenc
    diffusion = FakeDiffusion
    device = torch.device("cpu")


def official_successors(dataset):
    """Official id of the last history item → official id of its target, from the training interactions (the
    ``markov`` data: every item has one successor)."""
    frame = dreamrec.export(dataset)
    seq = np.stack(frame["seq"].to_numpy())
    last = seq[np.arange(len(seq)), frame["len_seq"].to_numpy() - 1]
    return dict(zip(last.tolist(), frame["next"].tolist()))


@pytest.mark.parametrize("reverse, expected", [(False, 1.0), (True, 0.0)])
def test_evaluation_wrapper_on_a_fake_official_model(split, monkeypatch, reverse, expected):
    config, train_data, _, test_data = split
    monkeypatch.setattr(FakeTenc, "successor", official_successors(train_data._dataset))
    monkeypatch.setattr(FakeTenc, "reverse", reverse)
    monkeypatch.setattr(FakeTenc, "modes", [])
    runner = dreamrec.OfficialRunner(None, train_data._dataset, HPARAMS, seed=100, official=FakeOfficial)
    row, users_per_second = harness.evaluate_both_scorings(config, test_data, runner.full_sort_scores, seed=100)
    for metric in harness.METRICS:
        assert row[metric] == pytest.approx(expected) and row[f"dropout_{metric}"] == pytest.approx(expected)
    assert users_per_second > 0
    assert set(FakeTenc.modes) == {False, True}  # eval mode, then dropout on


def test_official_training_step_on_a_fake_module(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    hparams = {**HPARAMS, "detach_target": True}
    runner = dreamrec.OfficialRunner(None, dataset, hparams, seed=100, official=FakeOfficial)
    before = runner.model.item_embeddings.weight.detach().clone()
    assert runner.train_epoch() > 0
    assert runner.diffusion.calls == len(dataset.inter_feat) // hparams["batch_size"]
    assert not torch.equal(before, runner.model.item_embeddings.weight)  # trained through the history
    assert runner.target_embedding_weight().shape == (dataset.item_num, 64)


def test_plugin_init_keeps_the_official_item_table(split):
    _, train_data, _, _ = split
    torch.manual_seed(0)
    official = dreamrec.OfficialRunner(None, train_data._dataset, HPARAMS, seed=100, official=FakeOfficial).model
    torch.manual_seed(0)
    hparams = {**HPARAMS, "plugin_init": True}
    changed = dreamrec.OfficialRunner(None, train_data._dataset, hparams, seed=100, official=FakeOfficial).model
    assert torch.equal(official.item_embeddings.weight, changed.item_embeddings.weight)
    assert torch.equal(official.none_embedding.weight, changed.none_embedding.weight)
    assert changed.step_mlp.weight.std().item() == pytest.approx(dreamrec.PLUGIN_INIT_STD, rel=0.1)
    assert not changed.step_mlp.bias.any() and official.step_mlp.bias.any()


def test_plugin_side_reports_every_column(split):
    config, train_data, _, test_data = split
    row = harness.run_plugin_side(config, train_data, test_data, seed=100)
    assert set(harness.COLUMNS) - set(row) == {"side", "seed"}
    assert all(0 <= row[metric] <= 1 for metric in harness.METRICS)
    assert row["train_seconds_per_epoch"] > 0 and 0 < row["norm_ratio"] < 10


def test_outputs_and_options(tmp_path):
    rows = [
        {"side": side, "seed": seed, **{column: 0.5 for column in harness.COLUMNS[2:]}}
        for side in ("plugin", "official")
        for seed in (100, 101)
    ]
    harness.write_metrics(rows, tmp_path / "metrics.csv")
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",") == list(harness.COLUMNS)
    table = harness.markdown_table(rows, ["plugin", "official"])
    assert "| hit@10 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 |" in table
    args, adapter, hparams = run_parity.parse_args(
        ["--model=DreamRec", "--official=x", "--learning_rate=0.001", "--detach_target=True", "--timesteps=50"]
    )
    assert adapter is dreamrec and hparams["learning_rate"] == 0.001 and hparams["detach_target"] is True
    assert hparams["timesteps"] == 50 and args.seeds == 3
    with pytest.raises(SystemExit):
        run_parity.parse_args(["--model=DreamRec", "--official=x", "--lr=0.1"])


def test_official_commit_and_no_machine_paths_in_the_command(tmp_path):
    assert run_parity.official_commit(tmp_path) == "unknown"  # not a checkout (even if inside one)
    (tmp_path / "COMMIT").write_text("454133ca0dba08da09af3ef378acf44eebd2a914\n")
    commit = run_parity.official_commit(tmp_path)
    assert commit == "454133ca0dba08da09af3ef378acf44eebd2a914"
    shown = [run_parity.shown_argument(item, commit) for item in [f"--official={tmp_path}", f"--output={tmp_path}"]]
    assert shown == ["--official=<official snapshot at commit 454133c>", "--output=<output folder>"]
    assert run_parity.shown_argument("--output=benchmarks/results/x", commit) == "--output=benchmarks/results/x"


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official DreamRec snapshot")
def test_official_side_runs_the_official_code(split):
    config, train_data, _, test_data = split
    row = harness.run_official_side(dreamrec, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in harness.METRICS) and row["norm_ratio"] > 0


def test_missing_official_snapshot_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="DreamRec.py"):
        dreamrec.load_official(tmp_path, [])


def test_resume_keeps_finished_rows_of_the_same_run(tmp_path):
    hparams = dict(dreamrec.DEFAULTS)
    assert run_parity.finished_rows(tmp_path, hparams, "ml-100k") == []
    row = {"side": "plugin", "seed": 100, **{column: 0.25 for column in harness.COLUMNS[2:]}, "norm_ratio": None}
    harness.write_metrics([row], tmp_path / "metrics.csv")
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "ml-100k", **hparams}))
    assert run_parity.finished_rows(tmp_path, hparams, "ml-100k") == [row]
    with pytest.raises(SystemExit, match="other values of epochs, learning_rate"):
        run_parity.finished_rows(tmp_path, {**hparams, "epochs": 9, "learning_rate": 1.0}, "ml-100k")
    # A run from before the adapter had plugin_init: its value was the default, False.
    earlier = {key: value for key, value in hparams.items() if key != "plugin_init"}
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "ml-100k", **earlier}))
    assert run_parity.finished_rows(tmp_path, hparams, "ml-100k", dreamrec.DEFAULTS) == [row]
    with pytest.raises(SystemExit, match="other values of plugin_init"):
        run_parity.finished_rows(tmp_path, {**hparams, "plugin_init": True}, "ml-100k", dreamrec.DEFAULTS)
    with pytest.raises(SystemExit, match="other values of plugin_init"):
        run_parity.finished_rows(tmp_path, hparams, "ml-100k")  # without the defaults: refused


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official DreamRec snapshot")
def test_plugin_guidance_is_the_official_tenc_guidance(split):
    """With the same weights, the plugin's DreamRec encodes every history as the official ``Tenc.cacu_h`` does."""
    config, train_data, _, test_data = split
    torch.manual_seed(0)
    model = harness.get_model("DreamRec")(config, train_data._dataset).eval()
    official = dreamrec.OfficialRunner(OFFICIAL_DIR, train_data._dataset, {**HPARAMS, "hidden_size": 16}, seed=100)
    tenc = official.model.eval()
    copy_guidance_encoder(model.encoder, [tenc], tenc.positional_embeddings)
    with torch.no_grad():
        tenc.item_embeddings.weight.copy_(torch.cat([model.item_embedding.weight[1:], model.item_embedding.weight[:1]]))
        interaction = next(iter(test_data))[0]
        item_seq, lengths = interaction["item_id_list"], interaction["item_length"]
        guidance = model.forward(item_seq, lengths)
        states = dreamrec.official_states(item_seq, official.item_num)
        torch.testing.assert_close(guidance, tenc.cacu_h(states, lengths, 0.0), rtol=1e-5, atol=1e-5)
