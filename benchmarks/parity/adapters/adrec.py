"""ADRec adapter: the official code (Nemo-1024/ADRec, ``src/``) driven on the plugin's split.

``--official`` is the repository root of the snapshot (the folder holding ``src/``). The official run is two
commands: ``python main.py --model pretrain`` trains a SASRec without position embeddings (``src/sasrec.py`` with
``args.model == 'pretrain'``) and saves it to ``saved/pretrain/<dataset>/pretrain.pth``; ``python main.py --model
adrec`` builds ``Att_Diffuse_model`` (``src/model.py``, denoiser ``AdRec`` of ``src/adrec.py``) with that item table
frozen (``trainer.choose_model`` sets ``pretrained`` and ``freeze_emb``), unfreezes it at epoch 5 and trains it with
``PCGrad`` (``src/pcgrad.py``). Both commands run ``trainer.model_train``; the adapter runs both stages, each seeded
as its command is, in ``OfficialRunner``.

What is imported from the official snapshot (never copied): ``choose_model`` and ``optimizers`` of ``src/trainer.py``
(the two models and their Adam), ``PCGrad`` of ``src/pcgrad.py``, ``Data_Train`` and ``fix_random_seed_as`` of
``src/utils.py``, and through them ``SASRec``, ``Att_Diffuse_model``, ``AdRec`` and their modules (``common.py``,
``step_sample.py``; ``model.py`` also imports ``diffurec.py`` and ``dreamrec.py``). ``src/main.py`` and
``src/logger.py`` are not imported (argparse, log files); the namespace is ``src/config.yaml`` with the run's values
(``official_args``). Runtime shims supplied here, not official code:

- The files import each other by bare names (``from model import ...``, ``from common import *``): ``src/`` goes
  first on ``sys.path`` while they load; the bare names are taken out of ``sys.modules`` again afterwards (earlier
  entries restored), so other adapters (DiffuRec's ``diffurec``, ``utils``, ``step_sample``) are not affected.
- ``einops`` (``common.py``, ``utils.py``, ``model.py``) and ``torchtune`` (``diffurec.py``, ``dreamrec.py``) are
  imported at module level but used only by code ADRec does not run (rotary and sinusoidal position embeddings,
  ``pack_one``, the DiffuRec / DreamRec baselines); when they are not installed, stand-in modules whose functions and
  classes raise when called are in ``sys.modules`` while the files load, and removed after.
- ``Att_Diffuse_model`` reads the pretrained table from ``saved/pretrain/<args.dataset>/pretrain.pth`` relative to
  the working directory: the pretraining SASRec's ``state_dict`` is saved there in a temporary folder, which is the
  working directory only while the official ``choose_model`` builds the model.
- ``args.item_num`` is the split's item count (``trainer.item_num_create`` hard-codes the official datasets' counts,
  e.g. 1008 for the official ml-100k files, and is not called); ``args.device`` is this process's device.

Export (``export``): the official ``dataset.pkl`` ``train`` entry: one item sequence per user (a list, indexed
0 .. users - 1, as ``TrainDataset`` reads it), rebuilt from the plugin's per-user training row (the user's longest
training prefix: ``item_id_list[:item_length]`` then ``item_id``). Plugin item ``i`` is official item ``i`` (both
1-based, 0 = padding). ``Data_Train`` with ``parallel_ag`` (the official default) turns a sequence into one row:
history ``seq[:-1][-max_len:]`` left-padded with 0 and the next item at every history position (``official_rows``
says it in our words). A history longer than ``history_length`` is cut to its last items on both sides alike, so the
truncated plugin row gives the same official row. Test histories are left-padded (``diffurec.official_histories``).

Pretraining (in ``OfficialRunner.__init__``, before the first ``train_epoch``): ``fix_random_seed_as(seed)``,
``choose_model`` with ``model='pretrain'`` (its init: Linear and Embedding weights N(0, 0.1), padding row included),
then ``pretrain_epochs`` epochs of the official loop: the shuffled ``Data_Train`` loader, CE of every non-padding
position over the whole table (``SASRec.calculate_loss``), ``PCGrad(optimizers(...)).pc_backward([ce])`` (one
objective: its own gradient), Adam (``learning_rate``, ``weight_decay``), ``CosineAnnealingLR(T_max=lr_cosine_epochs)``
stepped per epoch. The official command validates every 5 epochs, stops after 4 validations without a gain and
saves the best model; here the budget is fixed (``pretrain_epochs``, equal on both sides) and the last model is
kept. Its seconds are not in ``train_seconds_per_epoch`` (the harness times ``train_epoch`` only): the runner keeps
them in ``pretrain_seconds`` and prints them; the plugin also pretrains before its first epoch (``README.md``).

Training (``train_epoch``, the official ``model_train`` loop in our words): ``fix_random_seed_as(seed)`` and
``choose_model`` with ``model='adrec'`` happen once before the first epoch (the second command), then per epoch: at
epoch ``freeze_epochs`` (official: 5) ``item_embedding.weight.requires_grad = True``; one pass of the shuffled
``Data_Train`` loader (batch ``batch_size``): ``out_seq, _, mse = model(seq, tag, train_flag=True)``, ``ce =
model.calculate_loss(out_seq, tag)``, ``pc_backward([ce, mse_weight * mse])`` (``pcgrad`` false: the mean of the two
gradients where both exist, their sum elsewhere), ``step()``; then ``CosineAnnealingLR`` steps. No validation, no
early stopping.

Scoring (``full_sort_scores``): ``model(seq, tag, train_flag=False)`` (``AdRec.denoise_sample``: the causal encoder,
then all ``diffusion_steps`` reverse DDPM steps on the last position from N(0, I), the earlier positions held at
their known next items with step 0), then ``calculate_score`` of the last position (inner product with the whole
table, padding row included, which the evaluator masks). ``seq`` is the plugin's history left-padded; ``tag`` is the
next item at every history position (``official_targets``), with 0 at the last position, which the official test
fills with the answer: that entry is replaced by noise before the first step and ``mask_tag`` is never read by the
sampler, so it cannot matter (tested). The metric rows use ``model.eval()``, as the official test (``best_model`` is
a copy taken after ``model.eval()``).
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
import types
from importlib.util import find_spec
from pathlib import Path

import torch
import yaml

from benchmarks.parity.adapters.diffurec import OFFICIAL_SCHEDULES, official_histories
from benchmarks.parity.official_code import checked_snapshot
from recbole_diffusion.pretrain import pretrained_next_item_embeddings

MODEL = "ADRec"
OFFICIAL_REPOSITORY = "Nemo-1024/ADRec"
OFFICIAL_FILES = (
    "trainer.py",
    "model.py",
    "adrec.py",
    "sasrec.py",
    "common.py",
    "utils.py",
    "step_sample.py",
    "pcgrad.py",
    "metrics.py",
    "diffurec.py",
    "dreamrec.py",
    "config.yaml",
)
# The bare module names the official files import each other by.
OFFICIAL_MODULES = tuple(name[: -len(".py")] for name in OFFICIAL_FILES if name.endswith(".py"))
# Imported at module level, used only by code ADRec does not run: stand-ins when not installed (module docstring).
STAND_INS = {"einops": ("rearrange", "pack", "unpack"), "torchtune": (), "torchtune.modules": ()}
STAND_IN_CLASSES = {"torchtune.modules": ("RotaryPositionalEmbeddings",)}
OFFICIAL_BLOCKS = 2  # the official causal encoder (ag_encoder), denoising decoder and pretraining SASRec: 2 blocks each
OFFICIAL_HEADS = 4  # hard-coded in common.TransformerEncoder
OFFICIAL_INNER_FACTOR = 4  # PositionwiseFeedForward: hidden -> 4 x hidden -> hidden

# Shared hyperparameters: src/config.yaml (history_length: max_len; dropout / emb_dropout; mse_weight: loss_scale)
# and the constants of trainer.model_train (freeze_epochs: the warm-up epoch 5; lr_cosine_epochs: T_max 500). The
# official epochs (500) end by early stopping; here both budgets are fixed and equal on both sides.
DEFAULTS = {
    "hidden_size": 128,
    "history_length": 50,
    "dropout": 0.1,
    "emb_dropout": 0.3,
    "lambda_uncertainty": 0.001,
    "diffusion_steps": 32,
    "beta_schedule": "trunc_linear",
    "mse_weight": 1.0,
    "freeze_epochs": 5,
    "learning_rate": 0.001,
    "weight_decay": 1e-05,
    "batch_size": 512,
    "lr_cosine_epochs": 500,
    "pretrain_epochs": 50,
    "epochs": 50,
    "frozen_warmup": False,
    "unpadded_attention": False,
    "plugin_pretraining": False,
}
# Options that change the official code's behaviour (reported in table.md as modifications). The first two fix
# official flaws that the plugin keeps by default and offers to fix: they set the plugin's option too.
MODIFICATIONS = {
    "frozen_warmup": "the item table truly frozen during the warm-up (its zero PCGrad gradient is removed before "
    "each Adam step, so weight decay does not move it and Adam keeps no state for it); the plugin side runs with "
    "warmup_weight_decay False, the same fix",
    "unpadded_attention": "no real item attends to padding, in both stages: training rows right-aligned (padding "
    "after the items; same shuffle), test histories scored unpadded, grouped by length (the official encoders have "
    "no position embeddings, so this equals masking padded keys); the plugin side runs with left_padding False "
    "(RecBole's right-padded causal rows), the same fix",
    "plugin_pretraining": "the official second stage (main.py --model adrec) starts from the plugin's pretrained "
    "table of the same seed (recbole_diffusion.pretrain, as the plugin side's; its padding row zeroed under "
    "unpadded_attention, as the plugin's model does) instead of the official pretraining",
}
SCORINGS = ("eval",)  # the official test scores a copy of the model taken after model.eval()
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); each side pretrains its "
    "own item table for pretrain_epochs epochs first (fixed budget; not in train_seconds_per_epoch); test split of "
    "the plugin, full ranking by the plugin's evaluator, padding item masked; model.eval(), as the official test. "
    "norm_ratio: collapse.popularity_norm_ratio of the item table (popular / rare quarter of training targets)."
)


def plugin_config(hparams):
    """The plugin's config entries that give its ADRec the shared hyperparameters ``hparams``."""
    return {
        "MAX_ITEM_LIST_LENGTH": hparams["history_length"],
        "hidden_size": hparams["hidden_size"],
        "n_layers": OFFICIAL_BLOCKS,
        "denoiser_layers": OFFICIAL_BLOCKS,
        "n_heads": OFFICIAL_HEADS,
        "inner_size": OFFICIAL_INNER_FACTOR * hparams["hidden_size"],
        "hidden_dropout_prob": hparams["dropout"],
        "emb_dropout_prob": hparams["emb_dropout"],
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "diffusion_steps": hparams["diffusion_steps"],
        "beta_schedule": hparams["beta_schedule"],
        "inference_steps": None,  # the full DDPM chain, as officially
        "lambda_uncertainty": hparams["lambda_uncertainty"],
        "mse_weight": hparams["mse_weight"],
        "freeze_epochs": hparams["freeze_epochs"],
        "warmup_weight_decay": not hparams["frozen_warmup"],
        "left_padding": not hparams["unpadded_attention"],
        "item_emb_path": None,  # the model pretrains its own table inside the command
        "pretrain_epochs": hparams["pretrain_epochs"],
        "pretrain_learning_rate": hparams["learning_rate"],  # one config.yaml for both official commands
        "pretrain_batch_size": hparams["batch_size"],
        "learning_rate": hparams["learning_rate"],
        "weight_decay": hparams["weight_decay"],
        "train_batch_size": hparams["batch_size"],
        "lr_cosine_epochs": hparams["lr_cosine_epochs"],
        "epochs": hparams["epochs"],
    }


def official_args(official_dir, hparams, item_num, seed, device, model="adrec", dataset="parity"):
    """The namespace ``main.py`` would build for ``--model <model>``: ``src/config.yaml`` of the snapshot with the
    run's values (``hparams``, ``item_num``, ``seed``, ``device``, ``dataset`` (names the pretrained table's folder
    only)); ``trainer.choose_model`` then sets ``pretrained`` and ``freeze_emb`` for ``adrec``."""
    with open(Path(official_dir) / "src" / "config.yaml") as handle:
        args = argparse.Namespace(**yaml.safe_load(handle))
    values = {
        "model": model,
        "dataset": dataset,
        "random_seed": seed,
        "device": str(device),
        "item_num": item_num,
        "max_len": hparams["history_length"],
        "batch_size": hparams["batch_size"],
        "hidden_size": hparams["hidden_size"],
        "dropout": hparams["dropout"],
        "emb_dropout": hparams["emb_dropout"],
        "lambda_uncertainty": hparams["lambda_uncertainty"],
        "diffusion_steps": hparams["diffusion_steps"],
        "noise_schedule": OFFICIAL_SCHEDULES[hparams["beta_schedule"]],
        "loss_scale": hparams["mse_weight"],
        "lr": hparams["learning_rate"],
        "weight_decay": hparams["weight_decay"],
        "epochs": hparams["epochs"] if model == "adrec" else hparams["pretrain_epochs"],
    }
    for key, value in values.items():
        setattr(args, key, value)
    return args


def user_rows(dataset):
    """Per user (in order of first appearance) the index of its longest training row of ``dataset`` (the last of
    the longest: with the plugin's ADRec data there is one row per user)."""
    users = dataset.inter_feat[dataset.uid_field].tolist()
    lengths = dataset.inter_feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]].tolist()
    best = {}
    for index, (user, length) in enumerate(zip(users, lengths)):
        if user not in best or length >= lengths[best[user]]:
            best[user] = index
    return best


def export(dataset):
    """The plugin's training split ``dataset`` as the official ``dataset.pkl`` ``train`` entry: a list with one item
    sequence per user (users in order of first appearance), the history of the user's longest training row then its
    target, in the plugin's item ids (= the official ids)."""
    history = dataset.inter_feat[dataset.iid_field + dataset.config["LIST_SUFFIX"]]
    lengths = dataset.inter_feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]]
    targets = dataset.inter_feat[dataset.iid_field]
    return [
        history[index, : int(lengths[index])].tolist() + [int(targets[index])] for index in user_rows(dataset).values()
    ]


def official_rows(sequences, max_len):
    """The official training rows of ``sequences`` in our words (``TrainDataset`` with ``parallel_ag``): history
    ``seq[:-1][-max_len:]`` left-padded with 0, targets the next item at every history position, as two
    ``[users, max_len]`` int64 tensors."""
    histories, targets = [], []
    for sequence in sequences:
        history, following = sequence[:-1][-max_len:], sequence[1:][-max_len:]
        histories.append([0] * (max_len - len(history)) + history)
        targets.append([0] * (max_len - len(following)) + following)
    return torch.tensor(histories, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


def official_targets(sequence):
    """The official test ``tag`` of left-padded histories ``[batch, L]``: at every history position the next history
    item, 0 at padding positions and at the last position (the official test puts the answer there, which the
    sampler never reads; module docstring)."""
    targets = torch.zeros_like(sequence)
    targets[:, :-1] = torch.where(sequence[:, :-1] > 0, sequence[:, 1:], 0)
    return targets


def right_aligned(sequence, tag):
    """Left-padded official training rows ``[batch, L]`` (``sequence``, ``tag``) with their padding moved after the
    items (each row rotated; items keep their order)."""
    length = sequence.shape[1]
    shift = length - (sequence > 0).sum(1, keepdim=True)
    index = (torch.arange(length, device=sequence.device) + shift) % length
    return sequence.gather(1, index), tag.gather(1, index)


def _stand_in_module(name, functions=(), classes=()):
    """A module ``name`` whose ``functions`` and ``classes`` raise when called or built."""
    module = types.ModuleType(name)

    def refuse(*args, **kwargs):
        raise NotImplementedError(f"{name} is not installed (parity stand-in; ADRec does not use it)")

    for function in functions:
        setattr(module, function, refuse)
    for class_name in classes:
        setattr(module, class_name, type(class_name, (), {"__init__": refuse}))
    return module


def _installed(name):
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _official_import_context(source):
    saved_path = list(sys.path)
    names = OFFICIAL_MODULES + tuple(STAND_INS)
    saved_modules = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    stand_ins = [name for name in STAND_INS if not _installed(name.partition(".")[0])]
    for name in stand_ins:
        sys.modules[name] = _stand_in_module(name, STAND_INS[name], STAND_IN_CLASSES.get(name, ()))
    if "torchtune.modules" in stand_ins:
        sys.modules["torchtune"].modules = sys.modules["torchtune.modules"]
    sys.path.insert(0, str(source))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in names:
            if name in OFFICIAL_MODULES or name in stand_ins:
                sys.modules.pop(name, None)
        sys.modules.update(saved_modules)


def load_official(official_dir):
    """The official modules of the snapshot ``official_dir`` as a namespace (``trainer``, ``model``, ``utils``,
    ``pcgrad``, ``sasrec``, ``adrec``), imported with the shims of the module docstring."""
    source = checked_snapshot(official_dir, [f"src/{name}" for name in OFFICIAL_FILES], "the repository root") / "src"
    with _official_import_context(source):
        import trainer  # the official modules, importable only inside the context

        return types.SimpleNamespace(
            trainer=trainer, **{name: sys.modules[name] for name in ("model", "utils", "pcgrad", "sasrec", "adrec")}
        )


@contextlib.contextmanager
def pretrained_table_folder(state_dict, dataset):
    """A temporary working directory holding ``saved/pretrain/<dataset>/pretrain.pth`` (``state_dict``), where the
    official ``Att_Diffuse_model`` reads its pretrained table; the previous working directory is restored after."""
    saved_cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "saved" / "pretrain" / dataset
        path.mkdir(parents=True)
        torch.save(state_dict, path / "pretrain.pth")
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(saved_cwd)


class OfficialRunner:
    """The official pretraining and ADRec training on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams, self.seed = hparams, seed
        self.official = official = official or load_official(official_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.seq_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
        self.len_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
        self.sequences = export(dataset)
        name = str(dataset.dataset_name)
        item_num = dataset.item_num - 1
        self.pretrain_args = official_args(official_dir, hparams, item_num, seed, self.device, "pretrain", name)
        self.args = args = official_args(official_dir, hparams, item_num, seed, self.device, "adrec", name)

        # First command: main.py --model pretrain (fixed budget, last model kept), or the plugin's pretraining.
        if hparams["plugin_pretraining"]:
            start = time.perf_counter()
            dataset.config["seed"] = seed  # as the plugin side's config: the same cached table
            self.pretrained_table = pretrained_next_item_embeddings(dataset.config, dataset).detach().cpu().clone()
            if hparams["unpadded_attention"]:
                self.pretrained_table[0] = 0  # as the plugin's model starts from it without left padding
            self.pretrain_seconds, self.pretrain_losses = time.perf_counter() - start, []
            pretrained_state = {"item_embedding.weight": self.pretrained_table}
        else:
            pretrained_state = self._official_pretraining()

        # Second command: main.py --model adrec, the pretrained table read from the file the first one saves.
        official.utils.fix_random_seed_as(seed)
        with pretrained_table_folder(pretrained_state, name):
            self.model = official.trainer.choose_model(args)
        self.optimizer, self.scheduler = self._optimizer(self.model, args)
        self.loader = self._loader(args)
        self.epoch = 0
        self.losses = []

    def _official_pretraining(self):
        """The first official command (``main.py --model pretrain``) for a fixed budget; returns the state dict the
        second command reads its table from."""
        official, hparams, seed = self.official, self.hparams, self.seed
        official.utils.fix_random_seed_as(seed)
        pretrain_model = official.trainer.choose_model(self.pretrain_args)
        pretrain_optimizer, pretrain_scheduler = self._optimizer(pretrain_model, self.pretrain_args)
        loader = self._loader(self.pretrain_args)
        start = time.perf_counter()
        self.pretrain_losses = []
        for _ in range(hparams["pretrain_epochs"]):
            pretrain_model.train()
            losses = []
            for sequence, tag in loader:
                sequence, tag = self._training_rows(sequence, tag)
                pretrain_optimizer.zero_grad()
                out_seq, _ = pretrain_model(sequence, tag, train_flag=True)
                loss = pretrain_model.calculate_loss(out_seq, tag)
                pretrain_optimizer.pc_backward([loss])
                pretrain_optimizer.step()
                losses.append(loss.item())
            pretrain_scheduler.step()
            self.pretrain_losses.append(sum(losses) / len(losses))
        self.pretrain_seconds = time.perf_counter() - start
        self.pretrained_table = pretrain_model.item_embedding.weight.detach().cpu().clone()
        print(
            f"official pretraining: {hparams['pretrain_epochs']} epochs, {self.pretrain_seconds:.1f} s, "
            f"last CE {self.pretrain_losses[-1] if self.pretrain_losses else float('nan'):.4f}",
            flush=True,
        )
        return pretrain_model.state_dict()

    def _optimizer(self, model, args):
        """The official ``PCGrad(optimizers(model, args), args)`` and its per-epoch cosine schedule."""
        optimizer = self.official.pcgrad.PCGrad(self.official.trainer.optimizers(model, args), args)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer.optim, T_max=self.hparams["lr_cosine_epochs"])
        return optimizer, scheduler

    def _loader(self, args):
        return self.official.utils.Data_Train(self.sequences, args).get_pytorch_dataloaders()

    def _training_rows(self, sequence, tag):
        """A batch of the official loader on this device, right-aligned under ``unpadded_attention``."""
        sequence, tag = sequence.to(self.device), tag.to(self.device)
        return right_aligned(sequence, tag) if self.hparams["unpadded_attention"] else (sequence, tag)

    def train_epoch(self):
        """One official ADRec epoch (unfreezing at ``freeze_epochs``), then the cosine step; returns the mean CE."""
        model = self.model
        model.train()
        if self.epoch == self.hparams["freeze_epochs"]:
            model.item_embedding.weight.requires_grad = True
        ce_losses, mse_losses = [], []
        frozen = self.hparams["frozen_warmup"] and self.epoch < self.hparams["freeze_epochs"]
        for sequence, tag in self.loader:
            sequence, tag = self._training_rows(sequence, tag)
            self.optimizer.zero_grad()
            out_seq, _, mse = model(sequence, tag, train_flag=True)
            ce = model.calculate_loss(out_seq, tag)
            self.optimizer.pc_backward([ce, self.args.loss_scale * mse])
            if frozen:
                model.item_embedding.weight.grad = None
            self.optimizer.step()
            ce_losses.append(ce.item())
            mse_losses.append(mse.item())
        self.scheduler.step()
        self.epoch += 1
        self.losses.append((sum(ce_losses) / len(ce_losses), sum(mse_losses) / len(mse_losses)))
        return self.losses[-1][0]

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """The official denoising and scoring on a batch of the plugin's test loader, as ``[batch, n_items]`` scores
        in the plugin's ids (the same ids); ``dropout``: dropout left on."""
        item_seq = interaction[self.seq_field].to(self.device)
        sequence = official_histories(item_seq, interaction[self.len_field].to(self.device))
        self.model.train(dropout)
        if not self.hparams["unpadded_attention"]:
            _, last_item, _ = self.model(sequence, official_targets(sequence), train_flag=False)
            return self.model.calculate_score(last_item).cpu()
        lengths = (sequence > 0).sum(1)
        scores = torch.empty(sequence.shape[0], self.model.item_embedding.num_embeddings)
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero().squeeze(1)
            history = sequence[rows, sequence.shape[1] - length :]
            _, last_item, _ = self.model(history, official_targets(history), train_flag=False)
            scores[rows.cpu()] = self.model.calculate_score(last_item).cpu()
        return scores

    def target_embedding_weight(self):
        """The official item table (plugin id order already; row 0: the official padding row, pretrained)."""
        return self.model.item_embedding.weight.detach().cpu()
