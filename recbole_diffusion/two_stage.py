"""Two-stage models: a model that is not trained as a recommender but prepares the data another model trains on.

A model declares it by subclassing :class:`TwoStageModel` (DiffuASR: stage 1 generates augmented training sequences,
stage 2 trains its ``backbone`` on them). The quick start runs :meth:`TwoStageModel.prepare_stage_two` on the split
data, then trains and tests the model it returns; a comparison and a single run's ``--resume`` refuse such a model,
and a hyperparameter search checks that its trials do not share prepared data.
"""


class TwoStageModel:
    """Mixin of a RecBole model whose run is two stages: :meth:`prepare_stage_two`, then another model's run."""

    @classmethod
    def prepare_stage_two(cls, config, dataset, train_data, valid_data, test_data):
        """Work on the split data of stage 1 (e.g. write augmented atomic files) and say what stage 2 trains.

        Returns:
            dict: ``model`` (the name of the model to train next), ``data_path`` (the folder holding
            ``<dataset>/``), ``config_overrides`` (dict of config values for stage 2) and ``summary`` (dict added to
            the run's result).
        """
        raise NotImplementedError(f"{cls.__name__} declares TwoStageModel but has no prepare_stage_two")


def is_two_stage(model_class):
    """Whether ``model_class`` (a model class) is a :class:`TwoStageModel`."""
    return isinstance(model_class, type) and issubclass(model_class, TwoStageModel)
