"""L-DiffRec adapter: the official code (YiyanXu/DiffRec, folder ``L-DiffRec/``) driven on the plugin's general split.

``--official`` is the snapshot's ``L-DiffRec/`` folder. What is imported from it (never copied), by path as in the
DiffRec adapter (``adapters/diffrec.py``): ``GaussianDiffusion`` of ``models/gaussian_diffusion.py`` (here with
``beta_fixed=False`` by default and ``pred_xstart`` in the loss terms), ``DNN`` of ``models/DNN.py`` and
``AutoEncoder`` / ``compute_loss`` of ``models/Autoencoder.py`` (per-cluster VAE encoders, the decoder, the
multinomial loss). Runtime shims supplied here, not official code:

- ``models/Autoencoder.py`` imports ``kmeans`` from the package ``kmeans_pytorch`` (not installed with the plugin):
  while the file loads, a stand-in module of that name is put in ``sys.modules`` (and removed after), and the
  loaded module's ``kmeans`` is then the plugin's clustering (``recbole_diffusion.pretrain.cluster_items``,
  scipy's k-means++ seeded by the run's seed) on the same item embeddings. So both sides cluster the items alike
  for a seed, and the comparison is about the model and its training, not about two k-means implementations.
- ``main.py`` is not imported; its data loading, model construction, training loop and evaluation are re-done here
  in our words (below), the device being CUDA when available.

Item embeddings: the official code reads ``item_emb.npy`` (``[n_items, d]``, one row per 0-based item id) and the
plugin ``item_emb_path`` (the same format: its rows are plugin items 1..n). Both sides are given the same file,
the hyperparameter ``item_emb_path`` (no default: make one with ``python -m benchmarks.parity.adapters.ldiffrec
--write-item-embeddings --dataset=ml-100k --output=<file>.npy``, a fixed random N(0, 1) table of 64 columns seeded
0; a pretrained table in that format works alike).

Data: ``train_list.npy`` as for DiffRec (``diffrec.export``: plugin ids - 1), the binary matrix of the plugin's size.
Training (``main.py``'s loop): users in a fresh random order per epoch, batches of ``batch_size``; per batch
``Encode`` (input dropout, the latent sampled), ``training_losses`` on the latent, ``Decode`` of its
``pred_xstart``, loss ``lamda * diffusion + (compute_loss(decoded, encoder input) + beta * KL)`` (``diffusion +
lamda * VAE`` without ``reweight``), ``lamda`` annealed per epoch, ``beta`` per batch; two ``AdamW``, for the
autoencoder and the denoiser, both with the shared ``learning_rate`` and ``weight_decay`` (the plugin has one
optimizer). Scoring (``evaluate``, ``tst_w_val=False``): both modules in ``eval()``, ``Encode`` (the mean),
``p_sample``, ``Decode``, the cluster-ordered scores put back in item order (``category_map``).

Differences of the plugin's L-DiffRec that the shared hyperparameters cannot remove (its docstring lists them):
one decoder per cluster (official ``out_dims=[]``: one linear layer from the whole latent to all items); the VAE
target is the clean interaction row (official: the dropped-out encoder input); one optimizer.
"""

import argparse
import sys
import types

import numpy as np
import torch

from benchmarks.parity.adapters import diffrec
from benchmarks.parity.adapters.diffrec import CONFIG_FILES, METRICS, OFFICIAL_REPOSITORY, SCORINGS  # noqa: F401
from benchmarks.parity.official_code import checked_snapshot, load_module

MODEL = "LDiffRec"
OFFICIAL_FILES = ("models/gaussian_diffusion.py", "models/DNN.py", "models/Autoencoder.py")
EVALUATION_NOTE = (
    "Both sides: the model after the last epoch (no validation, no checkpoint selection); the plugin's general "
    "split (properties/protocol/general.yaml), full ranking by the plugin's evaluator from each test user's "
    "training row (encoder mean, reverse chain on the latent, decoder), the user's training and validation items and "
    "the padding item masked; model.eval() (as the official evaluate). Items clustered by the plugin's k-means on "
    "the same item_emb_path on both sides (same clusters per seed). norm_ratio: n/a."
)

# Shared hyperparameters: the plugin's LDiffRec yaml defaults (the official released ML-1M clean settings of
# L-DiffRec), except beta_fixed, which the official L-DiffRec code fixes to False (the plugin's yaml: True), and the
# official ML-1M denoiser learning rate (5e-4): one learning_rate here (the plugin has one optimizer).
DEFAULTS = {
    "n_cate": 2,
    "in_dims": [300],
    "ae_act_func": "tanh",
    "reparam": True,
    "lamda": 0.03,
    "anneal_cap": 0.005,
    "anneal_steps": 500,
    "vae_anneal_cap": 0.3,
    "vae_anneal_steps": 200,
    "item_emb_path": "",
    **{key: value for key, value in diffrec.DEFAULTS.items() if key != "epochs"},
    "dims": [300],
    "noise_max": 0.02,
    "epochs": diffrec.DEFAULTS["epochs"],
}
MODIFICATIONS = {}
EMBEDDING_SIZE = 64  # columns of the fixed random item table (the official L-DiffRec used 64-d LightGCN embeddings)


def plugin_config(hparams):
    """The plugin's config entries that give its LDiffRec the shared hyperparameters ``hparams``."""
    if not hparams["item_emb_path"]:
        raise ValueError(
            "L-DiffRec parity needs --item_emb_path=<file>.npy (the same item embeddings for both sides); write one "
            "with python -m benchmarks.parity.adapters.ldiffrec --write-item-embeddings --dataset=<dataset> "
            "--output=<file>.npy"
        )
    return {
        **diffrec.plugin_config(hparams),
        "beta_fixed": False,
        "n_cate": hparams["n_cate"],
        "in_dims": list(hparams["in_dims"]),
        "ae_act_func": hparams["ae_act_func"],
        "ae_dropout": 0.1,
        "reparam": hparams["reparam"],
        "lamda": hparams["lamda"],
        "anneal_cap": hparams["anneal_cap"],
        "anneal_steps": hparams["anneal_steps"],
        "vae_anneal_cap": hparams["vae_anneal_cap"],
        "vae_anneal_steps": hparams["vae_anneal_steps"],
        "item_emb_path": str(hparams["item_emb_path"]),
    }


def random_item_embeddings(n_items, size=EMBEDDING_SIZE, seed=0):
    """A fixed random item table ``[n_items, size]`` (float32 N(0, 1), seeded): one row per item id 1..n_items."""
    return np.random.default_rng(seed).standard_normal((n_items, size)).astype(np.float32)


def plugin_clustering(seed):
    """``kmeans(X, num_clusters, ...)`` of ``kmeans_pytorch`` answered by the plugin's ``cluster_items`` (seeded by
    ``seed``) on the rows of ``X`` (items 0..n-1 of the official code): (labels, None)."""
    from recbole_diffusion.pretrain import cluster_items

    def kmeans(X, num_clusters, distance="euclidean", device=None):
        padded = torch.cat([torch.zeros(1, X.size(1)), torch.as_tensor(X, dtype=torch.float32).cpu()])
        return cluster_items({"seed": seed}, padded, num_clusters)[1:], None

    return kmeans


def load_official(official_dir):
    """The official ``gaussian_diffusion``, ``DNN`` and ``Autoencoder`` modules of ``official_dir`` (by path; the
    ``kmeans_pytorch`` import answered by a stand-in while loading)."""
    official_dir = checked_snapshot(official_dir, OFFICIAL_FILES, "its L-DiffRec/ folder")
    gaussian_diffusion = load_module("ldiffrec_official_gaussian_diffusion", official_dir / OFFICIAL_FILES[0])
    dnn = load_module("ldiffrec_official_dnn", official_dir / OFFICIAL_FILES[1])
    saved = sys.modules.get("kmeans_pytorch")
    stand_in = types.ModuleType("kmeans_pytorch")
    stand_in.kmeans = plugin_clustering(0)
    sys.modules["kmeans_pytorch"] = stand_in
    try:
        autoencoder = load_module("ldiffrec_official_autoencoder", official_dir / OFFICIAL_FILES[2])
    finally:
        if saved is None:
            del sys.modules["kmeans_pytorch"]
        else:
            sys.modules["kmeans_pytorch"] = saved
    return gaussian_diffusion, dnn, autoencoder


class OfficialRunner:
    """The official L-DiffRec model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        gd, dnn, ae = official or load_official(official_dir)
        ae.kmeans = plugin_clustering(seed)
        self.compute_loss = ae.compute_loss
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.uid_field = dataset.uid_field
        n_users, n_items = dataset.user_num - 1, dataset.item_num - 1
        self.train = torch.FloatTensor(diffrec.official_matrix(diffrec.export(dataset), n_users, n_items).toarray())
        item_emb = torch.from_numpy(np.load(hparams["item_emb_path"], allow_pickle=False))
        if len(item_emb) != n_items:
            raise ValueError(f"item_emb_path has {len(item_emb)} rows; the dataset has {n_items} items")
        in_dims = list(hparams["in_dims"])[::-1]
        self.autoencoder = ae.AutoEncoder(
            item_emb, hparams["n_cate"], in_dims, [], self.device, hparams["ae_act_func"], hparams["reparam"]
        ).to(self.device)
        self.diffusion = diffrec.official_diffusion(gd, hparams, self.device)
        mlp_out_dims = list(hparams["dims"]) + [in_dims[-1]]
        self.model = dnn.DNN(
            mlp_out_dims[::-1], mlp_out_dims, hparams["emb_size"], time_type="cat", norm=hparams["norm"]
        ).to(self.device)
        self.optimizers = [
            torch.optim.AdamW(module.parameters(), lr=hparams["learning_rate"], weight_decay=hparams["weight_decay"])
            for module in (self.autoencoder, self.model)
        ]
        self.category_map = getattr(self.autoencoder, "category_map", torch.arange(n_items))
        self.update_count, self.update_count_vae = 0, 0

    def annealed_weights(self):
        """``main.py``'s ``lamda`` (per epoch) and KL weight ``anneal`` (per batch)."""
        h = self.hparams
        if h["anneal_steps"] > 0:
            lamda = max((1.0 - self.update_count / h["anneal_steps"]) * h["lamda"], h["anneal_cap"])
        else:
            lamda = max(h["lamda"], h["anneal_cap"])
        if h["vae_anneal_steps"] > 0:
            anneal = min(h["vae_anneal_cap"], self.update_count_vae / h["vae_anneal_steps"])
        else:
            anneal = h["vae_anneal_cap"]
        return lamda, anneal

    def train_epoch(self):
        """One official epoch; returns the summed loss."""
        self.autoencoder.train()
        self.model.train()
        total = 0.0
        for batch in diffrec.user_batches(self.train, self.hparams["batch_size"], self.device):
            for optimizer in self.optimizers:
                optimizer.zero_grad()
            batch_cate, latent, kl = self.autoencoder.Encode(batch)
            terms = self.diffusion.training_losses(self.model, latent, self.hparams["reweight"])
            elbo = terms["loss"].mean()
            recon = self.autoencoder.Decode(terms["pred_xstart"])
            lamda, anneal = self.annealed_weights()
            vae_loss = self.compute_loss(recon, batch_cate) + anneal * kl
            loss = lamda * elbo + vae_loss if self.hparams["reweight"] else elbo + lamda * vae_loss
            self.update_count_vae += 1
            total += loss.item()
            loss.backward()
            for optimizer in self.optimizers:
                optimizer.step()
        self.update_count += 1
        return total

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """Encode, ``p_sample`` on the latent, Decode, in item order, as ``[batch, n_items]`` plugin-ordered scores."""
        users = interaction[self.uid_field].cpu() - 1
        self.autoencoder.train(dropout)
        self.model.train(dropout)
        _, latent, _ = self.autoencoder.Encode(self.train[users].to(self.device))
        steps, noise = self.hparams["sampling_steps"], self.hparams["sampling_noise"]
        latent = self.diffusion.p_sample(self.model, latent, steps, noise)
        prediction = self.autoencoder.Decode(latent).cpu()
        scores = torch.empty_like(prediction)
        scores[:, self.category_map.cpu()] = prediction
        return diffrec.plugin_scores(scores)

    def target_embedding_weight(self):
        """None: no item table of the model's own (no norm ratio)."""
        return None


def main(arguments=None):
    parser = argparse.ArgumentParser(description="Write the fixed random item table for L-DiffRec parity.")
    parser.add_argument("--write-item-embeddings", action="store_true", required=True)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(arguments)
    from benchmarks.parity import harness

    config_dict = {**diffrec.plugin_config(diffrec.DEFAULTS), "state": "WARNING"}
    _, train_data, _, _ = harness.build_split("DiffRec", args.dataset, config_dict, CONFIG_FILES, METRICS)
    dataset = train_data._dataset  # the items of the split that run_parity builds
    np.save(args.output, random_item_embeddings(dataset.item_num - 1))
    print(f"{args.output}: {dataset.item_num - 1} x {EMBEDDING_SIZE}")


if __name__ == "__main__":
    main()
