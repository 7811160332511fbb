"""benchmarks/parity/adapters/diffuasr.py: the export of the plugin's training split into the official input file,
the official stage-1 pairs, the plugin config, the generator evaluation (on fake runners), the plugin side through
the harness, and the official training step and scoring on fake official modules. The official code is not needed;
the test that drives it runs only when ``PARITY_OFFICIAL_DIFFUASR`` names a snapshot of liuqidong07/DiffuASR.
"""

import math
import os
import sys
import types
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.parity import harness, run_parity
from benchmarks.parity.adapters import diffuasr
from recbole_diffusion.diffuasr_augment import fit_generator, user_sequences
from recbole_diffusion.model.sequential_recommender.diffuasr import ResidualBlock
from tests.conftest import markov_sequences

OFFICIAL_DIR = os.environ.get("PARITY_OFFICIAL_DIFFUASR")
HPARAMS = {**diffuasr.DEFAULTS, "aug_num": 3, "history_length": 4, "diffusion_steps": 50, "batch_size": 64, "epochs": 2}


@pytest.fixture(scope="module")
def split(data_path):
    """The plugin's leave-one-out split of the ``markov`` data (users of 12 items: training sequences of 10)."""
    leave_one_out = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
    columns = {"inter": ["user_id", "item_id", "timestamp"]}
    config_dict = {"data_path": data_path, "load_col": columns, "eval_args": leave_one_out, "state": "WARNING"}
    return harness.build_split(
        "DiffuASR", "markov", {**diffuasr.plugin_config(HPARAMS), **config_dict}, metrics=diffuasr.METRICS
    )


def official_pairs(sequences, aug_num, max_len):
    """The official ``filter_data`` + ``DiffusionTrainDataset`` in our words: sequences of more than aug_num + 2
    items; guidance filled from the end with the items after the first aug_num (newest last); target: the first."""
    guidance, targets = [], []
    for items in sequences:
        if not len(items) > aug_num + 2:
            continue
        row, index = np.zeros(max_len, dtype=np.int64), max_len - 1
        for item in reversed(items[aug_num:]):
            row[index] = item
            index -= 1
            if index == -1:
                break
        guidance.append(row)
        targets.append(items[:aug_num])
    return np.array(guidance), np.array(targets)


def test_export_keeps_the_training_sequences_and_ids(split):
    _, train_data, valid_data, test_data = split
    dataset = train_data._dataset
    sequences = diffuasr.training_sequences(dataset)
    raw = markov_sequences()
    user_tokens, item_tokens = dataset.field2id_token["user_id"], dataset.field2id_token["item_id"]
    assert len(sequences) == len(raw)
    for user, items in sequences.items():
        assert [item_tokens[item] for item in items] == [f"i{item}" for item in raw[int(user_tokens[user][1:])][:-2]]
    plugin_stage_one = user_sequences(dataset, valid_data._dataset, test_data._dataset)
    assert list(sequences.values()) == [train for train, _ in plugin_stage_one.values()]
    read_back = defaultdict(list)  # the official Generator._load_dataset, in our words
    for line in diffuasr.export(sequences).splitlines():
        user, item = map(int, line.split(" "))
        read_back[user].append(item)
    assert dict(read_back) == sequences
    assert max(max(items) for items in read_back.values()) == dataset.item_num - 1  # the official item_num


def test_stage_one_pairs_are_the_official_pairs():
    sequences = {1: [5, 6, 7, 8, 9], 2: [1, 2, 3, 4, 5, 6], 3: list(range(1, 13))}
    users, guidance, targets = diffuasr.stage_one_pairs(sequences, aug_num=3, history_length=4)
    assert users == [2, 3]  # more than aug_num + 2 items
    expected_guidance, expected_targets = official_pairs(sequences.values(), 3, 4)
    np.testing.assert_array_equal(guidance, expected_guidance)
    np.testing.assert_array_equal(targets, expected_targets)
    np.testing.assert_array_equal(guidance, [[0, 4, 5, 6], [9, 10, 11, 12]])


def test_plugin_stage_one_trains_on_the_official_pairs_only(split):
    config, train_data, _, _ = split
    model = harness.get_model("DiffuASR")(config, train_data._dataset)
    with pytest.raises(ValueError, match="more than aug_num \\+ 2 items"):
        fit_generator(model, [[1, 2, 3, 4, 5]] * 64, config)  # aug_num + 2 items: no official pair


def test_test_user_pairs_on_the_split(split):
    _, train_data, _, test_data = split
    users, guidance, targets = diffuasr.test_user_pairs(train_data, test_data, 3, 4)
    sequences = diffuasr.training_sequences(train_data._dataset)
    assert users == sorted(sequences)  # every user is a test user with 10 training items
    expected_guidance, expected_targets = official_pairs([sequences[user] for user in users], 3, 4)
    np.testing.assert_array_equal(guidance, expected_guidance)
    np.testing.assert_array_equal(targets, expected_targets)


def test_plugin_config_gives_the_official_sizes(split):
    config, train_data, _, _ = split
    model = harness.get_model("DiffuASR")(config, train_data._dataset)
    assert (model.aug_num, model.max_seq_length, model.hidden_size) == (3, 4, diffuasr.HIDDEN_SIZE)
    assert (model.guidance_type, model.cf_training, model.guidance_weight) == ("cf", "official", 1.0)
    assert (model.inference_steps, model.ddim_eta) == (diffuasr.DDIM_STEPS, 0.0)
    scale = 1000 / HPARAMS["diffusion_steps"]  # the official get_alpha, in our words
    official_betas = np.linspace(scale * 0.0001, scale * 0.02, HPARAMS["diffusion_steps"])
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), official_betas, rtol=1e-6)
    assert model.unet.channels == 8 and len(model.unet.down) == 4 * 2 + 3  # ch 8; 4 levels x 2 blocks, 3 downsamplings
    assert (config["aug_epochs"], config["train_batch_size"], config["learning_rate"]) == (2, 64, 0.001)
    harness_config = harness.eval_config(diffuasr.METRICS)
    assert harness_config["metrics"] == ["Hit", "NDCG"] and harness_config["topk"] == [1, 10, 20]


class OracleRunner:
    """Scores each pair's true item at ``rank`` (0: first) at every position; column 0 (padding) +inf, which the
    evaluation must mask. ``denoising_loss``: the mean step of the batch; records the batch sizes."""

    def __init__(self, pairs, n_items, rank):
        users, guidance, targets = pairs
        self.targets = {tuple(row.tolist()): target for row, target in zip(guidance, targets)}
        self.n_items, self.rank, self.batch_sizes = n_items, rank, []

    def generation_scores(self, guidance):
        self.batch_sizes.append(len(guidance))
        targets = torch.stack([self.targets[tuple(row.tolist())] for row in guidance])  # [B, M]
        scores = torch.rand(len(guidance), targets.size(1), self.n_items) * 0.5
        other = (targets + 1) % (self.n_items - 1) + 1  # another real item above the target when rank = 1
        scores.scatter_(2, targets[..., None], 2.0)
        if self.rank == 1:
            scores.scatter_(2, other[..., None], 3.0)
        scores[..., 0] = torch.inf
        return scores

    def denoising_loss(self, targets, guidance, timesteps, noise):
        return timesteps.float().mean().item()


def test_evaluation_on_oracle_runners(split):
    config, train_data, _, test_data = split
    pairs = diffuasr.test_user_pairs(train_data, test_data, 3, 4)
    n_items = train_data._dataset.item_num
    first = OracleRunner(pairs, n_items, rank=0)
    row, pairs_per_second = diffuasr.evaluate(config, train_data, test_data, first, seed=100)
    assert set(row) == set(diffuasr.METRICS) and pairs_per_second > 0
    assert row["hit@1"] == 1 and row["ndcg@10"] == pytest.approx(1) and row["hit@20"] == 1
    assert first.batch_sizes == [diffuasr.EVAL_BATCH_SIZE] * 3  # 300 pairs
    steps = torch.randint(0, HPARAMS["diffusion_steps"], (300,), generator=torch.Generator().manual_seed(100))
    assert row["denoising_loss"] == pytest.approx(steps.float().mean().item())  # the same steps for every side
    second, _ = diffuasr.evaluate(config, train_data, test_data, OracleRunner(pairs, n_items, rank=1), seed=100)
    assert second["hit@1"] == 0 and second["hit@10"] == 1
    second_place = pytest.approx(1 / math.log2(3), abs=1e-4)  # RecBole rounds to 4 decimals
    assert second["ndcg@10"] == second_place and second["ndcg@20"] == second_place


class NoiseRecorder:
    """Records the first noise it draws per batch, then draws ``extra`` more (the official DDIM step draws noise even
    with eta 0); scores uniformly."""

    def __init__(self, n_items, extra):
        self.n_items, self.extra, self.noise = n_items, extra, []

    def generation_scores(self, guidance):
        self.noise.append(torch.randn(len(guidance), 3, diffuasr.HIDDEN_SIZE))
        torch.randn(self.extra)
        return torch.zeros(len(guidance), 3, self.n_items)

    def denoising_loss(self, targets, guidance, timesteps, noise):
        return 0.0


def test_both_sides_start_every_batch_from_the_same_noise(split):
    config, train_data, _, test_data = split
    sides = [NoiseRecorder(train_data._dataset.item_num, extra) for extra in (0, 1000)]
    for side in sides:
        diffuasr.evaluate(config, train_data, test_data, side, seed=100)
    assert len(sides[0].noise) == 3
    for first, second in zip(*(side.noise for side in sides)):
        torch.testing.assert_close(first, second)


def test_plugin_side_through_the_harness(split):
    config, train_data, _, test_data = split
    row = harness.run_plugin_side(config, train_data, test_data, 100, diffuasr.METRICS, diffuasr.SCORINGS, diffuasr)
    assert all(0 <= row[metric] <= 1 for metric in diffuasr.METRICS if "@" in metric)
    assert row["denoising_loss"] > 0 and row["train_seconds_per_epoch"] > 0 and row["users_per_second"] > 0
    assert row["norm_ratio"] > 0


def test_evaluate_without_a_plugin_runner_is_refused(split):
    config, train_data, _, test_data = split
    adapter = types.ModuleType("half_adapter")
    adapter.evaluate = diffuasr.evaluate
    with pytest.raises(ValueError, match="evaluate needs a PluginRunner"):
        harness.run_plugin_side(config, train_data, test_data, 100, adapter=adapter)


class FakeGenerator:
    """The official ``DiffusionGenerator`` in our words: reads ``./data/<dataset>/handled/<inter_file>.txt``; its
    loader yields ``(guidance, positions, targets)`` batches of the official pairs, last partial batch dropped."""

    def __init__(self, args, logger, device):
        self.args, self.train = args, defaultdict(list)
        with open(f"./data/{args.dataset}/handled/{args.inter_file}.txt") as file:
            for line in file:
                user, item = map(int, line.split(" "))
                self.train[user].append(item)
        assert all(len(items) - args.aug_seq_len < 3 for items in self.train.values())  # kept whole in train

    def get_user_item_num(self):
        return max(self.train), max(max(items) for items in self.train.values())

    def make_trainloader(self):
        guidance, targets = official_pairs(self.train.values(), self.args.aug_num, self.args.max_len)
        data = torch.utils.data.TensorDataset(torch.tensor(guidance), torch.zeros(len(guidance)), torch.tensor(targets))
        return torch.utils.data.DataLoader(data, batch_size=self.args.train_batch_size, shuffle=True, drop_last=True)


class FakeModel(nn.Module):
    """A stand-in for ``DiffusionModel_CF``: a linear denoiser; ``predict`` squeezes the batch dimension as the
    official one does and returns one ``[batch, items]`` cosine tensor per generated position."""

    def __init__(self, user_num, item_num, device, args):
        super().__init__()
        self.item_emb = nn.Embedding(item_num + 2, args.hidden_size)
        self.denoiser = nn.Linear(args.hidden_size, args.hidden_size)
        self.alpha_bar = torch.linspace(0.99, 0.01, args.num_diffusion_timesteps)
        self.aug_num = args.aug_num

    def get_pred_noise(self, xt, t, guide_vector):
        return self.denoiser(xt.squeeze()) + guide_vector[:, None, :]

    def forward(self, seqs, guidance):
        noise = torch.randn(len(seqs), self.aug_num, self.item_emb.embedding_dim)
        guide = (self.item_emb(guidance) * (guidance > 0).unsqueeze(-1)).sum(dim=1)
        return F.mse_loss(self.get_pred_noise(self.item_emb(seqs) + noise, None, guide), noise)

    def predict(self, guidance, item_indices):
        x = torch.randn(len(guidance), 1, self.aug_num, self.item_emb.embedding_dim).squeeze()
        items = self.item_emb(item_indices)
        return [F.cosine_similarity(x[:, None, position], items, dim=-1) for position in range(self.aug_num)]


class FakeEMA:
    def __init__(self, mu):
        self.updates = 0

    def register(self, module):
        pass

    def update(self, module):
        self.updates += 1


FAKE_OFFICIAL = types.SimpleNamespace(
    diffusion=types.SimpleNamespace(DiffusionModel_CF=FakeModel),
    ema=types.SimpleNamespace(EMAHelper=FakeEMA),
    diffusion_generator=types.SimpleNamespace(DiffusionGenerator=FakeGenerator),
)


def test_official_training_step_and_scoring_on_fake_modules(split):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    runner = diffuasr.OfficialRunner(None, dataset, HPARAMS, seed=100, official=FAKE_OFFICIAL)
    before = runner.target_embedding_weight().clone()
    assert before.shape == (dataset.item_num, diffuasr.HIDDEN_SIZE)  # the mask-token row left out
    assert runner.train_epoch() > 0 and runner.ema.updates == 300 // 64  # full batches of 64 of the 300 pairs
    assert not torch.equal(before, runner.target_embedding_weight())
    _, guidance, targets = diffuasr.test_user_pairs(train_data, test_data, 3, 4)
    scores = runner.generation_scores(guidance[:5])
    assert scores.shape == (5, 3, dataset.item_num) and (scores[..., 0] == -torch.inf).all()
    assert runner.generation_scores(guidance[:1]).shape == (1, 3, dataset.item_num)  # a batch of one
    parts = (targets[:4], guidance[:4], torch.tensor([0, 3, 6, 9]), torch.randn(4, 3, diffuasr.HIDDEN_SIZE))
    losses = [runner.denoising_loss(*(part[row : row + 1] for part in parts)) for row in range(4)]
    assert runner.denoising_loss(*parts) == pytest.approx(np.mean(losses), rel=1e-5)
    row = harness.score_runner(diffuasr, runner, [1.0], config, train_data, test_data, seed=100)
    assert set(diffuasr.METRICS) <= set(row) and row["norm_ratio"] > 0


def test_options_and_missing_snapshot(tmp_path):
    _, adapter, hparams = run_parity.parse_args(["--model=DiffuASR", "--official=x", "--epochs=7", "--aug_num=5"])
    assert adapter is diffuasr and (hparams["epochs"], hparams["aug_num"]) == (7, 5)
    assert diffuasr.plugin_config(hparams)["aug_epochs"] == 7
    with pytest.raises(FileNotFoundError, match="diffusion/diffusion.py"):
        diffuasr.load_official(tmp_path)


def copy_official_unet(plugin_unet, official_unet):
    """Copy the official U-Net's weights into the plugin's ``SequentialUNet`` (module for module, in forward order;
    the official q, k, v convolutions stacked into the plugin's qkv)."""

    def copy(target, source):
        target.weight.data.copy_(source.weight.data)
        target.bias.data.copy_(source.bias.data)

    def copy_block(target, source):
        pairs = [(target.block1[0], source.norm1), (target.block1[2], source.conv1)]
        pairs += [(target.embedding[1], source.temb_proj), (target.block2[0], source.norm2)]
        pairs += [(target.block2[3], source.conv2)]
        if hasattr(source, "nin_shortcut"):
            pairs.append((target.shortcut, source.nin_shortcut))
        for pair in pairs:
            copy(*pair)

    def copy_path(targets, levels, resample):
        sources = [
            module
            for level in levels
            for module in [*level.block, *([getattr(level, resample)] if hasattr(level, resample) else [])]
        ]
        assert len(sources) == len(targets)
        for target, source in zip(targets, sources):
            if isinstance(target, ResidualBlock):
                copy_block(target, source)
            else:
                copy(target.conv, source.conv)

    copy(plugin_unet.step_mlp[0], official_unet.temb.dense[0])
    copy(plugin_unet.step_mlp[2], official_unet.temb.dense[1])
    copy(plugin_unet.guidance_mlp[0], official_unet.guide_emb.dense[0])
    copy(plugin_unet.guidance_mlp[2], official_unet.guide_emb.dense[1])
    copy(plugin_unet.conv_in, official_unet.conv_in)
    copy_path(plugin_unet.down, official_unet.down, "downsample")
    copy_block(plugin_unet.mid[0], official_unet.mid.block_1)
    copy_block(plugin_unet.mid[2], official_unet.mid.block_2)
    attention, official_attention = plugin_unet.mid[1], official_unet.mid.attn_1
    copy(attention.norm, official_attention.norm)
    copy(attention.out, official_attention.proj_out)
    projections = [official_attention.q, official_attention.k, official_attention.v]
    attention.qkv.weight.data.copy_(torch.cat([projection.weight for projection in projections]))
    attention.qkv.bias.data.copy_(torch.cat([projection.bias for projection in projections]))
    copy_path(plugin_unet.up, list(reversed(official_unet.up)), "upsample")
    copy(plugin_unet.conv_out[0], official_unet.norm_out)
    copy(plugin_unet.conv_out[2], official_unet.conv_out)


def copy_official_model(plugin_model, official_model):
    """Copy the official ``DiffusionModel_CF``'s weights into the plugin's DiffuASR: U-Net, item table (rows 0..n;
    the plugin's padding row stays 0) and the unconditional guide (``place_embedding`` -> ``null_guidance``)."""
    copy_official_unet(plugin_model.unet, official_model.unet)
    with torch.no_grad():
        plugin_model.item_embedding.weight[1:] = official_model.item_emb.weight[1 : plugin_model.n_items]
        plugin_model.null_guidance.copy_(official_model.place_embedding.weight[0])


@pytest.mark.skipif(not OFFICIAL_DIR or not Path(OFFICIAL_DIR).is_dir(), reason="no official DiffuASR snapshot")
def test_official_data_model_and_side(split, monkeypatch):
    config, train_data, _, test_data = split
    dataset = train_data._dataset
    official = diffuasr.load_official(OFFICIAL_DIR)
    assert not any(name.partition(".")[0] in diffuasr.OFFICIAL_PACKAGES for name in sys.modules)  # names restored
    sequences = diffuasr.training_sequences(dataset)
    args = diffuasr.official_args(HPARAMS, max(map(len, sequences.values())))
    generator = diffuasr.official_generator(official.diffusion_generator.DiffusionGenerator, sequences, args)
    assert generator.train == sequences and generator.get_user_item_num() == (max(sequences), dataset.item_num - 1)
    official_dataset = generator.make_trainloader().dataset
    guidance, _, targets = zip(*(official_dataset[index] for index in range(len(official_dataset))))
    _, expected_guidance, expected_targets = diffuasr.stage_one_pairs(sequences, 3, 4)
    np.testing.assert_array_equal(np.stack(guidance), expected_guidance)
    np.testing.assert_array_equal(np.stack(targets), expected_targets)

    official_runner = diffuasr.OfficialRunner(OFFICIAL_DIR, dataset, HPARAMS, seed=100)
    official_runner.train_epoch()
    plugin_runner = diffuasr.PluginRunner(config, train_data, seed=100)
    official_model, plugin_model = official_runner.model, plugin_runner.model
    np.testing.assert_allclose(official_model.beta.double(), plugin_model.diffusion.betas.double(), rtol=1e-6)
    copy_official_model(plugin_model, official_model)
    official_model.eval()
    plugin_model.eval()
    noisy, steps, guide = torch.randn(5, 3, 64), torch.randint(0, 50, (5,)), torch.randn(5, 64)
    with torch.no_grad():
        torch.testing.assert_close(plugin_model.unet(noisy, steps, guide), official_model.unet(noisy, steps, guide))
    _, guidance, targets = diffuasr.test_user_pairs(train_data, test_data, 3, 4)
    parts = (targets[:8], guidance[:8], torch.randint(0, 50, (8,)), torch.randn(8, 3, 64))
    assert plugin_runner.denoising_loss(*parts) == pytest.approx(official_runner.denoising_loss(*parts), rel=1e-5)
    # The same generation once the plugin's DDIM steps are the official grid (range(0, T, T // 5), reversed):
    monkeypatch.setattr(plugin_model.diffusion, "ddim_timesteps", lambda steps, start_step=None: [40, 30, 20, 10, 0])
    torch.manual_seed(7)
    plugin_scores = plugin_runner.generation_scores(guidance[:8])
    torch.manual_seed(7)
    torch.testing.assert_close(plugin_scores[..., 1:], official_runner.generation_scores(guidance[:8])[..., 1:])

    row = harness.run_official_side(diffuasr, OFFICIAL_DIR, config, train_data, test_data, HPARAMS, seed=100)
    assert all(0 <= row[metric] <= 1 for metric in diffuasr.METRICS if "@" in metric) and row["norm_ratio"] > 0
