"""DiffRec adapter: the official code (YiyanXu/DiffRec, folder ``DiffRec/``) driven on the plugin's general split.

``--official`` is the snapshot's ``DiffRec/`` folder (the one holding ``main.py`` and ``models/``). What is imported
from it (never copied): ``GaussianDiffusion`` and ``ModelMeanType`` of ``models/gaussian_diffusion.py`` (schedule,
``training_losses`` with importance sampling of steps and the SNR reweighting, ``p_sample``) and ``DNN`` of
``models/DNN.py`` (the mirrored MLP denoiser). Runtime shims supplied here, not official code:

- The two files are loaded by path as modules of their own (``importlib``), not as the package ``models`` that the
  official ``main.py`` imports; they import only numpy and torch, so nothing else is needed.
- ``main.py`` (module-level argparse, data loading, training loop, evaluation) is not imported; its data loading,
  model construction and training loop are re-done here in our words (below), the device being CUDA when available.

Data: the official input is ``train_list.npy``, ``(user, item)`` pairs with 0-based ids, which ``data_utils.data_load``
turns into a user x item ``csr_matrix`` of ones and ``main.py`` into a dense ``FloatTensor``. ``export`` writes the
plugin's training interactions so (plugin user ``u`` / item ``i`` are official ``u - 1`` / ``i - 1``, rows sorted by
user then item); the matrix here has the plugin's full size (``user_num - 1`` x ``item_num - 1``), not the largest id
+ 1 of the official ``data_load`` (the same on a split where the last user and item have training interactions).

Training (``main.py``'s loop): each epoch the users in a fresh random order (``DataLoader(shuffle=True)``, the last
batch partial), per batch of ``batch_size`` user rows ``GaussianDiffusion.training_losses(model, batch, reweight)``,
loss = its ``"loss"`` averaged, ``AdamW(lr, weight_decay)``. The diffusion is built as ``main.py`` builds it
(``history_num_per_term`` 10 and ``beta_fixed`` True: the class defaults), the DNN as ``DNN(dims[::-1]..., emb_size,
time_type="cat", norm)`` with its default dropout 0.5. Scoring: ``model.eval()`` and ``p_sample(model, x,
sampling_steps, sampling_noise)`` from the test user's training row (the official ``evaluate`` with
``tst_w_val=False``), in the plugin's item ids; the evaluator masks the padding column and the user's training and
validation items (the official ``mask_tv``).
"""


import numpy as np
import scipy.sparse as sp
import torch

from benchmarks.parity.official_code import checked_snapshot, load_module

MODEL = "DiffRec"
OFFICIAL_REPOSITORY = "YiyanXu/DiffRec"
OFFICIAL_FILES = ("models/gaussian_diffusion.py", "models/DNN.py")
CONFIG_FILES = ("properties/protocol/general.yaml",)  # the plugin's general protocol: per-user random 80/10/10
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
SCORINGS = ("eval",)  # the official evaluate calls model.eval(): no dropout scoring
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); the plugin's general "
    "split (properties/protocol/general.yaml), full ranking by the plugin's evaluator from each test user's "
    "training row, the user's training and validation items and the padding item masked; model.eval() (as the "
    "official evaluate). norm_ratio: n/a (DiffRec has no item embeddings)."
)

# Shared hyperparameters: the plugin's DiffRec yaml defaults, which are the official code's ML-1M (clean) settings
# (DiffRec/inference.py); history_num_per_term (10), beta_fixed (True), the DNN's dropout (0.5) and tanh are fixed
# in the official code and set alike on the plugin side.
DEFAULTS = {
    "dims": [200, 600],
    "emb_size": 10,
    "norm": False,
    "mean_type": "x0",
    "steps": 40,
    "noise_schedule": "linear-var",
    "noise_scale": 0.005,
    "noise_min": 0.005,
    "noise_max": 0.01,
    "sampling_steps": 0,
    "sampling_noise": False,
    "reweight": True,
    "learning_rate": 0.001,
    "weight_decay": 0.0,
    "batch_size": 400,
    "epochs": 20,
}
MODIFICATIONS = {}


def plugin_config(hparams):
    """The plugin's config entries that give its DiffRec the shared hyperparameters ``hparams``."""
    return {
        "dims_dnn": list(hparams["dims"]),
        "embedding_size": hparams["emb_size"],
        "norm": hparams["norm"],
        "mean_type": hparams["mean_type"],
        "steps": hparams["steps"],
        "noise_schedule": hparams["noise_schedule"],
        "noise_scale": hparams["noise_scale"],
        "noise_min": hparams["noise_min"],
        "noise_max": hparams["noise_max"],
        "sampling_steps": hparams["sampling_steps"],
        "sampling_noise": hparams["sampling_noise"],
        "reweight": hparams["reweight"],
        "learning_rate": hparams["learning_rate"],
        "weight_decay": hparams["weight_decay"],
        "train_batch_size": hparams["batch_size"],
        "epochs": hparams["epochs"],
        "history_num_per_term": 10,
        "beta_fixed": True,
        "dropout": 0.5,
        "mlp_act_func": "tanh",
    }


def export(dataset):
    """The plugin's training split ``dataset`` as the official ``train_list.npy``: int64 ``(user, item)`` pairs,
    0-based (plugin id - 1), sorted by user then item."""
    users = dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64) - 1
    items = dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64) - 1
    order = np.lexsort((items, users))
    return np.stack([users[order], items[order]], axis=1)


def official_matrix(pairs, n_users, n_items):
    """The official user x item training matrix (``data_utils.data_load``: ones at the pairs) of the given size."""
    return sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), dtype="float64", shape=(n_users, n_items))


def plugin_scores(official_scores):
    """Official scores ``[batch, item_num - 1]`` in the plugin's order ``[batch, item_num]``: a padding column 0
    (zeros; the evaluator masks it) in front."""
    return torch.cat([torch.zeros_like(official_scores[:, :1]), official_scores], dim=1)


def load_official(official_dir):
    """The official ``models/gaussian_diffusion.py`` and ``models/DNN.py`` of ``official_dir`` (loaded by path)."""
    official_dir = checked_snapshot(official_dir, OFFICIAL_FILES, "its DiffRec/ folder")
    gaussian_diffusion = load_module("diffrec_official_gaussian_diffusion", official_dir / OFFICIAL_FILES[0])
    dnn = load_module("diffrec_official_dnn", official_dir / OFFICIAL_FILES[1])
    return gaussian_diffusion, dnn


def official_diffusion(gd, hparams, device):
    """The official ``GaussianDiffusion`` of module ``gd`` built as ``main.py`` builds it from ``hparams`` (its
    history_num_per_term and beta_fixed: the class defaults)."""
    mean_type = {"x0": gd.ModelMeanType.START_X, "eps": gd.ModelMeanType.EPSILON}[hparams["mean_type"]]
    return gd.GaussianDiffusion(
        mean_type,
        hparams["noise_schedule"],
        hparams["noise_scale"],
        hparams["noise_min"],
        hparams["noise_max"],
        hparams["steps"],
        device,
    ).to(device)


def user_batches(rows, batch_size, device):
    """``main.py``'s training ``DataLoader(shuffle=True)``: the rows in a fresh random order, batches of
    ``batch_size`` (the last partial), on ``device``."""
    order = torch.randperm(len(rows))
    for start in range(0, len(order), batch_size):
        yield rows[order[start : start + batch_size]].to(device)


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        gd, dnn = official or load_official(official_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.uid_field = dataset.uid_field
        n_users, n_items = dataset.user_num - 1, dataset.item_num - 1
        self.train = torch.FloatTensor(self.training_matrix(dataset, n_users, n_items).toarray())
        self.diffusion = official_diffusion(gd, hparams, self.device)
        out_dims = list(hparams["dims"]) + [n_items]
        self.model = dnn.DNN(out_dims[::-1], out_dims, hparams["emb_size"], time_type="cat", norm=hparams["norm"])
        self.model = self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=hparams["learning_rate"], weight_decay=hparams["weight_decay"]
        )

    def training_matrix(self, dataset, n_users, n_items):
        """The official training matrix of ``dataset`` (ones at the exported pairs; T-DiffRec's adapter overrides
        it with the time-aware weights): the model's input in training and scoring."""
        return official_matrix(export(dataset), n_users, n_items)

    def train_epoch(self):
        """One official epoch: all users in a random order, batches of ``batch_size``; returns the summed loss."""
        self.model.train()
        total = 0.0
        for batch in user_batches(self.train, self.hparams["batch_size"], self.device):
            self.optimizer.zero_grad()
            losses = self.diffusion.training_losses(self.model, batch, self.hparams["reweight"])
            loss = losses["loss"].mean()
            total += loss.item()
            loss.backward()
            self.optimizer.step()
        return total

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """``p_sample`` from the users' training rows as ``[batch, n_items]`` plugin-ordered scores (``model.eval()``
        as the official ``evaluate``; ``dropout`` leaves dropout on, not used by the harness for DiffRec)."""
        users = interaction[self.uid_field].cpu() - 1
        self.model.train(dropout)
        x = self.train[users].to(self.device)
        scores = self.diffusion.p_sample(self.model, x, self.hparams["sampling_steps"], self.hparams["sampling_noise"])
        return plugin_scores(scores).cpu()

    def target_embedding_weight(self):
        """None: DiffRec has no item table (no norm ratio)."""
        return None
