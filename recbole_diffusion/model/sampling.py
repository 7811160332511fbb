"""The contract of the plugin's diffusion models, and how many reverse steps their scoring runs.

Every diffusion model is a RecBole recommender whose file reads like its paper's method section:

* ``forward(...)`` encodes the condition, e.g. ``forward(item_seq, item_seq_len)`` the history, as SASRec's
  ``forward`` does; it never runs the reverse chain.
* ``denoise(x_t, t, condition)`` is the network: its output (``x0`` or the noise, the ``prediction_type`` of the
  model's ``GaussianDiffusion``) for ``x_t`` at the steps ``t`` under ``condition`` (``t`` holds one step per row,
  or per position of a history where each position is diffused at its own step, as in ADRec).
* ``calculate_loss(interaction)`` noises the target with the model's ``GaussianDiffusion`` and scores ``denoise``.
* ``generate(condition, num_inference_steps=None)`` runs the core's reverse loop, without gradients, to the vector
  that scores the items.
* ``predict(interaction, num_inference_steps=None)`` and ``full_sort_predict(interaction, num_inference_steps=None)``
  score by the generated vector; :func:`without_padding_item` keeps the padding item out of every ranking.

The models whose scoring runs a DDPM chain that DDIM can shorten are :class:`ReverseChainSampling`: their
``num_inference_steps`` is a call argument, as in diffusers. ``None`` runs the sampler of the config key
``inference_steps`` (``~``: the full DDPM chain; ``k``: DDIM with ``k`` steps); a number ``k`` runs DDIM with ``k``
steps (the full number of steps: the DDPM chain). It is never state that a harness overwrites: validation with the
cheaper sampler of ``valid_inference_steps`` is the trainer passing that number
(:meth:`recbole_diffusion.trainer.DiffusionTrainer.evaluate`). The other models (DiffRec and its variants, DDRM,
DiffRec2) take no step count: their inference is fixed by their own config keys.
"""

import torch

from recbole_diffusion.diffusion.gaussian import check_inference_steps

INFERENCE_STEPS_KEY = "inference_steps"
VALID_INFERENCE_STEPS_KEY = "valid_inference_steps"
PADDING_ITEM = 0


def without_padding_item(scores):
    """``scores`` ``[..., n_items]`` with the padding item at ``-inf``, so that it is never recommended."""
    scores[..., PADDING_ITEM] = -torch.inf
    return scores


def valid_inference_steps(config):
    """The config's ``valid_inference_steps`` (``None`` when absent: validate with the test's sampler)."""
    return config[VALID_INFERENCE_STEPS_KEY] if VALID_INFERENCE_STEPS_KEY in config else None


class ReverseChainSampling:
    """Mixin of the models whose scoring runs a reverse chain of a shortenable length: ``predict`` and
    ``full_sort_predict`` take ``num_inference_steps`` (see the module docstring) and pass
    ``self.sampler_steps(num_inference_steps)`` on to the core's sampler."""

    @staticmethod
    def check_sampling_config(config, num_steps):
        """Check ``inference_steps`` and ``valid_inference_steps`` against the chain's ``num_steps``."""
        check_inference_steps(config[INFERENCE_STEPS_KEY], num_steps, INFERENCE_STEPS_KEY)
        check_inference_steps(valid_inference_steps(config), num_steps, VALID_INFERENCE_STEPS_KEY)

    def init_sampling(self, config):
        """Read ``inference_steps``, the sampler of a call that passes no step count."""
        self.inference_steps = config[INFERENCE_STEPS_KEY]

    def sampler_steps(self, num_inference_steps=None):
        """The step count a scoring call runs: ``num_inference_steps``, or the config's ``inference_steps``."""
        return self.inference_steps if num_inference_steps is None else num_inference_steps
