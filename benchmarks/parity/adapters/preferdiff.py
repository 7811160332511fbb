"""PreferDiff adapter: the official code (lswhim/PreferDiff) driven on the plugin's split.

What is imported from the official snapshot (never copied): the class ``PreferDiff`` of ``models/PreferDiff/_model.py``
(which subclasses ``SASRec`` of ``models/SASRec/_model.py`` and builds ``PreferenceDiffusion`` of ``diffusion.py``, with
the blocks of ``modules.py`` and ``base.py``), and ``SequenceDataset`` of ``recdata.py`` (the official batch format).
Runtime shims supplied here, not official code:

- The files import each other by bare names (``modules``, ``diffusion``, ``base``, ``models``): they are imported with
  the official folder first on ``sys.path``; the bare names are taken out of ``sys.modules`` again afterwards
  (earlier entries restored), so other code is not affected.
- The official config dict is built here (``official_config``) instead of by ``utils.get_config`` from the yaml files
  and the command line: the keys the classes read, with the run's values, ``ab=iids`` (trainable item ids),
  ``mode=neg``, ``sample_func=batch``, ``beta_sche=linear``, ``select_pool`` = all items, and ``device`` (this
  process's device; the official runner sets it from ``init_device``).
- ``main.py``, ``runner.py`` and ``trainer.py`` are not imported (wandb, accelerate); the training loop is theirs in
  our words.

Export: every training interaction of the plugin becomes one official sequence ``history + [target]`` (history: the
plugin's, at most ``history_length`` items); ``SequenceDataset`` right-pads the history with 0 to ``max_seq_length``
and yields ``item_seqs``, ``labels`` and ``seq_lengths``. Item ids are the plugin's (both 1-based, 0 = padding;
``item_num`` = ``n_items - 1``).

Training: per epoch one shuffled pass of ``DataLoader(SequenceDataset, batch_size, shuffle=True)`` (the official
``Runner.run``), ``loss = model(batch)['loss']``, AdamW(lr, weight decay), no gradient clipping (the official
``BaseTrainer.train`` never clips, although ``default.yaml`` has ``max_grad_norm``) and no learning-rate schedule.

Scoring: what ``PreferDiff.predict`` computes before its top-k: ``get_representation`` (histories right-padded as the
plugin's), ``diff.sample`` (the official guided DDIM), inner product with the whole item table; the scores are already
in plugin order (column 0: padding, which the evaluator masks).
"""

import contextlib
import sys

import torch

from benchmarks.parity.official_code import checked_snapshot, plugin_initialisation

MODEL = "PreferDiff"
OFFICIAL_REPOSITORY = "lswhim/PreferDiff"
OFFICIAL_FILES = (
    "models/__init__.py",
    "models/PreferDiff/_model.py",
    "models/SASRec/_model.py",
    "diffusion.py",
    "modules.py",
    "base.py",
    "recdata.py",
)
OFFICIAL_MODULES = (
    "models",
    "models.SASRec",
    "models.SASRec._model",
    "models.PreferDiff",
    "models.PreferDiff._model",
    "modules",
    "diffusion",
    "base",
    "recdata",
)
OFFICIAL_LAYERS = 1  # config.yaml layer_num
OFFICIAL_HEADS = 2  # config.yaml num_heads

# Shared hyperparameters: the official defaults (default.yaml, the model's config.yaml, the README's command:
# loss_type=cosine, lamda=0.4, w=2, hidden_size=3072, ab=iids); epochs: a short parity budget (official 150).
DEFAULTS = {
    "hidden_size": 3072,
    "history_length": 10,
    "learning_rate": 0.0001,
    "weight_decay": 0.0,
    "batch_size": 256,
    "dropout": 0.1,
    "timesteps": 2000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "ddim_step": 100,
    "w": 2.0,
    "p": 0.1,
    "loss_type": "cosine",
    "gamma": 5.0,
    "lamda": 0.4,
    "epochs": 5,
    "plugin_init": False,
}
PLUGIN_INIT_STD = 0.02  # the std of the plugin's PreferDiff with initializer_range 0.02
MODIFICATIONS = {
    "plugin_init": "the official model initialised as the plugin's PreferDiff with initializer_range 0.02 (Linear, "
    "Conv1d and position-embedding weights N(0, 0.02), biases 0; item and null embeddings keep the official "
    "N(0, 1)): a modification of the official initialisation",
}
SCORINGS = ("eval",)  # the official evaluate calls model.eval(): no dropout scoring
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); test split of the "
    "plugin, full ranking by the plugin's evaluator, padding item masked; model.eval() (as the official evaluate). "
    "norm_ratio: collapse.popularity_norm_ratio of the item table (popular / rare quarter of training targets)."
)


def inference_steps(hparams):
    """The plugin's DDIM step count for the official ``ddim_step``: the official sampler's number of denoiser calls,
    ``timesteps // ddim_step + 1`` (21 for 2000 and 100)."""
    return hparams["timesteps"] // hparams["ddim_step"] + 1


def plugin_config(hparams):
    """The plugin's config entries that give its PreferDiff the shared hyperparameters ``hparams``."""
    return {
        "MAX_ITEM_LIST_LENGTH": hparams["history_length"],
        "hidden_size": hparams["hidden_size"],
        "inner_size": hparams["hidden_size"],
        "n_layers": OFFICIAL_LAYERS,
        "n_heads": OFFICIAL_HEADS,
        "hidden_dropout_prob": hparams["dropout"],
        "attn_dropout_prob": hparams["dropout"],
        "learner": "adamw",
        "learning_rate": hparams["learning_rate"],
        "weight_decay": hparams["weight_decay"],
        "train_batch_size": hparams["batch_size"],
        "diffusion_steps": hparams["timesteps"],
        "beta_schedule": "linear",
        "beta_start": hparams["beta_start"],
        "beta_end": hparams["beta_end"],
        "inference_steps": inference_steps(hparams),
        "guidance_weight": hparams["w"],
        "p_uncond": hparams["p"],
        "loss_type": hparams["loss_type"],
        "gamma": hparams["gamma"],
        "preference_weight": hparams["lamda"],
        "negative_sampling": "batch",
        "item_emb_path": None,
        "epochs": hparams["epochs"],
    }


def official_config(hparams, item_num, device):
    """The official config dict of a run (the keys ``PreferDiff``, ``SASRec``, ``PreferenceDiffusion`` and
    ``SequenceDataset`` read) for ``item_num`` real items."""
    return {
        "hidden_size": hparams["hidden_size"],
        "layer_num": OFFICIAL_LAYERS,
        "num_heads": OFFICIAL_HEADS,
        "dropout": hparams["dropout"],
        "max_seq_length": hparams["history_length"],
        "item_num": item_num,
        "select_pool": [1, item_num + 1],
        "ab": "iids",
        "loss_type": hparams["loss_type"],
        "timesteps": hparams["timesteps"],
        "beta_sche": "linear",
        "beta_start": hparams["beta_start"],
        "beta_end": hparams["beta_end"],
        "ddim_step": hparams["ddim_step"],
        "w": hparams["w"],
        "p": hparams["p"],
        "mode": "neg",
        "gamma": hparams["gamma"],
        "lamda": hparams["lamda"],
        "sample_func": "batch",
        "exp_type": "srec",
        "device": device,
    }


def export(dataset):
    """The plugin's training split ``dataset`` as official sequences ``history + [target]``, one per training
    interaction (histories as the plugin truncates them, without padding)."""
    history = dataset.inter_feat[dataset.iid_field + dataset.config["LIST_SUFFIX"]].tolist()
    lengths = dataset.inter_feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]].tolist()
    targets = dataset.inter_feat[dataset.iid_field].tolist()
    return [items[:length] + [target] for items, length, target in zip(history, lengths, targets)]


@contextlib.contextmanager
def _official_import_context(official_dir):
    saved_path = list(sys.path)
    saved_modules = {name: sys.modules.pop(name) for name in OFFICIAL_MODULES if name in sys.modules}
    sys.path.insert(0, str(official_dir))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in OFFICIAL_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)


def load_official(official_dir):
    """The official ``PreferDiff`` class and ``SequenceDataset`` of ``official_dir`` (a namespace-like tuple)."""
    official_dir = checked_snapshot(official_dir, OFFICIAL_FILES, "the repository root")
    with _official_import_context(official_dir):
        import recdata  # the official modules, importable only inside the context
        from models.PreferDiff._model import PreferDiff

        return PreferDiff, recdata.SequenceDataset


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        model_class, sequence_dataset = official or load_official(official_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.seq_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
        self.len_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
        self.config = official_config(hparams, dataset.item_num - 1, self.device)
        sequences = export(dataset)
        self.loader = torch.utils.data.DataLoader(
            sequence_dataset(self.config, sequences, [0] * len(sequences)),
            batch_size=hparams["batch_size"],
            shuffle=True,
        )
        self.model = model_class(self.config).to(self.device)
        if hparams["plugin_init"]:
            plugin_initialisation(self.model, PLUGIN_INIT_STD)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=hparams["learning_rate"], weight_decay=hparams["weight_decay"]
        )

    def train_epoch(self):
        """One official epoch: a shuffled pass over the sequences; returns the mean loss."""
        self.model.train()
        total, batches = 0.0, 0
        for batch in self.loader:
            batch = {key: value.to(self.device) for key, value in batch.items()}
            self.optimizer.zero_grad()
            loss = self.model(batch)["loss"]
            loss.backward()
            self.optimizer.step()
            total, batches = total + loss.item(), batches + 1
        return total / batches

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """The official scores of ``predict`` (before its top-k) for a batch of the plugin's test loader,
        ``[batch, n_items]`` in plugin order; ``dropout``: score with dropout on (not used by the harness:
        ``SCORINGS`` is ``eval`` only)."""
        self.model.train(dropout)
        batch = {
            "item_seqs": interaction[self.seq_field].to(self.device),
            "seq_lengths": interaction[self.len_field].to(self.device),
        }
        guidance = self.model.get_representation(batch).reshape(len(batch["item_seqs"]), -1)  # official squeeze()
        generated = self.model.diff.sample(self.model, guidance)
        return (generated @ self.model.get_all_embeddings(self.device).t()).cpu()

    def target_embedding_weight(self):
        """The official item table (plugin ids: the same)."""
        return self.model.item_embeddings.weight.detach().cpu()
