"""DiffuASR adapter: stage 1 (the generator) of the official code (liuqidong07/DiffuASR) driven on the plugin's split.

DiffuASR's stage 1 is not a next-item recommender: it generates the ``aug_num`` (M) items that precede a sequence,
guided by the rest of it. The harness's next-item test does not measure that, so this adapter brings its own plugin
side (``PluginRunner``: the plugin's stage-1 loop) and evaluation (``evaluate``), the same for both sides.

Evaluation (``evaluate``): the stage-1 pairs of the test users, built exactly as the official pairs: a user whose
training sequence has more than M + 2 items gives the guidance = that sequence without its first M items (its last
``history_length`` items) and the target = its first M items. Each side generates the M embeddings of every pair
(its own DDIM chain; both draw the starting noise first, from the same seed per batch, so they start from the same
noise) and ranks all items by cosine similarity to each one (the official rounding). The metric rows are Hit@1 (the
official ``seq_acc``: the rounded item is the true one), Hit/NDCG@10/@20 of the true item at each of the M
positions, over all positions and pairs (RecBole's collector and evaluator, padding item masked), and
``denoising_loss``, the noise-prediction MSE of the guided denoiser on the same pairs at the same random steps and
noise on both sides (``eval()`` mode).
``users_per_second``: pairs generated per second. The pairs are the training pairs of these users: the generator is
used in-sample (it augments the very users it was trained on), and the official code validates it in the same way
(first M items of the training sequence from the rest). ``norm_ratio``: both sides' item tables (what the denoising
loss regresses onto), popular / rare quarter of the training targets.

What is imported from the official snapshot (never copied): ``DiffusionModel_CF`` of ``diffusion/diffusion.py`` (its
``forward`` is the training loss: antithetic timesteps, guide vector = sum of the guidance embeddings, noise loss on
the guided combination ``cond + s (cond - uncond)`` with the learned ``place_embedding`` as the unconditional guide;
its ``predict`` is the 5-step DDIM chain and the cosine rounding), which builds the ``UNet`` of ``diffusion/unet.py``;
``EMAHelper`` of ``diffusion/ema.py``; ``DiffusionGenerator`` of ``generators/diffusion_generator.py`` (the official
data loader and ``make_trainloader``: ``filter_data``, ``DiffusionTrainDataset``, random order, ``drop_last``).
``train_diffusion.py`` (argparse at import) and ``trainers/diffusion_trainer.py`` are not imported: the adapter
builds the argument namespace itself (``official_args``) and runs the trainer's ``_train_one_epoch`` in its own words.

Runtime shims supplied here, not official code:

- ``diffusion/diffusion.py`` imports six modules the repository lacks: ``diffusion.transformer`` (``TrmModel``),
  ``diffusion.gru`` (``GRUModel``, ``GuidedGRUModel``), ``diffusion.unet1d`` (``UNet1d``), ``diffusion.unet2d``
  (``UNet2d``), ``diffusion.wavenet`` (``DiffWave``) and ``diffusion.preference`` (``BertPref``). Stand-in modules of
  those names hold classes that raise when built; they are only built for other ``noise_model`` / ``pref`` values
  than this run's (``unet``, no preference model). ``diffusion.diffusionlm`` (imported by the trainer only) is not
  needed, as the trainer is not imported.
- The official folder goes first on ``sys.path`` while the files load (they import ``diffusion.*``,
  ``generators.*`` and ``utils.*`` by those names); the names are taken out of ``sys.modules`` again afterwards
  (earlier entries restored), so other adapters' modules of the same names are not affected.
- The official model squeezes the batch dimension of a single sequence (``x.squeeze()``): a batch of one is
  scored twice over and the first result kept.

Export (``export``): the official input file ``data/<dataset>/handled/inter.txt``, one line ``user item`` per
interaction in time order, holding the plugin's training sequences (rebuilt from its training interactions: the
first history item, then every target); ids are the plugin's (both 1-based, 0 the padding). The official loader
(``Generator._load_dataset``) reads it from a temporary working directory and splits off the last two items of a
user with at least ``aug_seq_len + 3`` of them; ``aug_seq_len`` (the official flag of the downstream augmented
length, read nowhere else in stage 1) is set to the longest exported sequence, so every training sequence stays
whole in the official ``train``. The official item count is the largest exported item id; it must be the plugin's.

Training (the official trainer's ``_train_one_epoch`` in our words): one pass of ``make_trainloader`` per epoch
(batches of ``batch_size``, the last partial batch dropped), ``loss = model(targets, guidance)``, backward, Adam
step (lr, ``l2``), zero grad, EMA update (``--ema`` of the official scripts, rate 0.9999; the EMA is never applied to
the model, as officially). The official ``StepLR`` is never stepped in stage 1 and is left out. No early stopping:
the official script stops once the training loss has not improved for 100 epochs (of 3,000) and keeps the
best-loss checkpoint; here both sides run ``epochs`` epochs and are tested after the last one.

Fixed on both sides (hard-coded in the official ``DiffusionModel.set_config`` / ``__init__``): hidden size 64 (an
8 x 8 map), U-Net ch 8, ch_mult [1, 2, 2, 2], 2 residual blocks, dropout 0.1, attention in the middle only, 5 DDIM
steps, eta 0, linear betas ``1000 / T * (1e-4 ... 0.02)``. The plugin side is the plugin's DiffuASR with
``guidance_type: cf``, ``cf_training: official`` and these values (``plugin_config``), trained by its own stage-1
loop (``diffuasr_augment.fit_generator``; its epochs are timed together, seconds per epoch = total / epochs).

Not the same on both sides: the DDIM grid (official 800, 600, 400, 200, 0, i.e. ``range(0, T, T // 5)`` reversed;
plugin ``linspace(T - 1, 0, 5)``), the random initial values (same schemes, modules built in another order; the
attention's q, k, v are one 1 x 1 convolution in the plugin), the random streams (batch order, steps, noise, dropout),
the float32 rounding of the guided combination (official ``cond + w (cond - uncond)``, plugin ``(1 + w) cond -
w uncond``) and the official table's two rows that never train (its trainable but masked padding row, the mask-token
row). The training steps are the official antithetic pairs ``t``, ``T - 1 - t`` on both sides (the plugin drew them
uniformly before; see ``benchmarks/parity/README.md`` for what that changed).
"""

import contextlib
import logging
import os
import sys
import tempfile
import time
import types
from argparse import Namespace

import numpy as np
import torch
import torch.nn.functional as F
from recbole.evaluator import Collector, Evaluator
from recbole.utils import init_seed

from benchmarks.parity.adapters import diffurec
from benchmarks.parity.official_code import checked_snapshot
from recbole_diffusion import get_model
from recbole_diffusion.diffuasr_augment import fit_generator

MODEL = "DiffuASR"
OFFICIAL_REPOSITORY = "liuqidong07/DiffuASR"
OFFICIAL_FILES = (
    "diffusion/diffusion.py",
    "diffusion/unet.py",
    "diffusion/utils.py",
    "diffusion/classifier.py",
    "diffusion/ema.py",
    "generators/diffusion_generator.py",
    "generators/generator.py",
    "generators/data.py",
    "utils/utils.py",
)
OFFICIAL_PACKAGES = ("diffusion", "generators", "utils")
# Modules diffusion/diffusion.py imports that the repository does not have -> the names it imports from them.
MISSING_MODULES = {
    "diffusion.transformer": ("TrmModel",),
    "diffusion.gru": ("GRUModel", "GuidedGRUModel"),
    "diffusion.unet1d": ("UNet1d",),
    "diffusion.unet2d": ("UNet2d",),
    "diffusion.wavenet": ("DiffWave",),
    "diffusion.preference": ("BertPref",),
}
EXPORT_NAME = "parity"  # the official dataset folder name of the export
HIDDEN_SIZE = 64  # official set_config: an 8 x 8 map for ch_mult [1, 2, 2, 2]
UNET = {"unet_channels": 8, "unet_channel_mult": [1, 2, 2, 2], "unet_res_blocks": 2, "unet_dropout": 0.1}
DDIM_STEPS = 5  # official DiffusionModel.timesteps
EMA_RATE = 0.9999  # official --ema_rate default
EVAL_BATCH_SIZE = 100  # official evaluation / augmentation loaders

# Shared hyperparameters: the official argparse defaults of train_diffusion.py (history_length: its max_len;
# guidance_weight: its classifier_scale) and the stage-1 epochs of the plugin's yaml (official scripts: 3,000).
DEFAULTS = {
    "aug_num": 10,
    "history_length": 200,
    "diffusion_steps": 1000,
    "guidance_weight": 1.0,
    "learning_rate": 0.001,
    "weight_decay": 0.0,
    "batch_size": 512,
    "epochs": 100,
}
MODIFICATIONS = {}  # no option changes the official code
METRICS = ("hit@1", "hit@10", "ndcg@10", "hit@20", "ndcg@20", "denoising_loss")
SCORINGS = ("eval",)  # the official evaluation and augmentation call model.eval()
EVALUATION_NOTE = (
    "Stage 1 only (the generator), both sides after the last epoch (no early stopping, no checkpoint selection). "
    "Pairs: every test user whose training sequence has more than aug_num + 2 items; guidance: that sequence without "
    "its first aug_num items (the last history_length), target: its first aug_num items (the official pairs). Each "
    "side generates the aug_num embeddings (5-step DDIM from the same seeded noise) and ranks all items by cosine "
    "similarity (the official rounding); hit@1 (the official seq_acc), hit/ndcg@10/@20 of the true item per "
    "position, mean over positions and pairs, padding item masked. denoising_loss: noise MSE of the guided denoiser "
    "on the same pairs, steps and noise on both sides, eval() mode. users_per_second: pairs generated per second. "
    "norm_ratio: collapse.popularity_norm_ratio of each side's item table (popular / rare quarter of training "
    "targets)."
)


def plugin_config(hparams):
    """The plugin's config entries that give its DiffuASR the shared hyperparameters ``hparams`` and the official
    fixed sizes."""
    scale = 1000 / hparams["diffusion_steps"]  # the official linear schedule scales its ends by 1000 / T
    return {
        "MAX_ITEM_LIST_LENGTH": hparams["history_length"],
        "aug_num": hparams["aug_num"],
        "hidden_size": HIDDEN_SIZE,
        **UNET,
        "guidance_type": "cf",
        "cf_training": "official",
        "guidance_weight": hparams["guidance_weight"],
        "diffusion_steps": hparams["diffusion_steps"],
        "beta_schedule": "linear",
        "beta_start": scale * 0.0001,
        "beta_end": scale * 0.02,
        "inference_steps": DDIM_STEPS,
        "ddim_eta": 0.0,
        "aug_epochs": hparams["epochs"],
        "learning_rate": hparams["learning_rate"],
        "weight_decay": hparams["weight_decay"],
        "train_batch_size": hparams["batch_size"],
        "eval_batch_size": EVAL_BATCH_SIZE,
    }


def official_args(hparams, aug_seq_len):
    """The namespace ``train_diffusion.py`` would hand to ``DiffusionGenerator`` and ``DiffusionModel_CF`` for the
    official cf run of ``experiments/diffusion.bash`` (``--noise_model unet --guide --ema --hidden_size 64``) with
    ``hparams``; ``aug_seq_len``: see the module docstring."""
    return Namespace(
        model_name="diffusion",
        dataset=EXPORT_NAME,
        inter_file="inter",
        aug_file="inter",
        aug_seq=False,
        aug=False,
        aug_seq_len=aug_seq_len,
        aug_num=hparams["aug_num"],
        max_len=hparams["history_length"],
        num_workers=0,
        train_batch_size=hparams["batch_size"],
        guide_model="cf",
        noise_model="unet",
        guide=True,
        pref=False,
        rounding=False,
        simple=False,
        classifier_scale=hparams["guidance_weight"],
        rec_path="",
        hidden_size=HIDDEN_SIZE,
        num_diffusion_timesteps=hparams["diffusion_steps"],
        dm_scheduler="linear",
        lr=hparams["learning_rate"],
        l2=hparams["weight_decay"],
        ema=True,
        ema_rate=EMA_RATE,
    )


def training_sequences(dataset):
    """``{user: training items in time order}`` of the plugin's training split ``dataset`` (the first history item of
    the user's first interaction, then every target: what ``diffuasr_augment.user_sequences`` keeps for stage 1)."""
    return diffurec.export(dataset)["train"]


def export(sequences):
    """The official ``handled/inter.txt`` text of ``sequences`` (user -> items in time order): ``user item`` lines."""
    return "".join(f"{user} {item}\n" for user, items in sequences.items() for item in items)


def stage_one_pairs(sequences, aug_num, history_length):
    """The official stage-1 pairs of ``sequences`` (user -> items): ``(users, guidance, targets)``.

    A sequence gives a pair when it has more than ``aug_num + 2`` items (official ``filter_data``); guidance: its
    items after the first ``aug_num``, the last ``history_length`` of them left-padded with 0 ``[pairs, history]``;
    targets: its first ``aug_num`` items ``[pairs, aug_num]`` (official ``DiffusionTrainDataset``)."""
    users = [user for user, items in sequences.items() if len(items) > aug_num + 2]
    guidance = torch.zeros(len(users), history_length, dtype=torch.long)
    for row, user in enumerate(users):
        tail = sequences[user][aug_num:][-history_length:]
        guidance[row, history_length - len(tail) :] = torch.tensor(tail)
    targets = torch.tensor([sequences[user][:aug_num] for user in users], dtype=torch.long).reshape(-1, aug_num)
    return users, guidance, targets


def test_user_pairs(train_data, test_data, aug_num, history_length):
    """``stage_one_pairs`` of the users of ``test_data``, from their training sequences in ``train_data``."""
    sequences = training_sequences(train_data._dataset)
    test_users = set(test_data._dataset.inter_feat[test_data._dataset.uid_field].tolist())
    return stage_one_pairs({user: sequences[user] for user in sorted(test_users)}, aug_num, history_length)


@torch.no_grad()
def evaluate(config, train_data, test_data, runner, seed):
    """The generator's metrics (``METRICS``) of ``runner`` on the stage-1 pairs of the test users, and pairs
    generated per second (see the module docstring). ``runner``: ``generation_scores(guidance)`` -> cosine scores
    ``[pairs, aug_num, n_items]`` in the plugin's item ids; ``denoising_loss(targets, guidance, timesteps, noise)``."""
    aug_num, history_length = config["aug_num"], config["MAX_ITEM_LIST_LENGTH"]
    _, guidance, targets = test_user_pairs(train_data, test_data, aug_num, history_length)
    if not len(targets):
        raise ValueError(f"no test user has more than aug_num + 2 = {aug_num + 2} training items")
    collector, evaluator = Collector(config), Evaluator(config)
    init_seed(seed, True)
    seconds = 0.0
    batches = range(0, len(targets), EVAL_BATCH_SIZE)
    for start in batches:
        torch.manual_seed(seed + start)  # each batch starts from the same noise on both sides
        began = time.perf_counter()
        scores = runner.generation_scores(guidance[start : start + EVAL_BATCH_SIZE]).float()
        seconds += time.perf_counter() - began
        scores = scores.reshape(-1, scores.size(-1)).clone()  # one row per (pair, position)
        scores[:, 0] = -torch.inf
        positives = targets[start : start + EVAL_BATCH_SIZE].reshape(-1)
        collector.eval_batch_collect(scores, None, torch.arange(len(scores)), positives)
    result = evaluator.evaluate(collector.get_data_struct())
    row = {metric: float(result[metric]) for metric in METRICS if "@" in metric}
    generator = torch.Generator().manual_seed(seed)
    timesteps = torch.randint(0, config["diffusion_steps"], (len(targets),), generator=generator)
    noise = torch.randn(len(targets), aug_num, HIDDEN_SIZE, generator=generator)
    parts = (targets, guidance, timesteps, noise)
    losses = [
        runner.denoising_loss(*(part[start : start + EVAL_BATCH_SIZE] for part in parts))
        * len(targets[start : start + EVAL_BATCH_SIZE])
        for start in batches
    ]
    row["denoising_loss"] = sum(losses) / len(targets)
    return row, len(targets) / seconds


class PluginRunner:
    """The plugin's DiffuASR stage 1 on the plugin's training split: its own loop, and the scoring ``evaluate``
    calls."""

    def __init__(self, config, train_data, seed):
        self.config = config
        self.device = config["device"]
        self.model = get_model(MODEL)(config, train_data._dataset).to(self.device)
        self.sequences = list(training_sequences(train_data._dataset).values())

    def fit(self):
        """``diffuasr_augment.fit_generator`` for ``aug_epochs`` epochs; returns the mean seconds of an epoch (the
        loop runs all epochs in one call)."""
        start = time.perf_counter()
        fit_generator(self.model, self.sequences, self.config)
        return (time.perf_counter() - start) / self.config["aug_epochs"]

    @torch.no_grad()
    def generation_scores(self, guidance):
        """Cosine rounding scores ``[batch, aug_num, n_items]`` of the embeddings generated for ``guidance``."""
        self.model.eval()
        return self.model.rounding_scores(self.model.generate(self.model.forward(guidance.to(self.device)))).cpu()

    @torch.no_grad()
    def denoising_loss(self, targets, guidance, timesteps, noise):
        """The noise MSE of the guided denoiser (``calculate_loss`` with given steps and noise), ``eval()`` mode."""
        self.model.eval()
        targets, guidance, timesteps, noise = (part.to(self.device) for part in (targets, guidance, timesteps, noise))
        noisy = self.model.diffusion.q_sample(self.model.item_embedding(targets), timesteps, noise)
        predicted = self.model.denoise(noisy, timesteps, self.model.forward(guidance))
        return F.mse_loss(predicted, noise).item()

    def target_embedding_weight(self):
        return self.model.item_embedding.weight.detach().cpu()


def _stand_in_module(name, class_names):
    """A module ``name`` whose classes ``class_names`` raise when built (they are not in the official repository)."""
    module = types.ModuleType(name)

    def refuse(self, *args, **kwargs):
        raise NotImplementedError(f"{name} is not in the official DiffuASR repository (parity stand-in)")

    for class_name in class_names:
        setattr(module, class_name, type(class_name, (), {"__init__": refuse}))
    return module


def _is_official_name(name):
    return name.partition(".")[0] in OFFICIAL_PACKAGES


@contextlib.contextmanager
def _official_import_context(official_dir):
    saved_path = list(sys.path)
    saved_modules = {name: module for name, module in sys.modules.items() if _is_official_name(name)}
    for name in saved_modules:
        del sys.modules[name]
    sys.modules.update({name: _stand_in_module(name, classes) for name, classes in MISSING_MODULES.items()})
    sys.path.insert(0, str(official_dir))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in [name for name in sys.modules if _is_official_name(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)


def load_official(official_dir):
    """The official modules of the snapshot ``official_dir`` as a namespace (``diffusion``, ``ema``,
    ``diffusion_generator``), imported with the stand-ins of the module docstring."""
    official_dir = checked_snapshot(official_dir, OFFICIAL_FILES, "the repository root")
    with _official_import_context(official_dir):
        import diffusion.diffusion  # the official modules, importable only inside the context
        import diffusion.ema
        import generators.diffusion_generator

        return types.SimpleNamespace(
            diffusion=diffusion.diffusion, ema=diffusion.ema, diffusion_generator=generators.diffusion_generator
        )


@contextlib.contextmanager
def _working_directory(folder):
    saved = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(saved)


def official_generator(generator_class, sequences, args):
    """The official ``generator_class`` (``DiffusionGenerator``) loading ``export(sequences)`` as its input file."""
    with tempfile.TemporaryDirectory() as folder:
        data_file = os.path.join(folder, "data", args.dataset, "handled", f"{args.inter_file}.txt")
        os.makedirs(os.path.dirname(data_file))
        with open(data_file, "w") as file:
            file.write(export(sequences))
        with _working_directory(folder):
            return generator_class(args, logging.getLogger(f"{MODEL} official"), torch.device("cpu"))


def _doubled(batch):
    """A batch of one row twice over: the official model squeezes the batch dimension of a single row."""
    return torch.cat([batch, batch])


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        official = official or load_official(official_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        sequences = training_sequences(dataset)
        args = official_args(hparams, max(map(len, sequences.values())))
        generator = official_generator(official.diffusion_generator.DiffusionGenerator, sequences, args)
        user_num, self.item_num = generator.get_user_item_num()
        if self.item_num != dataset.item_num - 1:
            raise ValueError(
                f"the official loader found {self.item_num} items in the training split, the plugin has "
                f"{dataset.item_num - 1}: an item occurs only in validation or test"
            )
        self.model = official.diffusion.DiffusionModel_CF(user_num, self.item_num, self.device, args).to(self.device)
        self.loader = generator.make_trainloader()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr, weight_decay=args.l2)
        self.ema = official.ema.EMAHelper(mu=args.ema_rate)
        self.ema.register(self.model)

    def train_epoch(self):
        """One official epoch (``DiffusionTrainer._train_one_epoch``); returns its mean loss (None: no full batch)."""
        self.model.train()
        losses = []
        for guidance, _, targets in self.loader:
            loss = self.model(targets.long().to(self.device), guidance.long().to(self.device))
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.ema.update(self.model)
            losses.append(loss.item())
        return float(np.mean(losses)) if losses else None

    @torch.no_grad()
    def generation_scores(self, guidance):
        """The official ``predict`` (DDIM, cosine to items 1..n) as ``[batch, aug_num, n_items]`` in the plugin's ids
        (column 0, the padding item: -inf)."""
        if len(guidance) == 1:
            return self.generation_scores(_doubled(guidance))[:1]
        self.model.eval()
        guidance = guidance.to(self.device)
        items = torch.arange(1, self.item_num + 1, device=self.device).repeat(len(guidance), 1)
        scores = torch.stack(self.model.predict(guidance, items), dim=1)
        return F.pad(scores, (1, 0), value=-torch.inf).cpu()

    @torch.no_grad()
    def denoising_loss(self, targets, guidance, timesteps, noise):
        """The official noise MSE (``DiffusionModel_CF.forward`` in our words) with given steps and noise, ``eval()``
        mode."""
        if len(guidance) == 1:
            return self.denoising_loss(*map(_doubled, (targets, guidance, timesteps, noise)))
        self.model.eval()
        targets, guidance, timesteps, noise = (part.to(self.device) for part in (targets, guidance, timesteps, noise))
        start = self.model.item_emb(targets)
        alpha_bar = self.model.alpha_bar[timesteps].reshape(-1, 1, 1)
        noisy = alpha_bar.sqrt() * start + (1 - alpha_bar).sqrt() * noise
        guide_vector = (self.model.item_emb(guidance) * (guidance > 0).unsqueeze(-1)).sum(dim=1)
        predicted = self.model.get_pred_noise(noisy, timesteps, guide_vector)
        return F.mse_loss(predicted, noise).item()

    def target_embedding_weight(self):
        """The official item table in the plugin's ids: rows 0 (padding) to n; the mask-token row n + 1 left out."""
        return self.model.item_emb.weight[: self.item_num + 1].detach().cpu()
