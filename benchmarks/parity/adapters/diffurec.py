"""DiffuRec adapter: the official code (WHUIR/DiffuRec, ``src/``) driven on the plugin's split.

What is imported from the official snapshot (never copied): ``Att_Diffuse_model`` and ``create_model_diffu`` of
``src/model.py`` (embeddings, the CE loss ``loss_diffu_ce``, the scoring ``diffu_rep_pre``), which build the
``DiffuRec`` of ``src/diffurec.py`` (schedule, approximator ``Diffu_xstart``, reverse chain ``reverse_p_sample``) and
its step sampler of ``src/step_sample.py``; and ``Data_Train`` of ``src/utils.py`` (the official training samples
and their ``DataLoader``). ``src/main.py`` is not imported (it parses ``sys.argv`` and sets ``CUDA_VISIBLE_DEVICES``
at import); its argparse namespace is built here (``official_args``). Runtime shims supplied here, not official code:

- The folder ``src/`` of the snapshot is put on ``sys.path`` for the official ``from diffurec import ...`` /
  ``from step_sample import ...``.
- The official default step sampler ``lossaware`` (``LossSecondMomentResampler``) allocates with ``np.int``, which
  numpy >= 1.24 no longer has: ``numpy.int`` is set to ``int`` while the official model is built, then removed again.
  (Never fed losses, that sampler draws steps uniformly, with numpy's global RNG.)
- ``args.device`` is the device this process uses (CPU here; CUDA when available).

Export (``export``): the official ``dataset.pkl`` dict, with the keys the official training reads: ``train`` (user id
-> the user's training items in time order, as ``Data_Train`` expects) and ``smap`` (item token -> official id; its
length is ``args.item_num``). Plugin item ``i`` (0 = padding) is official item ``i``: the official ids are 1-based
with 0 the padding row too. The user's training sequence is rebuilt from the plugin's training interactions (first
history item, then every target); ``Data_Train.split_onebyone`` turns it into every prefix with at least one history
item, truncated to the last ``max_len`` items and left-padded with 0: the plugin's training interactions, whose
histories are right-padded with 0 (``official_histories`` maps one to the other).

The training step is the official ``model_train`` loop in our words: per epoch one pass over
``Data_Train(...).get_pytorch_dataloaders()`` (batch ``batch_size``, shuffled), loss ``loss_diffu_ce`` of the
approximator's x0 prediction (``Att_Diffuse_model(seq, tag, train_flag=True)``), Adam (lr, weight decay; torch's
default eps), and ``StepLR(step_size=lr_step_size, gamma=lr_gamma)`` stepped after every epoch. No validation, no
early stopping (the harness tests the last epoch's model on both sides). Scoring is ``Att_Diffuse_model(...,
train_flag=False)`` (the DDPM reverse chain over all ``diffusion_steps`` from ``N(0, I)``) then ``diffu_rep_pre``
(inner product with the whole item table, padding row 0 included, which the evaluator masks), with ``model.eval()``
or dropout left on. The official test scores a copy of the model taken after ``model.eval()`` at a validation (the
metric rows here); only with ``eval_interval > epochs`` is it a copy of the training-mode model (the dropout_* rows).
"""

import argparse
import sys
from contextlib import contextmanager

import numpy as np
import torch

from benchmarks.parity.official_code import checked_snapshot, load_module
from recbole_diffusion.model.layers import left_aligned

MODEL = "DiffuRec"
OFFICIAL_REPOSITORY = "WHUIR/DiffuRec"
OFFICIAL_FILES = ("model.py", "diffurec.py", "step_sample.py", "utils.py")
OFFICIAL_HEADS = 4  # hard-coded in the official Transformer_rep

# Shared hyperparameters (official argparse defaults of src/main.py; history_length: its max_len).
DEFAULTS = {
    "hidden_size": 128,
    "history_length": 50,
    "n_layers": 4,
    "dropout": 0.1,
    "emb_dropout": 0.3,
    "lambda_uncertainty": 0.001,
    "diffusion_steps": 32,
    "beta_schedule": "trunc_linear",
    "learning_rate": 0.001,
    "weight_decay": 0.0,
    "batch_size": 512,
    "lr_step_size": 100,
    "lr_gamma": 0.1,
    "epochs": 5,
    "attention_mask": "queries",
}
# The plugin's beta schedule names -> the official noise_schedule names.
OFFICIAL_SCHEDULES = {
    "trunc_linear": "trunc_lin",
    "linear": "linear",
    "cosine": "cosine",
    "sqrt": "sqrt",
    "trunc_cosine": "trunc_cos",
}
# No option changes the official code. attention_mask reaches the plugin only: "queries" is the official mask (the
# default here), "keys" the plugin's own default, which differs from the official code.
MODIFICATIONS = {}
# The official test scores a copy of the model taken after model.eval(): the metric rows are its evaluation.
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); test split of the "
    "plugin, full ranking by the plugin's evaluator, padding item masked. Metric rows: model.eval(), as the "
    "official test (it scores a copy of the model taken after model.eval()); dropout_*: dropout left on while "
    "scoring, for reference only. norm_ratio: collapse.popularity_norm_ratio of the item table (popular / rare "
    "quarter of training targets); n/a on the plugin side, whose DiffuRec declares no target table (its CE loss "
    "is not checked for collapse)."
)


def plugin_config(hparams):
    """The plugin's config entries that give its DiffuRec the shared hyperparameters ``hparams``."""
    return {**transformer_plugin_config(hparams), "lambda_uncertainty": hparams["lambda_uncertainty"]}


def transformer_plugin_config(hparams):
    """The plugin's config entries of what DiffuRec and DiQDiff share (the official block, chain, optimizer)."""
    return {
        "MAX_ITEM_LIST_LENGTH": hparams["history_length"],
        "hidden_size": hparams["hidden_size"],
        "inner_size": 4 * hparams["hidden_size"],  # official FFN width: 4 x hidden
        "n_layers": hparams["n_layers"],
        "n_heads": OFFICIAL_HEADS,
        "hidden_dropout_prob": hparams["dropout"],
        "emb_dropout_prob": hparams["emb_dropout"],
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
    """The namespace the official ``main.py`` would hand to ``create_model_diffu`` / ``Att_Diffuse_model`` /
    ``Data_Train`` (its argparse defaults, with ``hparams`` and ``item_num`` set)."""
    args = transformer_official_args(hparams, item_num, seed, device)
    args.lambda_uncertainty = hparams["lambda_uncertainty"]
    return args


def transformer_official_args(hparams, item_num, seed, device):
    """The official argparse entries that DiffuRec's ``main.py`` and DiQDiff's share, from ``hparams``."""
    return argparse.Namespace(
        random_seed=seed,
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
        weight_decay=hparams["weight_decay"],
        schedule_sampler_name="lossaware",
        diffusion_steps=hparams["diffusion_steps"],
        noise_schedule=OFFICIAL_SCHEDULES[hparams["beta_schedule"]],
        rescale_timesteps=True,
        item_num=item_num,
    )


def export(dataset):
    """The plugin's training split ``dataset`` as the official ``dataset.pkl`` dict (keys ``train`` and ``smap``).

    ``train``: user id -> training items in time order, rebuilt from the plugin's training interactions (the first
    history item of the user's first interaction, then every target); ``smap``: item token -> official id (= plugin
    id, 1-based). Needs the untruncated first item: the first interaction of every user has a one-item history.
    """
    users = dataset.inter_feat[dataset.uid_field].numpy()
    history = dataset.inter_feat[dataset.iid_field + dataset.config["LIST_SUFFIX"]].numpy()
    lengths = dataset.inter_feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    targets = dataset.inter_feat[dataset.iid_field].numpy()
    train = {}
    for user, items, length, target in zip(users.tolist(), history, lengths.tolist(), targets.tolist()):
        if user not in train:
            if length != 1:
                raise ValueError(f"user {user}: the first training interaction has {length} history items, not 1")
            train[user] = [int(items[0])]
        train[user].append(target)
    tokens = dataset.field2id_token[dataset.iid_field]
    smap = {str(tokens[item]): item for item in range(1, dataset.item_num)}
    return {"train": train, "smap": smap}


def official_histories(item_seq, item_seq_len):
    """Plugin histories ``[batch, L]`` (right-padded with 0) left-padded with 0, as the official data gives them."""
    return left_aligned(item_seq, item_seq_len)


@contextmanager
def numpy_int_alias():
    """``numpy.int`` (removed in numpy 1.24) while the official step sampler is built; removed again after."""
    added = "int" not in np.__dict__
    if added:
        np.int = int
    try:
        yield
    finally:
        if added:
            del np.int


def load_official(official_dir):
    """The official modules ``src/model.py`` and ``src/utils.py`` of the snapshot ``official_dir`` (its ``src/`` on
    sys.path for their own imports)."""
    source = checked_snapshot(official_dir, [f"src/{name}" for name in OFFICIAL_FILES], "WHUIR/DiffuRec") / "src"
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))
    return tuple(load_module(f"diffurec_official_{name}", source / f"{name}.py") for name in ("model", "utils"))


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring).

    DiQDiff's runner overrides the three official calls: ``build_model``, ``training_loss``, ``reverse_chain``."""

    official_args = staticmethod(official_args)
    load_official = staticmethod(load_official)

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        model_module, utils_module = official or self.load_official(official_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.seq_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
        self.len_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
        data = export(dataset)
        self.args = args = self.official_args(hparams, len(data["smap"]), seed, self.device)
        with numpy_int_alias():
            self.model = self.build_model(model_module, args).to(self.device)
        self.loader = utils_module.Data_Train(data["train"], args).get_pytorch_dataloaders()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=args.decay_step, gamma=args.gamma)

    @staticmethod
    def build_model(model_module, args):
        return model_module.Att_Diffuse_model(model_module.create_model_diffu(args), args)

    def training_loss(self, sequence, tag):
        _, predicted, _, _, _, _ = self.model(sequence, tag, train_flag=True)
        return self.model.loss_diffu_ce(predicted, tag)

    def reverse_chain(self, sequence):
        _, predicted, _, _, _, _ = self.model(sequence, None, train_flag=False)
        return predicted

    def train_epoch(self):
        """One official epoch over the shuffled training prefixes, then the StepLR step; returns the last loss."""
        self.model.train()
        loss = None
        for sequence, tag in self.loader:
            sequence, tag = sequence.to(self.device), tag.to(self.device)
            self.optimizer.zero_grad()
            loss = self.training_loss(sequence, tag)
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        return None if loss is None else loss.item()

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """The official reverse chain and inner-product scoring on a batch of the plugin's test loader, as
        ``[batch, n_items]`` scores in the plugin's ids (the same ids); ``dropout``: dropout left on."""
        item_seq = interaction[self.seq_field].to(self.device)
        sequence = official_histories(item_seq, interaction[self.len_field].to(self.device))
        self.model.train(dropout)
        return self.model.diffu_rep_pre(self.reverse_chain(sequence)).cpu()

    def target_embedding_weight(self):
        """The official item table (plugin id order already; row 0: the official trainable padding row)."""
        return self.model.item_embeddings.weight.detach().cpu()
