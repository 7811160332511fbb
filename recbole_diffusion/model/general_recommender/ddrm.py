"""DDRM.

Reference:
    Jujia Zhao, Wenjie Wang, Yiyan Xu, Teng Sun, Fuli Feng, Tat-Seng Chua.
    "Denoising Diffusion Recommender Model." SIGIR 2024. Official code: Polaris-JZ/DDRM.

User and item embeddings of a collaborative backbone (LightGCN or MF, pretrained on the same training split inside
the command and cached, or read from files) are frozen. For a training triple (user, positive, negative) the
user's and the positive item's embeddings are noised at one uniformly drawn step, and two conditional denoisers
(DiffRec's MLP over ``[noisy, step, condition]``) predict the clean ones: the user denoiser conditioned on the
item's embedding, the item denoiser on the user's. The loss is ``(1 - alpha) * BPR + alpha * reconstruction`` per
triple, where BPR scores the denoised user against the denoised positive and the (backbone) negative, and each
triple is weighted by ``sigmoid(positive score) ** beta`` (no gradient through the weight) to down-weight likely
noisy interactions. Inference starts from the mean of the embeddings of the user's training items, noised for
``sampling_steps`` steps, runs the item denoiser's mean-only reverse chain conditioned on the user's embedding, and
ranks all items by inner product with the generated item embedding.

Config keys (defaults and comments in ``properties/model/DDRM.yaml``; the pretrain_* keys are read by
``recbole_diffusion.pretrain``):
    steps, noise_schedule, noise_scale, noise_min, noise_max, beta_fixed, sampling_steps, dims_dnn, embedding_size,
    mlp_act_func, dropout, alpha, beta, item_emb_path, user_emb_path, pretrain_backbone, pretrain_embedding_size,
    pretrain_n_layers, pretrain_epochs, pretrain_learning_rate, pretrain_batch_size.

Differences from the official code: with ``sampling_steps`` < ``steps`` the history mean is noised to step
``sampling_steps - 1``, where the chain starts (the official code noises it to ``steps - 1`` whatever
``sampling_steps``); with ``sampling_steps`` >= ``steps`` both agree: noised to ``steps - 1``, then ``sampling_steps``
reverse steps, those past ``steps - 1`` with its coefficients (the official LightGCN runs use ``1.25 * steps``);
one learning rate for both denoisers (as the official ``diff_lr``; the frozen backbone has no learning rate); biases
start at zero; the padding item is never recommended.
"""

from logging import getLogger

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.model.layers import DiffRecDenoiser
from recbole_diffusion.model.sampling import without_padding_item
from recbole_diffusion.pretrain import check_pretrain_config, pretrained_embeddings
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import ConfigError, number, positive_int

VANISHED_WEIGHT = 1e-6  # a batch whose triples all weigh less than this gives the optimiser nothing to follow


@register_model
class DDRM(GeneralRecommender):
    input_type = InputType.PAIRWISE

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        check_betas_config(config, variant="diffrec")
        positive_int("sampling_steps", config["sampling_steps"])
        DiffRecDenoiser.check_config(config)
        number("alpha", config["alpha"], 0, 1)
        number("beta", config["beta"], 0)
        if (config["item_emb_path"] is None) != (config["user_emb_path"] is None):
            raise ConfigError(
                "user_emb_path",
                "a .npy file of user embeddings exactly when item_emb_path is set (DDRM needs both)",
                config["user_emb_path"],
            )
        check_pretrain_config(config)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.sampling_steps = config["sampling_steps"]
        self.alpha = config["alpha"]
        self.beta = config["beta"]
        self.weights_vanished = False
        dims = config["dims_dnn"]
        embedding_size = config["embedding_size"]
        activation = config["mlp_act_func"]
        dropout = config["dropout"]
        user_embeddings, item_embeddings = pretrained_embeddings(
            config, dataset, item_file=config["item_emb_path"], user_file=config["user_emb_path"]
        )
        if user_embeddings.size(1) != item_embeddings.size(1):
            raise ValueError(
                f"user and item embeddings differ in size: {user_embeddings.size(1)} vs {item_embeddings.size(1)}"
            )

        # The frozen backbone travels with the checkpoint (buffers, no gradient); the padding item is a zero row.
        item_embeddings = item_embeddings.float().clone()
        item_embeddings[0] = 0.0
        self.register_buffer("user_embedding", user_embeddings.float())
        self.register_buffer("item_embedding", item_embeddings)
        history_items, _, history_lengths = dataset.history_item_matrix()
        self.register_buffer("history_items", history_items, persistent=False)
        self.register_buffer("history_lengths", history_lengths.clamp(min=1), persistent=False)
        size = item_embeddings.size(1)
        self.diffusion = diffusion_from_config(config, "diffrec")
        self.user_denoiser = DiffRecDenoiser(size, dims, embedding_size, activation, dropout, condition_size=size)
        self.item_denoiser = DiffRecDenoiser(size, dims, embedding_size, activation, dropout, condition_size=size)

    def forward(self, user):
        """The condition of the item denoiser: the users' backbone embeddings, ``[batch, d]``."""
        return self.user_embedding[user]

    def denoise(self, x_t, timesteps, user_embedding):
        """The item denoiser: the clean item embedding from ``x_t`` at ``timesteps``, conditioned on the user."""
        return self.item_denoiser(x_t, timesteps, user_embedding)

    def denoise_pair(self, user, item):
        """Denoised user and item embeddings (and the reconstruction loss per pair) at one random step."""
        user_embedding, item_embedding = self.user_embedding[user], self.item_embedding[item]
        timesteps = self.diffusion.sample_timesteps(user.size(0), user.device)
        noisy_user = self.diffusion.q_sample(user_embedding, timesteps)
        noisy_item = self.diffusion.q_sample(item_embedding, timesteps)
        denoised_user = self.user_denoiser(noisy_user, timesteps, item_embedding)
        denoised_item = self.item_denoiser(noisy_item, timesteps, user_embedding)
        user_error = (denoised_user - user_embedding).pow(2).mean(-1)
        reconstruction = (user_error + (denoised_item - item_embedding).pow(2).mean(-1)) / 2
        return denoised_user, denoised_item, reconstruction

    def calculate_loss(self, interaction):
        user, positive, negative = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        denoised_user, denoised_item, reconstruction = self.denoise_pair(user, positive)
        positive_score = (denoised_user * denoised_item).sum(-1)
        negative_score = (denoised_user * self.item_embedding[negative]).sum(-1)
        bpr = -F.logsigmoid(positive_score - negative_score)
        weight = torch.sigmoid(positive_score).detach().pow(self.beta)
        self.warn_if_weights_vanished(weight, positive_score)
        return (((1 - self.alpha) * bpr + self.alpha * reconstruction) * weight).mean()

    def warn_if_weights_vanished(self, weight, positive_score):
        """Warn once when every triple of a batch weighs less than ``VANISHED_WEIGHT`` (only with ``beta`` > 0).

        The weight has no gradient, so once the denoised positive scores are all very negative, loss and gradients
        vanish and nothing moves them back: the run is dead (validation stays constant, and RecBole's early
        stopping counts equal scores as improvements). The official objective has the same fixed point."""
        if self.weights_vanished or self.beta == 0 or float(weight.max()) >= VANISHED_WEIGHT:
            return
        self.weights_vanished = True
        getLogger().warning(
            f"DDRM: every triple of a training batch weighs sigmoid(positive score) ** beta < {VANISHED_WEIGHT} "
            f"(beta={self.beta}, highest positive score {float(positive_score.detach().max()):.1f}): loss and "
            "gradients vanish and training cannot recover; rerun with another seed, or with beta: 0 (the official "
            "LightGCN runs)"
        )

    @torch.no_grad()
    def generate(self, user):
        """The ideal item embedding of each user: the history mean, noised, then denoised conditioned on the user."""
        history = self.history_items[user]
        history_mean = self.item_embedding[history].sum(1) / self.history_lengths[user][:, None]
        start = self.sampling_steps - 1
        noise_step = min(start, self.diffusion.num_steps - 1)
        x_t = self.diffusion.q_sample(history_mean, torch.full_like(user, noise_step))
        user_embedding = self.forward(user)
        return self.diffusion.sample_mean(lambda x, t: self.denoise(x, t, user_embedding), x_t, start_step=start)

    def predict(self, interaction):
        generated = self.generate(interaction[self.USER_ID])
        return (generated * self.item_embedding[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        return without_padding_item(self.generate(interaction[self.USER_ID]) @ self.item_embedding.t())
