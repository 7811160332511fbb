"""Diversity metrics for RecBole's evaluator: intra-list diversity (ILD) and category coverage.

RecBole 1.2.1 has ItemCoverage, GiniIndex, ShannonEntropy and TailPercentage, but nothing that looks inside one
user's list. After :func:`register_metrics` (run on ``import recbole_diffusion``) these names work in ``metrics:``:

* ``ILD@K``: mean pairwise distance between the top-K items of a user, averaged over users. With
  ``diversity_category_field`` set, the distance of two items is ``1 - Jaccard`` of their category sets (0 or 1
  for a single category per item); otherwise it is ``1 - cosine`` of the model's own item embeddings, taken from
  the attribute named by ``ild_item_embedding``. Category ILD is comparable across models; embedding ILD is not,
  since each model has its own embedding space.
* ``CategoryCoverage@K``: the share of all categories that a user's top-K items cover, averaged over users.
  Needs ``diversity_category_field``.

The category field is an item feature of type ``token`` (one category per item) or ``token_seq`` (several), e.g.
``class`` in ml-100k's ``.item`` file or ``categories`` in the Amazon datasets; ``load_col`` must read it.
"""

import copy

import torch
from recbole.evaluator import collector as collector_module
from recbole.evaluator import register as register_module
from recbole.evaluator.base_metric import AbstractMetric
from recbole.trainer import trainer as trainer_module
from recbole.utils import EvaluatorType, FeatureType

ITEM_CATEGORIES = "data.item_categories"
ITEM_EMBEDDINGS = "model.item_embeddings"


def item_category_matrix(dataset, field):
    """Multi-hot ``[n_items, n_categories]`` float matrix of ``field``; the padding item and category 0 are empty.

    ``dataset`` is a built dataset (as held by a data loader), whose item features are tensors indexed by item id.
    """
    if dataset.item_feat is None or field not in dataset.item_feat:
        raise ValueError(
            f"diversity_category_field={field!r} is not an item feature of dataset {dataset.dataset_name!r}; "
            f"read it with load_col: {{item: [{dataset.iid_field}, {field}]}} (item features loaded: "
            f"{[] if dataset.item_feat is None else list(dataset.item_feat.columns)})"
        )
    if dataset.field2type[field] not in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
        raise ValueError(
            f"diversity_category_field={field!r} must be a token or token_seq field, "
            f"got {dataset.field2type[field].value}"
        )
    categories = dataset.item_feat[field]
    if categories.dim() == 1:
        categories = categories[:, None]
    matrix = torch.zeros(len(categories), dataset.num(field))
    matrix.scatter_(1, categories.long(), 1.0)
    matrix[:, 0] = 0.0
    matrix[0] = 0.0
    return matrix


def mean_pairwise_distance(features, item_lists, distance):
    """Mean over users of the mean ``distance`` between the distinct pairs of each user's list.

    ``features`` is ``[n_items, dim]``, ``item_lists`` is ``[n_users, K]`` with ``K >= 2``; ``distance(a, b)``
    maps two ``[n_users, K, dim]`` tensors to the ``[n_users, K, K]`` pairwise distances.
    """
    size = item_lists.size(1)
    listed = features[item_lists]
    pairwise = distance(listed, listed)
    return (pairwise.sum(dim=(1, 2)) - pairwise.diagonal(dim1=1, dim2=2).sum(dim=1)) / (size * (size - 1))


def jaccard_distance(left, right):
    """``1 - |A ∩ B| / |A ∪ B|`` between multi-hot rows; two empty sets are at distance 0."""
    intersection = left @ right.transpose(1, 2)
    union = left.sum(-1)[:, :, None] + right.sum(-1)[:, None, :] - intersection
    return torch.where(union > 0, 1.0 - intersection / union.clamp(min=1.0), 0.0)


def cosine_distance(left, right):
    """``1 - cos`` between rows."""
    normalise = torch.nn.functional.normalize
    return 1.0 - normalise(left, dim=-1) @ normalise(right, dim=-1).transpose(1, 2)


class ILD(AbstractMetric):
    """Intra-list diversity@K: mean pairwise distance within each user's top-K list (see the module docstring)."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", ITEM_CATEGORIES, ITEM_EMBEDDINGS]

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]
        if min(self.topk) < 2:
            raise ValueError(f"ILD needs lists of at least 2 items; topk={self.topk}")

    def calculate_metric(self, dataobject):
        item_lists = dataobject.get("rec.items")
        if ITEM_CATEGORIES in dataobject:
            features, distance = dataobject.get(ITEM_CATEGORIES), jaccard_distance
        else:
            features, distance = dataobject.get(ITEM_EMBEDDINGS), cosine_distance
        return {
            f"ild@{k}": round(mean_pairwise_distance(features, item_lists[:, :k], distance).mean().item(),
                              self.decimal_place)
            for k in self.topk
        }


class CategoryCoverage(AbstractMetric):
    """Category coverage@K: share of all categories found among a user's top-K items, averaged over users."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", ITEM_CATEGORIES]

    def __init__(self, config):
        super().__init__(config)
        if not config["diversity_category_field"]:
            raise ValueError("metric CategoryCoverage needs diversity_category_field (an item category feature)")
        self.topk = config["topk"]

    def calculate_metric(self, dataobject):
        item_lists = dataobject.get("rec.items")
        categories = dataobject.get(ITEM_CATEGORIES)
        n_categories = (categories.sum(dim=0) > 0).sum().item()
        metrics = {}
        for k in self.topk:
            covered = (categories[item_lists[:, :k]].sum(dim=1) > 0).sum(dim=1).float()
            metrics[f"categorycoverage@{k}"] = round((covered / n_categories).mean().item(), self.decimal_place)
        return metrics


class DiversityCollector(collector_module.Collector):
    """RecBole's Collector, plus the item categories (from the data) or item embeddings (from the model).

    It also repairs RecBole 1.2.1's ``get_data_struct``, which calls ``.cpu()`` on every collected value, so the
    item count and item counters (ints and Counters) needed by ItemCoverage, GiniIndex, TailPercentage and
    AveragePopularity crash the evaluation; only tensors are moved here.
    """

    def get_data_struct(self):
        collected = self.data_struct._data_dict
        for key, value in collected.items():
            if isinstance(value, torch.Tensor):
                collected[key] = value.cpu()
        returned_struct = copy.deepcopy(self.data_struct)
        for key in ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"):
            if key in self.data_struct:
                del self.data_struct[key]
        return returned_struct

    def data_collect(self, train_data):
        super().data_collect(train_data)
        field = self.config["diversity_category_field"]
        if self.register.need(ITEM_CATEGORIES) and field:
            self.data_struct.set(ITEM_CATEGORIES, item_category_matrix(train_data.dataset, field))

    def model_collect(self, model):
        super().model_collect(model)
        if not (self.register.has_metric("ild") and not self.config["diversity_category_field"]):
            return
        attribute = self.config["ild_item_embedding"]
        embedding = getattr(model, attribute, None)
        if not isinstance(embedding, torch.nn.Embedding):
            raise ValueError(
                f"ILD without diversity_category_field uses the model's item embeddings, but {type(model).__name__} "
                f"has no nn.Embedding named ild_item_embedding={attribute!r}; set ild_item_embedding or "
                "diversity_category_field"
            )
        self.data_struct.set(ITEM_EMBEDDINGS, embedding.weight.detach().cpu())


DIVERSITY_METRICS = (ILD, CategoryCoverage)


def register_metrics():
    """Make the diversity metrics known to RecBole's Config and Evaluator, and collect what they need."""
    for metric in DIVERSITY_METRICS:
        name = metric.__name__.lower()
        register_module.metrics_dict[name] = metric
        register_module.metric_information[name] = metric.metric_need
        register_module.metric_types[name] = metric.metric_type
    trainer_module.Collector = DiversityCollector
