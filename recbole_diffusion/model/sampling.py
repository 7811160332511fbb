"""Which reverse-chain sampler a model's scoring runs: one for the test, optionally a cheaper one for validation.

A model whose recommendations come from a reverse chain reads two config keys: ``inference_steps`` (the test, and
validation unless the next key is set: ``~`` the full DDPM chain, ``k`` DDIM with ``k`` steps) and
``valid_inference_steps`` (``~``: the same sampler as the test; ``k``: DDIM with ``k`` steps for validation, i.e.
for early stopping and the choice of the checkpoint, only). :class:`DiffusionTrainer` scores the validation split
inside :meth:`ReverseChainSampling.validation_sampler`; everything else (the test, ``compare``'s sampler grid)
uses ``inference_steps``.
"""

from contextlib import contextmanager

from recbole_diffusion.diffusion.gaussian import check_inference_steps

INFERENCE_STEPS_KEY = "inference_steps"
VALID_INFERENCE_STEPS_KEY = "valid_inference_steps"


class ReverseChainSampling:
    """Mixin of the models that score through ``GaussianDiffusion.sample``: pass ``self.sampler_steps`` as its
    ``num_inference_steps``."""

    @staticmethod
    def check_sampling_config(config, num_steps):
        """Check ``inference_steps`` and ``valid_inference_steps`` against the chain's ``num_steps``."""
        check_inference_steps(config[INFERENCE_STEPS_KEY], num_steps, INFERENCE_STEPS_KEY)
        valid_steps = config[VALID_INFERENCE_STEPS_KEY] if VALID_INFERENCE_STEPS_KEY in config else None
        check_inference_steps(valid_steps, num_steps, VALID_INFERENCE_STEPS_KEY)

    def init_sampling(self, config):
        """Read ``inference_steps`` and ``valid_inference_steps`` (checked by :meth:`check_sampling_config`)."""
        self.inference_steps = config[INFERENCE_STEPS_KEY]
        self.valid_inference_steps = config[VALID_INFERENCE_STEPS_KEY] if VALID_INFERENCE_STEPS_KEY in config else None
        self.validating = False

    @property
    def sampler_steps(self):
        """The ``num_inference_steps`` of the scoring in progress."""
        if self.validating and self.valid_inference_steps is not None:
            return self.valid_inference_steps
        return self.inference_steps

    @contextmanager
    def validation_sampler(self):
        """Score with the validation sampler inside this block."""
        self.validating = True
        try:
            yield
        finally:
            self.validating = False
