"""The trainer of the plugin's models: RecBole's ``Trainer`` plus the embedding-collapse check of
:mod:`recbole_diffusion.collapse` after every training epoch."""

from recbole.trainer import Trainer

from recbole_diffusion.collapse import CONFIG_KEY, CollapseMonitor


class DiffusionTrainer(Trainer):
    """RecBole's ``Trainer``; after each training epoch the model's target embedding table (if it declares one) is
    checked for embedding collapse, with the threshold ``collapse_norm_ratio`` (absent from a plain RecBole config:
    no check)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        threshold = config[CONFIG_KEY] if CONFIG_KEY in config else None
        self.collapse_monitor = CollapseMonitor(model, threshold)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.collapse_monitor.after_epoch(epoch_idx, train_data._dataset)
        return loss
