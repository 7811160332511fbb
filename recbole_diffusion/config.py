"""The plugin's ``Config``: RecBole's, plus the plugin's own yaml layers and model registry.

Layers, lowest to highest precedence:

1. RecBole's defaults (its ``overall.yaml``, dataset defaults and the quick-start yaml of the model type; for a
   RecBole model also RecBole's model yaml),
2. the plugin-wide defaults ``properties/overall.yaml``,
3. ``properties/model/<Model>.yaml`` (for a RecBole model without one: RecBole's own model yaml again, so that
   the model's defaults beat plugin-wide ones),
4. ``dataset_configs/<dataset>.yaml`` when it exists,
5. the user's config files, 6. the config dict, 7. ``--key=value`` on the command line.

A plugin model never reads RecBole's yaml of a RecBole model with the same name (RecBole ships ``DiffRec.yaml``
and ``LDiffRec.yaml``). ``eval_args`` given partially in a higher layer is merged key by key into the lower
layers' ``eval_args`` instead of replacing it, so ``eval_args: {mode: uni100}`` keeps the dataset's split.

A sequential model trained with ``loss_type: CE`` (SASRec, GRU4Rec, BERT4Rec, ...) gets
``train_neg_sample_args: ~`` unless the user sets it: RecBole 1.2.1 defaults to uniform negative sampling and then
refuses CE, so these baselines did not run with their own defaults.

``metrics``, ``topk`` and ``valid_metric`` are checked (:func:`recbole_diffusion.preflight.check_evaluation_settings`)
before RecBole's own handling of them, which stops on a bad value with a bare exception.
"""

from pathlib import Path

import recbole
import torch
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_diffusion import resources
from recbole_diffusion.preflight import check_evaluation_settings
from recbole_diffusion.utils import get_model, is_plugin_model

RECBOLE_MODEL_PROPERTIES = Path(recbole.__file__).resolve().parent / "properties" / "model"


class Config(RecBoleConfig):
    """RecBole's ``Config`` that also knows the plugin's models, yaml files and CPU distributed runs.

    Args are those of :class:`recbole.config.Config`; ``model`` may be a plugin or RecBole model name or class.
    """

    def _get_model_and_dataset(self, model, dataset):
        if isinstance(model, str):
            model = get_model(model)
        elif model is None and isinstance(self.external_config_dict.get("model"), str):
            model = get_model(self.external_config_dict["model"])
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        plugin_model = is_plugin_model(model_class)
        # An empty name makes RecBole skip its own model yaml, which a plugin model must not inherit.
        super()._load_internal_config_dict("" if plugin_model else model, model_class, dataset)
        model_file = resources.model_yaml(model)
        if not plugin_model and not model_file.is_file():
            model_file = RECBOLE_MODEL_PROPERTIES / f"{model}.yaml"
        for layer in (resources.overall_yaml(), model_file):
            if layer.is_file():
                self._update_internal_config_dict(layer)
        dataset_file = resources.dataset_yaml(dataset)
        if dataset_file.is_file():
            dataset_keys = self._update_internal_config_dict(dataset_file) or {}
            self.parameters["Dataset"] += [key for key in dataset_keys if key not in self.parameters["Dataset"]]
        loss_type = self.external_config_dict.get("loss_type", self.internal_config_dict.get("loss_type"))
        if (
            model_class.type == ModelType.SEQUENTIAL
            and loss_type == "CE"
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            self.internal_config_dict["train_neg_sample_args"] = None

    def _get_final_config_dict(self):
        final_config_dict = super()._get_final_config_dict()
        internal_eval_args = self.internal_config_dict.get("eval_args")
        external_eval_args = self.external_config_dict.get("eval_args")
        if isinstance(internal_eval_args, dict) and isinstance(external_eval_args, dict):
            final_config_dict["eval_args"] = {**internal_eval_args, **external_eval_args}
        return final_config_dict

    def _set_default_parameters(self):
        check_evaluation_settings(self.final_config_dict)
        super()._set_default_parameters()

    def _init_device(self):
        """RecBole's device set-up, except that a distributed run without CUDA uses gloo on the CPU."""
        if "local_rank" not in self.final_config_dict or torch.cuda.is_available():
            super()._init_device()
            return
        config = self.final_config_dict
        config["gpu_id"] = ""
        torch.distributed.init_process_group(
            backend="gloo",
            rank=config["local_rank"] + config["offset"],
            world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        config["device"] = torch.device("cpu")
        config["single_spec"] = False
        if config["local_rank"] != 0:
            config["state"] = "error"
            config["show_progress"] = False
            config["verbose"] = False
