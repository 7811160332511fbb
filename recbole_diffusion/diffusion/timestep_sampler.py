"""Importance sampling of diffusion timesteps from the history of per-step losses (DiffRec, Wang et al. 2023).

Improved DDPM (Nichol & Dhariwal, 2021) draws step ``t`` with probability ``p_t`` proportional to
``sqrt(E[L_t^2])``, estimated from the last ``history_per_step`` losses seen at that step, and divides each loss by
``T * p_t`` so that the expected loss is unchanged. Until every step holds a full history, steps are uniform.
"""

import torch
from torch import nn

from recbole_diffusion.validation import positive_int


class LossAwareSampler(nn.Module):
    """Draws timesteps uniformly until every step has ``history_per_step`` losses, then by ``sqrt(E[L_t^2])``.

    Args:
        num_steps: number of diffusion steps ``T``.
        history_per_step: losses remembered per step (DiffRec's ``history_num_per_term``).
        uniform_prob: probability mass spread uniformly over all steps, so that no step is never drawn.

    The loss history is kept in (persistent) buffers so that a resumed training run continues where it stopped.
    """

    def __init__(self, num_steps, history_per_step=10, uniform_prob=0.001):
        super().__init__()
        positive_int("num_steps", num_steps)
        positive_int("history_num_per_term", history_per_step)
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"uniform_prob must be in [0, 1], got {uniform_prob}")
        self.num_steps = num_steps
        self.history_per_step = history_per_step
        self.uniform_prob = uniform_prob
        self.register_buffer("loss_history", torch.zeros(num_steps, history_per_step, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(num_steps, dtype=torch.long))

    def is_warm(self):
        """Whether every step holds a full loss history (importance sampling is on)."""
        return bool((self.loss_count == self.history_per_step).all())

    def probabilities(self):
        """``p_t`` for every step: uniform before warm-up, else ``sqrt(E[L_t^2])`` normalised and mixed with uniform."""
        if not self.is_warm():
            return torch.full(
                (self.num_steps,), 1.0 / self.num_steps, dtype=torch.float64, device=self.loss_count.device
            )
        root_mean_square = self.loss_history.pow(2).mean(dim=-1).sqrt()
        probabilities = root_mean_square / root_mean_square.sum()
        return probabilities * (1 - self.uniform_prob) + self.uniform_prob / self.num_steps

    def sample(self, batch_size, device, generator=None):
        """Timesteps ``t`` (``[batch_size]``) and loss weights ``1 / (T p_t)`` (all ones while uniform)."""
        if not self.is_warm():
            t = torch.randint(0, self.num_steps, (batch_size,), device=device, generator=generator)
            return t, torch.ones(batch_size, device=device)
        probabilities = self.probabilities().to(device)
        t = torch.multinomial(probabilities, batch_size, replacement=True, generator=generator)
        return t, (1.0 / (probabilities[t] * self.num_steps)).float()

    @torch.no_grad()
    def update(self, timesteps, losses):
        """Append each sample's loss to its step's history (a queue of the last ``history_per_step``)."""
        for t, loss in zip(timesteps.tolist(), losses.detach().double().tolist()):
            count = int(self.loss_count[t])
            if count == self.history_per_step:
                self.loss_history[t] = torch.roll(self.loss_history[t], -1)
                self.loss_history[t, -1] = loss
            else:
                self.loss_history[t, count] = loss
                self.loss_count[t] = count + 1
