"""DiQDiff adapter: the official code (maowenyu-11/DiQDiff, ``src/``) driven on the plugin's split.

The official code is built on DiffuRec's (same ``utils.py``, byte for byte; same Transformer, schedules and step
sampler in ``Modules.py`` / ``step_sample.py``), so this adapter reuses the DiffuRec adapter's export, history
mapping, schedule names, module loader and ``numpy.int`` shim (imported from ``adapters/diffurec.py``, not copied).

What is imported from the official snapshot (never copied): ``CoDiffu`` of ``src/codiffu.py`` (item table, SVQ
``intent_cluster``, denoiser, CE + contrastive loss ``loss_diffu_ce``, reverse chain ``reverse_p_sample``, scoring
``diffu_rep_pre``; it imports ``Modules.py`` and ``step_sample.py``) and ``Data_Train`` of ``src/utils.py``.
``src/main.py`` is not imported (argparse at import, ``CUDA_VISIBLE_DEVICES``); its namespace is built here
(``official_args``). Runtime shims supplied here, not official code:

- The snapshot's ``src/`` on ``sys.path`` for the official ``from Modules import *`` / ``from step_sample import``.
- ``Modules.py`` imports ``faiss`` (used only in commented-out code): a stand-in empty module of that name is in
  ``sys.modules`` while the official files load, and removed after (unless a real ``faiss`` is installed).
- ``numpy.int = int`` while ``CoDiffu`` is built (its default ``lossaware`` step sampler uses ``np.int``, gone from
  numpy >= 1.24; never fed losses, it draws steps uniformly).
- ``args.num_cluster`` is an int: the official argparse declares it ``type=str``, so any value given on the command
  line reaches ``nn.Linear`` as a string and crashes (the README's settings cannot run as is); the int is what the
  official code evidently means. ``args.device`` is this process's device.

Export: the official ``dataset.pkl`` (``train``, ``smap``), exactly as for DiffuRec (``diffurec.export``): plugin item
``i`` is official item ``i`` (0 = padding), ``Data_Train`` yields the plugin's training interactions, test
histories are left-padded (``diffurec.official_histories``).

Training: the official ``model_train`` loop in our words: one shuffled pass of ``Data_Train``'s loader per epoch,
``rep, _ = model(seq, tag, train_flag=True)``, ``ce, contra = model.loss_diffu_ce(rep, tag)``, loss ``ce +
lambda_contrast * contra``, Adam (lr, weight decay), ``StepLR(lr_step_size, lr_gamma)`` stepped per epoch; no
validation, no early stopping. Scoring: ``model(seq, None, train_flag=False)`` (the official SVQ on the scored batch:
Gumbel assignment and codes = means of that batch's histories, then the 32-step reverse chain from ``N(0, I)`` with
the official noise ``exp(0.5 * posterior_variance)``), then ``diffu_rep_pre`` (inner product with the whole item
table; the evaluator masks the padding item). The batches are the plugin's full-sort test batches.
"""

import argparse
import sys
import types
from contextlib import contextmanager

import torch

from benchmarks.parity.adapters.diffurec import (
    OFFICIAL_HEADS,
    OFFICIAL_SCHEDULES,
    export,
    numpy_int_alias,
    official_histories,
)
from benchmarks.parity.official_code import checked_snapshot, load_module

MODEL = "DiQDiff"
OFFICIAL_REPOSITORY = "maowenyu-11/DiQDiff"
OFFICIAL_FILES = ("codiffu.py", "Modules.py", "step_sample.py", "utils.py")

# Shared hyperparameters: the official argparse defaults of src/main.py (history_length: its max_len), with the SVQ /
# CDM settings of the README's ML-1M command (num_cluster 8, lambda_intent 0.6, lambda_history 1, lambda_contra 0.05;
# argparse defaults: 2, 1, 1, 1), as the plugin's properties/model/DiQDiff.yaml.
DEFAULTS = {
    "hidden_size": 128,
    "history_length": 50,
    "n_layers": 4,
    "dropout": 0.1,
    "emb_dropout": 0.3,
    "num_codes": 8,
    "lambda_history": 1.0,
    "lambda_code": 0.6,
    "lambda_contrast": 0.05,
    "diffusion_steps": 32,
    "beta_schedule": "trunc_linear",
    "learning_rate": 0.001,
    "weight_decay": 0.0,
    "batch_size": 1024,
    "lr_step_size": 100,
    "lr_gamma": 0.1,
    "epochs": 5,
    "attention_mask": "queries",
}
OFFICIAL_GUMBEL_TEMPERATURE = 0.1  # hard-coded in the official intent_cluster
OFFICIAL_CONTRAST_TEMPERATURE = 0.07  # hard-coded in the official contra_loss
# No option changes the official code. attention_mask reaches the plugin only ("queries": the official mask).
MODIFICATIONS = {}
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); test split of the "
    "plugin, full ranking by the plugin's evaluator, padding item masked. Metric rows: model.eval(), as the "
    "official test (it scores a copy of the model taken after model.eval()); dropout_*: dropout left on while "
    "scoring, for reference only. Official scoring: SVQ codes re-computed from each scored batch (Gumbel "
    "assignment, batch means), reverse-chain noise exp(0.5 * posterior variance). Plugin departures (documented in "
    "its diqdiff.py): stored codebook, argmax code at evaluation, straight-through Gumbel (the assignment layer "
    "learns), posterior log-variance in the reverse chain, key padding mask unless attention_mask: queries. "
    "norm_ratio: collapse.popularity_norm_ratio of the item table; n/a on the plugin side (no target table "
    "declared: CE loss)."
)


def plugin_config(hparams):
    """The plugin's config entries that give its DiQDiff the shared hyperparameters ``hparams``."""
    return {
        "MAX_ITEM_LIST_LENGTH": hparams["history_length"],
        "hidden_size": hparams["hidden_size"],
        "inner_size": 4 * hparams["hidden_size"],  # official FFN width: 4 x hidden
        "n_layers": hparams["n_layers"],
        "n_heads": OFFICIAL_HEADS,
        "hidden_dropout_prob": hparams["dropout"],
        "emb_dropout_prob": hparams["emb_dropout"],
        "num_codes": hparams["num_codes"],
        "gumbel_temperature": OFFICIAL_GUMBEL_TEMPERATURE,
        "lambda_history": hparams["lambda_history"],
        "lambda_code": hparams["lambda_code"],
        "lambda_contrast": hparams["lambda_contrast"],
        "contrast_temperature": OFFICIAL_CONTRAST_TEMPERATURE,
        "diffusion_steps": hparams["diffusion_steps"],
        "beta_schedule": hparams["beta_schedule"],
        "inference_steps": None,  # the full DDPM chain, as officially
        "learning_rate": hparams["learning_rate"],
        "weight_decay": hparams["weight_decay"],
        "train_batch_size": hparams["batch_size"],
        "lr_step_size": hparams["lr_step_size"],
        "lr_gamma": hparams["lr_gamma"],
        "epochs": hparams["epochs"],
        "attention_mask": hparams["attention_mask"],
    }


def official_args(hparams, item_num, seed, device):
    """The namespace the official ``main.py`` would hand to ``CoDiffu`` / ``Data_Train`` (its argparse defaults, with
    ``hparams`` and ``item_num`` set; ``num_cluster`` an int, see the module docstring)."""
    return argparse.Namespace(
        random_seed=seed,
        num_cluster=int(hparams["num_codes"]),
        num_iter=20,
        max_len=hparams["history_length"],
        device=str(device),
        num_gpu=1,
        batch_size=hparams["batch_size"],
        hidden_size=hparams["hidden_size"],
        dropout=hparams["dropout"],
        emb_dropout=hparams["emb_dropout"],
        hidden_act="gelu",
        num_blocks=hparams["n_layers"],
        epochs=hparams["epochs"],
        decay_step=hparams["lr_step_size"],
        gamma=hparams["lr_gamma"],
        optimizer="Adam",
        lr=hparams["learning_rate"],
        loss_lambda=0.001,
        weight_decay=hparams["weight_decay"],
        schedule_sampler_name="lossaware",
        diffusion_steps=hparams["diffusion_steps"],
        lambda_intent=hparams["lambda_code"],
        lambda_history=hparams["lambda_history"],
        lambda_contra=hparams["lambda_contrast"],
        noise_schedule=OFFICIAL_SCHEDULES[hparams["beta_schedule"]],
        rescale_timesteps=True,
        num_hidden_layers=1,
        item_num=item_num,
    )


@contextmanager
def faiss_stand_in():
    """An empty ``faiss`` module in ``sys.modules`` while the official files load (``Modules.py`` imports it for
    commented-out code only); a real installed ``faiss`` is left alone."""
    try:
        import faiss  # noqa: F401

        yield
        return
    except ImportError:
        pass
    sys.modules["faiss"] = types.ModuleType("faiss")
    try:
        yield
    finally:
        sys.modules.pop("faiss", None)


def load_official(official_dir):
    """The official modules ``src/codiffu.py`` and ``src/utils.py`` of the snapshot ``official_dir``."""
    source = checked_snapshot(official_dir, [f"src/{name}" for name in OFFICIAL_FILES], "maowenyu-11/DiQDiff") / "src"
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))
    with faiss_stand_in():
        return tuple(
            load_module(f"diqdiff_official_{name}", source / f"{name}.py")
            for name in ("codiffu", "utils")
        )


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        codiffu_module, utils_module = official or load_official(official_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.seq_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
        self.len_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
        data = export(dataset)
        self.args = args = official_args(hparams, len(data["smap"]), seed, self.device)
        with numpy_int_alias():
            self.model = codiffu_module.CoDiffu(args).to(self.device)
        self.loader = utils_module.Data_Train(
            data["train"], args
        ).get_pytorch_dataloaders()
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=args.decay_step, gamma=args.gamma
        )

    def train_epoch(self):
        """One official epoch (CE + lambda_contra x contrastive loss), then the StepLR step; returns the last loss."""
        self.model.train()
        loss = None
        for sequence, tag in self.loader:
            sequence, tag = sequence.to(self.device), tag.to(self.device)
            self.optimizer.zero_grad()
            predicted, _ = self.model(sequence, tag, train_flag=True)
            recommendation, contrast = self.model.loss_diffu_ce(predicted, tag)
            loss = recommendation + self.args.lambda_contra * contrast
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        return None if loss is None else loss.item()

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """The official SVQ + reverse chain + inner-product scoring on a batch of the plugin's test loader, as
        ``[batch, n_items]`` scores in the plugin's ids; ``dropout``: dropout left on."""
        item_seq = interaction[self.seq_field].to(self.device)
        sequence = official_histories(
            item_seq, interaction[self.len_field].to(self.device)
        )
        self.model.train(dropout)
        predicted, _ = self.model(sequence, None, train_flag=False)
        return self.model.diffu_rep_pre(predicted).cpu()

    def target_embedding_weight(self):
        """The official item table (plugin id order; row 0: the official trainable padding row)."""
        return self.model.item_embeddings.weight.detach().cpu()
