"""benchmarks/parity/adapters/adrec.py: the export of the plugin's ADRec split (one row per user) into the official
ADRec data, the history and target mapping, the plugin config and options. The official code is not needed; the
tests that drive it run only when ``PARITY_OFFICIAL_ADREC`` names a snapshot of Nemo-1024/ADRec (the repository root,
the folder holding ``src/``).
"""

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import adrec, diffurec
from recbole_diffusion import get_trainer
from recbole_diffusion.model.layers import left_aligned
from recbole_diffusion.pretrain import pretrained_next_item_embeddings
from tests.conftest import markov_sequences

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_ADREC")
needs_official = pytest.mark.skipif(
    not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official ADRec snapshot"
)
HPARAMS = {
    **adrec.DEFAULTS,
    "hidden_size": 16,
    "history_length": 5,
    "diffusion_steps": 4,
    "batch_size": 64,
    "pretrain_epochs": 1,
    "epochs": 2,
    "freeze_epochs": 1,
}


@pytest.fixture(scope="module")
def split(data_path, tmp_path_factory):
    """The plugin's leave-one-out split of the ``markov`` data for ADRec (one training row per user)."""
    leave_one_out = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
    config_dict = {
        "data_path": data_path,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": leave_one_out,
        "state": "WARNING",
        "checkpoint_dir": str(tmp_path_factory.mktemp("adrec_saved")),
    }
    return harness.build_split("ADRec", "markov", {**adrec.plugin_config(HPARAMS), **config_dict})


def training_tokens(dataset):
    """User token -> the user's training items (all but the last two: leave-one-out) as item tokens, from the raw
    markov data the split was built from."""
    tokens = dataset.field2id_token[dataset.uid_field]
    sequences = markov_sequences()
    known = set(tokens)
    return {f"u{user}": [f"i{item}" for item in items[:-2]] for user, items in sequences.items() if f"u{user}" in known}


def test_export_is_the_tail_of_every_users_training_sequence(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    exported = adrec.export(dataset)
    users = dataset.inter_feat["user_id"].numpy()
    assert len(exported) == len(np.unique(users)) == len(dataset.inter_feat)  # one row per user
    expected = training_tokens(dataset)
    item_tokens = dataset.field2id_token["item_id"]
    user_tokens = dataset.field2id_token["user_id"]
    for user, sequence in zip(users.tolist(), exported):
        full = expected[user_tokens[user]]
        # the plugin's row keeps the last history_length history items: the export is the tail of the sequence
        assert [item_tokens[item] for item in sequence] == full[-(HPARAMS["history_length"] + 1) :]
    # ... which gives the official rows of the untruncated sequences
    token_ids = {token: index for index, token in enumerate(item_tokens)}
    untruncated = [[token_ids[token] for token in expected[user_tokens[user]]] for user in users.tolist()]
    for got, want in zip(adrec.official_rows(exported, HPARAMS["history_length"]), adrec.official_rows(untruncated, 5)):
        torch.testing.assert_close(got, want)


def test_official_rows_are_the_plugin_rows_left_padded(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    histories, targets = adrec.official_rows(adrec.export(dataset), HPARAMS["history_length"])
    item_seq, lengths = dataset.inter_feat["item_id_list"], dataset.inter_feat["item_length"]
    torch.testing.assert_close(histories, diffurec.official_histories(item_seq, lengths))
    for row in range(len(item_seq)):
        length = int(lengths[row])
        expected = item_seq[row, 1:length].tolist() + [int(dataset.inter_feat["item_id"][row])]
        assert targets[row, -length:].tolist() == expected and not targets[row, :-length].any()


def test_official_rows_of_a_known_user():
    histories, targets = adrec.official_rows([[7, 3, 9], [1, 2, 3, 4, 5, 6, 8]], 4)
    np.testing.assert_array_equal(histories, [[0, 0, 7, 3], [3, 4, 5, 6]])
    np.testing.assert_array_equal(targets, [[0, 0, 3, 9], [4, 5, 6, 8]])


def test_official_targets_shift_the_history():
    sequence = torch.tensor([[0, 0, 3, 1, 4], [6, 7, 8, 9, 5], [0, 0, 0, 0, 2]])
    expected = [[0, 0, 1, 4, 0], [7, 8, 9, 5, 0], [0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(adrec.official_targets(sequence), expected)


def test_plugin_config_gives_the_intended_sizes(split):
    config, train_data, _, _ = split
    dataset = train_data._dataset
    model = harness.get_model("ADRec")(config, dataset)
    hidden = HPARAMS["hidden_size"]
    assert model.item_embedding.weight.shape == (dataset.item_num, hidden)
    assert model.max_seq_length == HPARAMS["history_length"]
    for transformer in (model.encoder, model.denoiser):
        assert len(transformer.layers) == adrec.OFFICIAL_BLOCKS
        layer = transformer.layers[0]
        assert layer.self_attn.num_heads == adrec.OFFICIAL_HEADS and layer.linear1.out_features == 4 * hidden
        assert layer.dropout.p == HPARAMS["dropout"]
    assert model.emb_dropout.p == HPARAMS["emb_dropout"]
    assert model.lambda_uncertainty == HPARAMS["lambda_uncertainty"] and model.mse_weight == HPARAMS["mse_weight"]
    steps = HPARAMS["diffusion_steps"]
    assert model.diffusion.num_steps == steps
    scale = 1000 / steps  # the official trunc_lin schedule, in our words
    end = scale * 0.02 + 0.01 if scale * 0.02 + 0.01 <= 1 else scale * 0.001 + 0.01
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), np.linspace(scale * 0.0001 + 0.01, end, steps))
    batches = -(-len(dataset) // HPARAMS["batch_size"])
    assert model.frozen_batches == HPARAMS["freeze_epochs"] * batches
    assert config["lr_cosine_epochs"] == HPARAMS["lr_cosine_epochs"] and config["item_emb_path"] is None
    assert (config["pretrain_epochs"], config["pretrain_learning_rate"], config["pretrain_batch_size"]) == (
        HPARAMS["pretrain_epochs"],
        HPARAMS["learning_rate"],
        HPARAMS["batch_size"],
    )
    assert (config["learning_rate"], config["weight_decay"], config["train_batch_size"]) == (
        HPARAMS["learning_rate"],
        HPARAMS["weight_decay"],
        HPARAMS["batch_size"],
    )


def test_options():
    args, adapter, hparams = run_parity.parse_args(
        ["--model=ADRec", "--official=x", "--pretrain_epochs=3", "--freeze_epochs=2", "--weight_decay=0.0"]
    )
    assert adapter is adrec and (hparams["pretrain_epochs"], hparams["freeze_epochs"]) == (3, 2)
    config = adrec.plugin_config(hparams)
    assert (config["pretrain_epochs"], config["freeze_epochs"], config["weight_decay"]) == (3, 2, 0.0)
    assert hparams["epochs"] == adrec.DEFAULTS["epochs"] and adapter.SCORINGS == ("eval",)
    assert (config["left_padding"], config["warmup_weight_decay"]) == (True, True)  # the official flaws, as official
    fixed = adrec.plugin_config({**hparams, "frozen_warmup": True, "unpadded_attention": True})
    assert (fixed["left_padding"], fixed["warmup_weight_decay"]) == (False, False)  # both sides fixed


def test_stand_in_modules_refuse_to_run():
    module = adrec._stand_in_module("einops", ("rearrange",), ("Thing",))
    with pytest.raises(NotImplementedError, match="einops"):
        module.rearrange("x")
    with pytest.raises(NotImplementedError, match="einops"):
        module.Thing()


def test_missing_official_snapshot_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainer.py"):
        adrec.load_official(tmp_path)


@needs_official
def test_official_loading_leaves_sys_modules_and_path_alone():
    sentinel = object()
    saved_path = list(sys.path)
    sys.modules["utils"] = sentinel
    try:
        official = adrec.load_official(OFFICIAL_DIR)
        assert sys.modules["utils"] is sentinel and sys.path == saved_path
        assert all(name not in sys.modules for name in ("trainer", "model", "adrec", "common", "einops"))
        assert callable(official.trainer.choose_model) and callable(official.utils.Data_Train)
    finally:
        sys.modules.pop("utils", None)


@needs_official
def test_official_data_rows(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    official = adrec.load_official(OFFICIAL_DIR)
    args = adrec.official_args(OFFICIAL_DIR, HPARAMS, dataset.item_num - 1, 100, "cpu")
    assert args.parallel_ag and not args.split_onebyone and args.noise_schedule == "trunc_lin"
    rows = official.utils.Data_Train(adrec.export(dataset), args).get_pytorch_dataloaders().dataset
    histories, targets = (torch.stack(part) for part in zip(*(rows[index] for index in range(len(rows)))))
    expected_histories, expected_targets = adrec.official_rows(adrec.export(dataset), HPARAMS["history_length"])
    torch.testing.assert_close(histories, expected_histories)
    torch.testing.assert_close(targets, expected_targets)


@needs_official
def test_official_side_trains_in_stages_and_scores_in_plugin_ids(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    hparams = {**HPARAMS, "learning_rate": 0.01, "pretrain_epochs": 4, "epochs": 4}
    runner = adrec.OfficialRunner(OFFICIAL_DIR, dataset, hparams, seed=100)
    assert len(runner.pretrain_losses) == 4 and runner.pretrain_losses[-1] < runner.pretrain_losses[0]
    table = runner.target_embedding_weight().clone()
    torch.testing.assert_close(table, runner.pretrained_table)  # the pretrained table, padding row included
    assert table[0].abs().sum() > 0 and not runner.model.item_embedding.weight.requires_grad
    # Warm-up: no gradient reaches the "frozen" table, but PCGrad sets a zero gradient on it, so Adam's weight decay
    # moves every entry towards 0 by about the learning rate per step (an official quirk, not a shim).
    runner.train_epoch()
    warm = runner.target_embedding_weight().clone()
    change = (warm - table)[1:]
    assert 0 < change.abs().max().item() <= hparams["learning_rate"] * len(runner.loader) * 1.01
    assert ((change * table[1:].sign()) < 0).float().mean() > 0.99
    runner.train_epoch()  # unfrozen at epoch freeze_epochs = 1: the gradients move entries away from 0 too
    assert runner.model.item_embedding.weight.requires_grad
    assert ((runner.target_embedding_weight() - warm)[1:] * warm[1:].sign() > 0).float().mean() > 0.2
    for _ in range(2):
        runner.train_epoch()
    assert runner.scheduler.get_last_lr()[0] < hparams["learning_rate"]
    row, users_per_second = harness.evaluate_both_scorings(
        config, test_data, runner.full_sort_scores, 100, scorings=adrec.SCORINGS
    )
    # markov data: the last item tells the next (ids are given in order of appearance, so even scores shifted by
    # one id still reach about 0.8)
    assert row["hit@10"] > 0.9 and users_per_second > 0
    interaction = next(iter(test_data))[0]
    scores = runner.full_sort_scores(interaction, False)
    assert scores.shape == (len(interaction), dataset.item_num)


@needs_official
def test_the_last_target_entry_is_never_read(split):
    _, train_data, _, test_data = split
    hparams = {**HPARAMS, "epochs": 0}
    runner = adrec.OfficialRunner(OFFICIAL_DIR, train_data._dataset, hparams, seed=100)
    runner.model.eval()
    interaction = next(iter(test_data))[0]
    sequence = diffurec.official_histories(interaction["item_id_list"], interaction["item_length"])
    tag = adrec.official_targets(sequence)
    answered = tag.clone()
    answered[:, -1] = interaction["item_id"]  # what the official test puts there
    outputs = []
    for targets in (tag, answered):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(runner.model(sequence, targets, train_flag=False)[1])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    torch.manual_seed(0)
    torch.testing.assert_close(runner.full_sort_scores(interaction, False), runner.model.calculate_score(outputs[0]))


@needs_official
def test_test_inputs_are_the_official_test_rows(split):
    """The history and target rows given to the official model for a test batch are what the official
    ``Data_Test`` makes of the user's training sequence, validation item and test item."""
    _, train_data, _, test_data = split
    dataset = train_data._dataset
    official = adrec.load_official(OFFICIAL_DIR)
    args = adrec.official_args(OFFICIAL_DIR, HPARAMS, dataset.item_num - 1, 100, "cpu")
    interaction = next(iter(test_data))[0]
    user_tokens, item_tokens = dataset.field2id_token["user_id"], dataset.field2id_token["item_id"]
    token_ids = {token: index for index, token in enumerate(item_tokens)}
    sequences = markov_sequences()
    users = [int(user_tokens[user][1:]) for user in interaction["user_id"].tolist()]
    train = [[token_ids[f"i{item}"] for item in sequences[user][:-2]] for user in users]
    valid = [[token_ids[f"i{sequences[user][-2]}"]] for user in users]
    test = [[token_ids[f"i{sequences[user][-1]}"]] for user in users]
    rows = official.utils.Data_Test(train, valid, test, args).get_pytorch_dataloaders().dataset
    histories, answers = (torch.stack(part) for part in zip(*(rows[index] for index in range(len(rows)))))
    sequence = diffurec.official_histories(interaction["item_id_list"], interaction["item_length"])
    torch.testing.assert_close(sequence, histories)
    targets = adrec.official_targets(sequence)
    torch.testing.assert_close(targets[:, :-1], answers[:, :-1])
    torch.testing.assert_close(answers[:, -1], interaction["item_id"])  # the answer, where ours puts 0 (never read)


def test_right_aligned_moves_the_padding_after_the_items():
    sequence = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]])
    tag = torch.tensor([[0, 0, 6, 7, 8], [2, 3, 4, 5, 6], [0, 0, 0, 0, 4]])
    aligned_sequence, aligned_tag = adrec.right_aligned(sequence, tag)
    assert aligned_sequence.tolist() == [[5, 6, 7, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]]
    assert aligned_tag.tolist() == [[6, 7, 8, 0, 0], [2, 3, 4, 5, 6], [4, 0, 0, 0, 0]]


@needs_official
def test_frozen_warmup_keeps_the_table_and_unpadded_attention_hides_padding(split):
    config, train_data, _, test_data = split
    hparams = {**HPARAMS, "frozen_warmup": True, "unpadded_attention": True}
    runner = adrec.OfficialRunner(OFFICIAL_DIR, train_data._dataset, hparams, seed=100)
    table = runner.target_embedding_weight().clone()
    runner.train_epoch()
    torch.testing.assert_close(runner.target_embedding_weight(), table, rtol=0, atol=0)
    runner.train_epoch()  # unfrozen
    assert not torch.equal(runner.target_embedding_weight(), table)

    # With causal attention, right-aligned rows give every real item what its unpadded history gives it; left
    # padding (the official rows) changes it.
    model = runner.model.eval()
    left = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    right, _ = adrec.right_aligned(left, left)
    with torch.no_grad():
        encoded = {
            name: model.diffu.ag_encoder(model.hist_norm(model.item_embedding(rows)), (rows > 0).float())
            for name, rows in (("left", left), ("right", right), ("alone", left[:1, 2:]))
        }
    torch.testing.assert_close(encoded["right"][0, :3], encoded["alone"][0])
    assert not torch.allclose(encoded["left"][0, 2:], encoded["alone"][0], atol=1e-4)

    # Test scoring under unpadded_attention: users grouped by history length (shortest first), each group unpadded.
    interaction = next(iter(test_data))[0]
    torch.manual_seed(0)
    scores = runner.full_sort_scores(interaction, False)
    assert scores.shape == (len(interaction), train_data._dataset.item_num)
    sequence = diffurec.official_histories(interaction["item_id_list"], interaction["item_length"])
    lengths = interaction["item_length"]
    shortest = int(lengths.min())
    group = sequence[lengths == shortest, sequence.shape[1] - shortest :]
    assert (group > 0).all()
    torch.manual_seed(0)
    with torch.no_grad():
        expected = model.calculate_score(model(group, adrec.official_targets(group), train_flag=False)[1])
    torch.testing.assert_close(scores[lengths == shortest], expected)


@needs_official
def test_plugin_pretraining_gives_the_official_model_the_plugins_table(split):
    _, train_data, _, _ = split
    dataset = train_data._dataset
    hparams = {**HPARAMS, "plugin_pretraining": True}
    runner = adrec.OfficialRunner(OFFICIAL_DIR, dataset, hparams, seed=101)
    dataset.config["seed"] = 101
    expected = pretrained_next_item_embeddings(dataset.config, dataset).cpu()
    assert expected[0].abs().sum() > 0  # left padding: the padding row keeps its start, as in the plugin's model
    torch.testing.assert_close(runner.target_embedding_weight(), expected, rtol=0, atol=0)
    assert runner.pretrain_losses == []


@contextlib.contextmanager
def overridden(config, **values):
    """``config`` (the module's shared split config) with ``values`` set while the block runs."""
    saved = {key: config[key] for key in values}
    for key, value in values.items():
        config[key] = value
    try:
        yield config
    finally:
        for key, value in saved.items():
            config[key] = value


def copy_official_weights(official, model):
    """Give the plugin's ADRec the weights of the official ``Att_Diffuse_model`` (same maths, other layouts). The
    step MLP's input columns are swapped halves: the official step features are [cos, sin], the plugin's [sin, cos]
    (with other frequencies, so the two agree at step 0 only)."""
    with torch.no_grad():
        model.item_embedding.weight.copy_(official.item_embedding.weight)
        model.history_norm.load_state_dict(official.hist_norm.state_dict())
        pairs = ((model.encoder, official.diffu.ag_encoder), (model.denoiser, official.diffu.net.decoder))
        for ours, theirs in pairs:
            for layer, block in zip(ours.layers, theirs.transformer_blocks, strict=True):
                projections = block.attention.linear_layers
                layer.self_attn.in_proj_weight.copy_(torch.cat([linear.weight for linear in projections]))
                layer.self_attn.in_proj_bias.copy_(torch.cat([linear.bias for linear in projections]))
                layer.self_attn.out_proj.load_state_dict(block.attention.w_layer.state_dict())
                layer.norm1.load_state_dict(block.input_sublayer.norm.state_dict())
                layer.linear1.load_state_dict(block.feed_forward.w_1.state_dict())
                layer.linear2.load_state_dict(block.feed_forward.w_2.state_dict())
                layer.norm2.load_state_dict(block.output_sublayer.norm.state_dict())
        model.step_mlp.load_state_dict(official.diffu.net.time_embed.state_dict())
        first = model.step_mlp[0].weight
        first.copy_(first.roll(first.size(1) // 2, dims=1))


@needs_official
def test_left_padding_encodes_and_denoises_as_the_official_model(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    runner = adrec.OfficialRunner(OFFICIAL_DIR, dataset, {**HPARAMS, "epochs": 0}, seed=100)
    official = runner.model.eval()
    interaction = next(iter(test_data))[0]
    full_length = interaction["item_id_list"].size(1)
    lengths = torch.arange(len(interaction)) % full_length + 1  # histories cut short: padded ones of every length
    positions = torch.arange(full_length).unsqueeze(0)
    item_seq = torch.where(positions < lengths.unsqueeze(1), interaction["item_id_list"], 0)
    rows = diffurec.official_histories(item_seq, lengths)
    mask = (rows > 0).float()
    with torch.no_grad():
        official_hidden = official.diffu.ag_encoder(official.hist_norm(official.item_embedding(rows)), mask)
        x_t = torch.randn_like(official_hidden)
        steps = torch.zeros(rows.shape, dtype=torch.long)
        official_x0 = official.diffu.net(official_hidden, x_t, official.diffu._scale_timesteps(steps), mask, mask)
    for left_padding in (True, False):
        with overridden(config, left_padding=left_padding):
            model = harness.get_model("ADRec")(config, dataset).eval()
        copy_official_weights(official, model)
        with torch.no_grad():
            condition = model.forward(item_seq, lengths)
            x0 = model.denoise(x_t, steps, condition._replace(hidden=official_hidden))
        if left_padding:  # every position, padding included, as the official model
            torch.testing.assert_close(condition.hidden, official_hidden, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(x0, official_x0, rtol=1e-4, atol=1e-5)
        else:  # the real items of padded histories no longer see the padding before them
            positions = left_aligned(torch.arange(rows.size(1)).expand_as(rows), lengths)
            hidden = condition.hidden.gather(1, positions.unsqueeze(-1).expand_as(condition.hidden))
            padded = (rows > 0) & (lengths < rows.size(1)).unsqueeze(1)
            assert not torch.allclose(hidden[padded], official_hidden[padded], atol=1e-3)
            full = lengths == rows.size(1)
            torch.testing.assert_close(condition.hidden[full], official_hidden[full], rtol=1e-4, atol=1e-5)


@needs_official
def test_warmup_weight_decay_moves_the_table_as_the_official_warm_up(split):
    config, train_data, _, _ = split
    dataset = train_data._dataset
    runner = adrec.OfficialRunner(OFFICIAL_DIR, dataset, {**HPARAMS, "weight_decay": 0.01}, seed=100)
    with overridden(config, weight_decay=0.01):
        model = harness.get_model("ADRec")(config, dataset)
        with torch.no_grad():
            model.item_embedding.weight.copy_(runner.pretrained_table)
        get_trainer(config["MODEL_TYPE"], "ADRec")(config, model)._train_epoch(train_data, 0)
    runner.train_epoch()
    official_table = runner.target_embedding_weight()
    assert not torch.equal(official_table, runner.pretrained_table)
    torch.testing.assert_close(model.item_embedding.weight.detach(), official_table, rtol=0, atol=1e-6)
