"""DiffRec and T-DiffRec.

Reference:
    Wenjie Wang, Yiyan Xu, Fuli Feng, Xinyu Lin, Xiangnan He, Tat-Seng Chua.
    "Diffusion Recommender Model." SIGIR 2023. Official code: YiyanXu/DiffRec.

A user's training interactions form the vector ``x_0`` over all items. It is noised to ``x_t`` at a step drawn by
importance sampling over the history of per-step losses, and an MLP predicts ``x_0`` (or the noise) from
``[x_t, step embedding]``; the loss is the MSE, weighted per step by ``SNR(t-1) - SNR(t)`` (the paper's Eq. 11-12).
Inference noises the history for ``sampling_steps`` (``T'``) steps (not at all when 0), then runs the reverse
chain of all ``steps`` (``T``) from there, taking only the mean of each step (no sampled noise); the result scores
all items. T-DiffRec (``TDiffRec``) feeds time-aware weights instead of ones: each user's training interactions,
in time order, get ``linspace(w_min, w_max)``.

Config keys (defaults and comments in ``properties/model/DiffRec.yaml``):
    steps, noise_schedule, noise_scale, noise_min, noise_max, beta_fixed, mean_type, reweight,
    history_num_per_term, sampling_steps, sampling_noise, dims_dnn, embedding_size, mlp_act_func, dropout, norm;
    TDiffRec also w_min, w_max.

Differences from the official code: biases start at zero (the official code draws them from N(0, 0.001); RecBole's
DiffRec also uses zeros, so that both give the same weights for the same seed); ``noise_scale: 0`` (the no-noise
ablation) is not supported; the padding item is never recommended. RecBole's built-in DiffRec differs from the
official code in its defaults (``linear`` schedule) and in not mirroring ``dims_dnn`` (official: ``[200, 600]``
gives ``n -> 600 -> 200 -> 600 -> n``); here both follow the official code.
"""

import torch
from recbole.model.abstract_recommender import AutoEncoderMixin, GeneralRecommender
from recbole.utils import InputType

from recbole_diffusion.diffusion import check_betas_config, diffusion_from_config
from recbole_diffusion.diffusion.timestep_sampler import LossAwareSampler
from recbole_diffusion.model.general_recommender.time_aware import TimeAwareHistory
from recbole_diffusion.model.layers import DiffRecDenoiser
from recbole_diffusion.model.sampling import without_padding_item
from recbole_diffusion.utils import register_model
from recbole_diffusion.validation import boolean, int_in, one_of, positive_int

MEAN_TYPES = ("x0", "eps")


@register_model
class DiffRec(GeneralRecommender, AutoEncoderMixin):
    input_type = InputType.POINTWISE
    train_batch_by_user = True

    @classmethod
    def check_config(cls, config):
        """Check every key the model reads; no data needed."""
        check_betas_config(config, variant="diffrec")
        int_in("sampling_steps", config["sampling_steps"], 0, config["steps"], " (steps)")
        boolean("sampling_noise", config["sampling_noise"])
        DiffRecDenoiser.check_config(config)
        boolean("norm", config["norm"])
        one_of("mean_type", config["mean_type"], MEAN_TYPES)
        boolean("reweight", config["reweight"])
        positive_int("history_num_per_term", config["history_num_per_term"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        self.steps = config["steps"]
        self.mean_type = config["mean_type"]
        self.reweight = config["reweight"]
        self.sampling_steps = config["sampling_steps"]
        self.sampling_noise = config["sampling_noise"]
        dims = config["dims_dnn"]
        embedding_size = config["embedding_size"]
        activation = config["mlp_act_func"]
        dropout = config["dropout"]

        self.build_histroy_items(dataset)
        self.diffusion = diffusion_from_config(config, "diffrec", prediction_type=self.mean_type)
        self.timestep_sampler = LossAwareSampler(self.steps, config["history_num_per_term"])
        self.denoiser = DiffRecDenoiser(self.diffused_size(), dims, embedding_size, activation, dropout, config["norm"])

    def diffused_size(self):
        """Size of the vectors that are diffused: the item count (L-DiffRec: the latent size)."""
        return self.n_items

    def forward(self, user):
        """The condition: each user's training interactions as a vector over all items, ``[batch, n_items]``."""
        return self.get_rating_matrix(user)

    def denoise(self, x_t, timesteps, condition=None):
        """The denoiser's output (``x_0`` or noise, by ``mean_type``) for ``x_t`` at ``timesteps``; it takes no
        condition (the reverse chain starts from the history instead)."""
        return self.denoiser(x_t, timesteps)

    def step_weights(self, timesteps):
        """The paper's per-step loss weight: ``SNR(t-1) - SNR(t)`` for x0 (Eq. 11), 1 at ``t = 0`` (Eq. 12); the
        official code's ELBO weight of the noise MSE for eps."""
        previous = (timesteps - 1).clamp(min=0)
        if self.mean_type == "x0":
            weights = self.diffusion.snr(previous) - self.diffusion.snr(timesteps)
        else:
            alpha_bar = self.diffusion.alphas_cumprod[timesteps]
            weights = (1 - alpha_bar) / (
                (1 - self.diffusion.alphas_cumprod[previous]) ** 2 * (1 - self.diffusion.betas[timesteps])
            )
        return torch.where(timesteps == 0, torch.ones_like(weights), weights)

    def diffusion_loss(self, x0):
        """Per-sample DiffRec loss of a batch ``x0`` (importance-weighted, to be averaged) and the denoiser's
        prediction of ``x0``."""
        timesteps, importance_weights = self.timestep_sampler.sample(x0.size(0), x0.device)
        noise = torch.randn_like(x0)
        x_t = self.diffusion.q_sample(x0, timesteps, noise)
        output = self.denoise(x_t, timesteps)
        target = x0 if self.mean_type == "x0" else noise
        loss = (target - output).pow(2).mean(dim=-1)
        if self.reweight:
            if self.mean_type == "eps":  # at t = 0 the official code scores the implied x0 instead
                x0_loss = (x0 - self.diffusion.to_x0(output, x_t, timesteps)).pow(2).mean(dim=-1) / 2
                loss = torch.where(timesteps == 0, x0_loss, loss)
            loss = self.step_weights(timesteps) * loss
        self.timestep_sampler.update(timesteps, loss)
        return loss * importance_weights, self.diffusion.to_x0(output, x_t, timesteps)

    def calculate_loss(self, interaction):
        return self.diffusion_loss(self.forward(interaction[self.USER_ID]))[0].mean()

    @torch.no_grad()
    def generate(self, history):
        """Noise the history for ``sampling_steps`` steps, then run the reverse chain of all ``steps`` (mean only,
        or ancestral sampling with ``sampling_noise``)."""
        x_t = history
        if self.sampling_steps > 0:
            start = torch.full((history.size(0),), self.sampling_steps - 1, device=history.device, dtype=torch.long)
            x_t = self.diffusion.q_sample(history, start)
        if self.sampling_noise:
            return self.diffusion.sample(self.denoise, x_t.shape, x_t.device, x_T=x_t, start_step=self.steps - 1)
        return self.diffusion.sample_mean(self.denoise, x_t)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)

    def full_sort_predict(self, interaction):
        return without_padding_item(self.generate(self.forward(interaction[self.USER_ID])))


@register_model
class TDiffRec(TimeAwareHistory, DiffRec):
    """T-DiffRec: DiffRec over time-aware interaction weights (needs a timestamp field)."""
