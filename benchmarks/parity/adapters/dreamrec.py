"""DreamRec adapter: the official code (YangZhengyi98/DreamRec, ``DreamRec.py``) driven on the plugin's split.

What is imported from the official snapshot (never copied): the classes ``Tenc`` (encoder + denoiser) and
``diffusion`` (schedule, ``p_losses``, guided reverse chain) of ``DreamRec.py``, which imports its own
``utility.py`` and ``Modules_ori.py``. Runtime shims supplied here, not official code:

- ``DreamRec.py`` parses ``sys.argv`` at import (module-level ``args = parse_args()``, read later by ``diffusion``
  for ``beta_sche``): it is imported with ``sys.argv`` set to the official flags of the run.
- ``diffusion.sample`` reads a module global ``device`` that the script only defines under ``__main__``: it is set
  on the imported module (CPU here, CUDA when available).
- The official folder is put on ``sys.path`` for its ``from utility import ...`` / ``from Modules_ori import *``.

The training step is the official script's loop in our words: each epoch ``int(rows / batch_size)`` steps, each on
``batch_size`` rows drawn without replacement (``DataFrame.sample``), Adam (eps 1e-8, weight decay 0), loss
``diffusion.p_losses`` (MSE onto the item embedding of the target, guidance from ``Tenc.cacu_h`` with the null
guidance at probability p), steps ``randint(0, T)``. Scoring is ``Tenc.predict`` (guided DDPM chain, inner product with
the whole item table), with ``model.eval()`` or, as the official ``evaluate`` does, with dropout left on.

Ids: plugin item ``i`` (1 .. n_items-1, 0 = padding) is official item ``i - 1``; the official padding id is
``item_num = n_items - 1`` (the last row of its table), histories are right-padded with it, as the plugin's are with 0.
"""

import importlib.util
import sys

import numpy as np
import pandas as pd
import torch

from benchmarks.parity.official_code import checked_snapshot, plugin_initialisation

MODEL = "DreamRec"
PLUGIN_INIT_STD = 0.02  # the std of the plugin's DreamRec with initializer_range 0.02
OFFICIAL_REPOSITORY = "YangZhengyi98/DreamRec"
OFFICIAL_FILES = ("DreamRec.py", "utility.py", "Modules_ori.py")

# Shared hyperparameters (official argparse defaults; history_length: the official data's seq_size).
DEFAULTS = {
    "hidden_size": 64,
    "history_length": 10,
    "learning_rate": 0.005,
    "timesteps": 200,
    "beta_schedule": "exp",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "w": 2.0,
    "p": 0.1,
    "dropout": 0.1,
    "batch_size": 256,
    "epochs": 5,
    "detach_target": False,
    "plugin_init": False,
}
# Options that change the official training step (reported in table.md as modifications of the official code).
MODIFICATIONS = {
    "detach_target": "the official training step with the target embedding detached (x_start.detach()): "
    "a modification of the official step, the counterpart of the plugin's detach_target=True",
    "plugin_init": "the official model initialised as the plugin's DreamRec with initializer_range 0.02 (Linear, "
    "Conv1d and position-embedding weights N(0, 0.02), biases 0; item and null embeddings keep the official "
    "N(0, 1)): a modification of the official model, to separate the effect of initialisation from that of the encoder",
}


def plugin_config(hparams):
    """The plugin's config entries that give its DreamRec the shared hyperparameters ``hparams``."""
    return {
        "MAX_ITEM_LIST_LENGTH": hparams["history_length"],
        "hidden_size": hparams["hidden_size"],
        "inner_size": hparams["hidden_size"],
        "learning_rate": hparams["learning_rate"],
        "diffusion_steps": hparams["timesteps"],
        "beta_schedule": hparams["beta_schedule"],
        "beta_start": hparams["beta_start"],
        "beta_end": hparams["beta_end"],
        "guidance_weight": hparams["w"],
        "p_uncond": hparams["p"],
        "hidden_dropout_prob": hparams["dropout"],
        "attn_dropout_prob": hparams["dropout"],
        "train_batch_size": hparams["batch_size"],
        "epochs": hparams["epochs"],
        "detach_target": hparams["detach_target"],
        "weight_decay": 0.0,
    }


def official_flags(hparams, seed):
    """The official script's command-line flags for ``hparams`` (what its module-level argparse reads)."""
    return [
        f"--random_seed={seed}",
        f"--batch_size={hparams['batch_size']}",
        f"--hidden_factor={hparams['hidden_size']}",
        f"--timesteps={hparams['timesteps']}",
        f"--beta_start={hparams['beta_start']}",
        f"--beta_end={hparams['beta_end']}",
        f"--lr={hparams['learning_rate']}",
        f"--dropout_rate={hparams['dropout']}",
        f"--w={hparams['w']}",
        f"--p={hparams['p']}",
        f"--beta_sche={hparams['beta_schedule']}",
        "--diffuser_type=mlp1",
        "--optimizer=adam",
        "--l2_decay=0",
    ]


def export(dataset):
    """The plugin's training split ``dataset`` as the official ``train_data.df`` frame ``(seq, len_seq, next)``.

    One row per training interaction of the plugin (its histories, truncated to ``MAX_ITEM_LIST_LENGTH``); ``seq``
    right-padded with ``item_num``. The plugin never trains on empty histories, so neither does this frame.
    """
    item_num = dataset.item_num - 1
    history = dataset.inter_feat[dataset.iid_field + dataset.config["LIST_SUFFIX"]].numpy()
    lengths = dataset.inter_feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    targets = dataset.inter_feat[dataset.iid_field].numpy()
    seq = np.where(history > 0, history - 1, item_num)
    return pd.DataFrame({"seq": list(seq.tolist()), "len_seq": lengths.astype(np.int64), "next": targets - 1})


def data_statis(dataset):
    """The official ``data_statis.df``: history length and number of real items."""
    return pd.DataFrame({"seq_size": [dataset.config["MAX_ITEM_LIST_LENGTH"]], "item_num": [dataset.item_num - 1]})


def official_states(item_seq, item_num):
    """Plugin histories ``[batch, L]`` (0-padded) in official ids (padded with ``item_num``)."""
    return torch.where(item_seq > 0, item_seq - 1, torch.full_like(item_seq, item_num))


def plugin_scores(official_scores):
    """Official scores ``[batch, item_num + 1]`` (last column: padding) in the plugin's order ``[batch, n_items]``;
    the plugin's padding column 0 gets the official padding row's score (the evaluator masks it)."""
    return torch.cat([official_scores[:, -1:], official_scores[:, :-1]], dim=1)


def plugin_item_table(official_weight):
    """The official item table ``[item_num + 1, d]`` in plugin id order (the padding row first)."""
    return torch.cat([official_weight[-1:], official_weight[:-1]], dim=0)


def load_official(official_dir, flags):
    """Import the official ``DreamRec.py`` from ``official_dir`` with ``flags`` as its command line (a new module)."""
    official_dir = checked_snapshot(official_dir, OFFICIAL_FILES, "YangZhengyi98/DreamRec")
    if str(official_dir) not in sys.path:
        sys.path.insert(0, str(official_dir))
    spec = importlib.util.spec_from_file_location("dreamrec_official", official_dir / "DreamRec.py")
    module = importlib.util.module_from_spec(spec)
    saved_argv = sys.argv
    sys.argv = ["DreamRec.py", *flags]
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = saved_argv
    module.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # a __main__-only global
    return module


class OfficialRunner:
    """The official model and training step on the plugin's training split (see the module docstring)."""

    def __init__(self, official_dir, dataset, hparams, seed, official=None):
        self.hparams = hparams
        self.official = official or load_official(official_dir, official_flags(hparams, seed))
        self.device = self.official.device
        self.item_num = dataset.item_num - 1
        self.seq_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
        self.len_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
        frame = export(dataset)
        self.seq = torch.tensor(np.stack(frame["seq"].to_numpy()), dtype=torch.long)
        self.len_seq = torch.tensor(frame["len_seq"].to_numpy(), dtype=torch.long)
        self.target = torch.tensor(frame["next"].to_numpy(), dtype=torch.long)
        self.rng = np.random.RandomState(seed)
        self.model = self.official.Tenc(
            hparams["hidden_size"], self.item_num, hparams["history_length"], hparams["dropout"], "mlp1", self.device
        ).to(self.device)
        if hparams["plugin_init"]:
            plugin_initialisation(self.model, PLUGIN_INIT_STD)
        self.diffusion = self.official.diffusion(
            hparams["timesteps"], hparams["beta_start"], hparams["beta_end"], hparams["w"]
        )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=hparams["learning_rate"], eps=1e-8, weight_decay=0
        )

    def train_epoch(self):
        """One official epoch: ``int(rows / batch_size)`` steps on freshly drawn batches; returns the last loss."""
        batch_size, rows = self.hparams["batch_size"], len(self.target)
        self.model.train()
        loss = None
        for _ in range(int(rows / batch_size)):
            rows_drawn = torch.from_numpy(self.rng.choice(rows, batch_size, replace=False))
            seq, len_seq = self.seq[rows_drawn].to(self.device), self.len_seq[rows_drawn].to(self.device)
            target = self.target[rows_drawn].to(self.device)
            self.optimizer.zero_grad()
            target_embedding = self.model.cacu_x(target)
            if self.hparams["detach_target"]:
                target_embedding = target_embedding.detach()
            guidance = self.model.cacu_h(seq, len_seq, self.hparams["p"])
            steps = torch.randint(0, self.hparams["timesteps"], (batch_size,), device=self.device).long()
            loss, _ = self.diffusion.p_losses(self.model, target_embedding, guidance, steps, loss_type="l2")
            loss.backward()
            self.optimizer.step()
        return None if loss is None else loss.item()

    @torch.no_grad()
    def full_sort_scores(self, interaction, dropout):
        """``Tenc.predict`` on a batch of the plugin's test loader, as ``[batch, n_items]`` plugin-ordered scores;
        ``dropout``: leave dropout on, as the official ``evaluate`` (which never calls ``model.eval()``)."""
        states = official_states(interaction[self.seq_field].to(self.device), self.item_num)
        self.model.train(dropout)
        scores = self.model.predict(states, interaction[self.len_field].to(self.device), self.diffusion)
        return plugin_scores(scores.reshape(len(states), -1)).cpu()

    def target_embedding_weight(self):
        """The official item table in plugin id order (for the norm ratio)."""
        return plugin_item_table(self.model.item_embeddings.weight.detach().cpu())
