"""DiQDiff adapter: the official code (maowenyu-11/DiQDiff, ``src/``) driven on the plugin's split.

The official code is built on DiffuRec's (same ``utils.py``, byte for byte; same Transformer, schedules and step
sampler in ``Modules.py`` / ``step_sample.py``), so this adapter reuses the DiffuRec adapter (``adapters/diffurec.py``):
its export, history mapping, schedule names, shared config entries, ``numpy.int`` shim and runner, whose three
official calls (model, loss, reverse chain) are DiQDiff's here.

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

import sys
import types
from contextlib import contextmanager

from benchmarks.parity.adapters import diffurec
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
        **diffurec.transformer_plugin_config(hparams),
        "num_codes": hparams["num_codes"],
        "gumbel_temperature": OFFICIAL_GUMBEL_TEMPERATURE,
        "lambda_history": hparams["lambda_history"],
        "lambda_code": hparams["lambda_code"],
        "lambda_contrast": hparams["lambda_contrast"],
        "contrast_temperature": OFFICIAL_CONTRAST_TEMPERATURE,
    }


def official_args(hparams, item_num, seed, device):
    """The namespace the official ``main.py`` would hand to ``CoDiffu`` / ``Data_Train`` (its argparse defaults, with
    ``hparams`` and ``item_num`` set; ``num_cluster`` an int, see the module docstring)."""
    args = diffurec.transformer_official_args(hparams, item_num, seed, device)
    args.num_cluster = int(hparams["num_codes"])
    args.num_iter = 20
    args.loss_lambda = 0.001
    args.lambda_intent = hparams["lambda_code"]
    args.lambda_history = hparams["lambda_history"]
    args.lambda_contra = hparams["lambda_contrast"]
    args.num_hidden_layers = 1
    return args


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


class OfficialRunner(diffurec.OfficialRunner):
    """The official model and training step on the plugin's training split (see the module docstring): DiffuRec's
    runner with the official ``CoDiffu``, its loss and its reverse chain."""

    official_args = staticmethod(official_args)
    load_official = staticmethod(load_official)

    @staticmethod
    def build_model(codiffu_module, args):
        return codiffu_module.CoDiffu(args)

    def training_loss(self, sequence, tag):
        predicted, _ = self.model(sequence, tag, train_flag=True)
        recommendation, contrast = self.model.loss_diffu_ce(predicted, tag)
        return recommendation + self.args.lambda_contra * contrast

    def reverse_chain(self, sequence):
        """The official SVQ on the scored batch, then the reverse chain."""
        predicted, _ = self.model(sequence, None, train_flag=False)
        return predicted
