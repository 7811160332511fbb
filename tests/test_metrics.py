"""ILD and CategoryCoverage: hand-computed lists, the category matrix of a real dataset, and a full evaluation."""

import math

import pytest
import torch
from recbole.evaluator.collector import DataStruct

from recbole_diffusion import Config, create_dataset, data_preparation, run_recbole_diffusion
from recbole_diffusion.metrics import ILD, CategoryCoverage, DiversityCollector, item_category_matrix
from tests.conftest import markov_sequences, write_atomic_inter

# Items 1..3 (0 is padding); categories a, b, c as columns 1..3 (column 0 is the padding category).
CATEGORIES = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float)
LISTS = torch.tensor([[1, 2, 3], [3, 1, 2]])
METRIC_CONFIG = {"topk": [2, 3], "metric_decimal_place": 4, "diversity_category_field": "genre"}


def struct(**entries):
    data = DataStruct()
    for key, value in entries.items():
        data.set(key, value)
    return data


def test_category_ild_by_hand():
    # d(1,2) = 1 - |{a}| / |{a,b}| = 0.5; d(1,3) = d(2,3) = 1.
    result = ILD(METRIC_CONFIG).calculate_metric(struct(**{"rec.items": LISTS, "data.item_categories": CATEGORIES}))
    assert result["ild@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["ild@3"] == pytest.approx(round((0.5 + 1.0 + 1.0) / 3, 4))


def test_embedding_ild_by_hand():
    embeddings = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    config = {**METRIC_CONFIG, "diversity_category_field": None}
    result = ILD(config).calculate_metric(struct(**{"rec.items": LISTS, "model.item_embeddings": embeddings}))
    tilted = 1 - 1 / math.sqrt(2)
    assert result["ild@2"] == pytest.approx(round((1.0 + tilted) / 2, 4))
    assert result["ild@3"] == pytest.approx(round((1.0 + 2 * tilted) / 3, 4))


def test_category_coverage_by_hand():
    data = struct(**{"rec.items": LISTS, "data.item_categories": CATEGORIES})
    result = CategoryCoverage(METRIC_CONFIG).calculate_metric(data)
    assert result["categorycoverage@2"] == pytest.approx(round(2 / 3, 4))  # {a,b} and {c,a}
    assert result["categorycoverage@3"] == 1.0


def test_identical_items_have_no_diversity():
    lists = torch.tensor([[1, 1, 1]])
    result = ILD(METRIC_CONFIG).calculate_metric(struct(**{"rec.items": lists, "data.item_categories": CATEGORIES}))
    assert result["ild@3"] == 0.0


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="diversity_category_field"):
        CategoryCoverage({**METRIC_CONFIG, "diversity_category_field": None})
    with pytest.raises(ValueError, match="at least 2"):
        ILD({**METRIC_CONFIG, "topk": [1, 5]})


@pytest.fixture
def genre_data(tmp_path):
    """The markov dataset plus an ``.item`` file: item i has genres ``g{i % 3}`` and, for even i, ``even``."""
    sequences = markov_sequences()
    folder = write_atomic_inter(tmp_path, "genres", sequences)
    items = sorted({item for walk in sequences.values() for item in walk})
    lines = ["item_id:token\tgenre:token_seq"]
    lines += [f"i{item}\tg{item % 3}{' even' if item % 2 == 0 else ''}" for item in items]
    (folder / "genres.item").write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def genre_config(tiny_config, data_path, **overrides):
    return {
        **tiny_config,
        "data_path": data_path,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "genre"]},
        "diversity_category_field": "genre",
        **overrides,
    }


def test_category_matrix_follows_recbole_item_ids(tiny_config, genre_data):
    config = Config(model="DreamRec", dataset="genres", config_dict=genre_config(tiny_config, genre_data))
    dataset = data_preparation(config, create_dataset(config))[0].dataset
    matrix = item_category_matrix(dataset, "genre")
    assert matrix[0].sum() == 0
    for item_id in range(1, dataset.item_num):
        item = int(dataset.id2token("item_id", item_id)[1:])
        expected = {f"g{item % 3}"} | ({"even"} if item % 2 == 0 else set())
        genres = {dataset.id2token("genre", genre) for genre in matrix[item_id].nonzero().flatten().tolist()}
        assert genres == expected


def test_unloaded_category_field_names_load_col(tiny_config, genre_data):
    config = Config(model="DreamRec", dataset="genres", config_dict=genre_config(tiny_config, genre_data))
    with pytest.raises(ValueError, match="load_col"):
        item_category_matrix(data_preparation(config, create_dataset(config))[0].dataset, "no_such_field")


def test_full_evaluation_reports_diversity(tiny_config, genre_data):
    metrics = ["Hit", "ILD", "CategoryCoverage"]
    config = genre_config(tiny_config, genre_data, metrics=metrics, hidden_size=16, inner_size=16, diffusion_steps=10)
    result = run_recbole_diffusion("DreamRec", "genres", config_dict=config, saved=False)["test_result"]
    assert set(result) == {"hit@10", "ild@10", "categorycoverage@10"}
    assert 0.0 < result["ild@10"] <= 1.0
    # Any 10 distinct items cover at least two of the residues g0, g1, g2 and at most all four genres.
    assert 0.5 <= result["categorycoverage@10"] <= 1.0


def test_embedding_ild_needs_an_item_embedding(tiny_config, genre_data):
    config = Config(
        model="DreamRec",
        dataset="genres",
        config_dict=genre_config(tiny_config, genre_data, metrics=["ILD"], valid_metric="ILD@10",
                                 diversity_category_field=None, ild_item_embedding="missing"),
    )
    with pytest.raises(ValueError, match="ild_item_embedding='missing'"):
        DiversityCollector(config).model_collect(torch.nn.Linear(2, 2))


def test_recboles_dataset_level_metrics_run_beside_ours(tiny_config, data_path):
    """RecBole 1.2.1's Collector calls ``.cpu()`` on the item count and item counters that ItemCoverage,
    GiniIndex, TailPercentage and AveragePopularity need (an AttributeError); the plugin's collector only moves
    tensors."""
    metrics = ["Hit", "ItemCoverage", "GiniIndex", "TailPercentage", "AveragePopularity", "ShannonEntropy", "ILD"]
    config = {**tiny_config, "data_path": data_path, "metrics": metrics, "hidden_size": 16, "inner_size": 16,
              "diffusion_steps": 10}
    result = run_recbole_diffusion("DreamRec", "markov", config_dict=config, saved=False)["test_result"]
    assert 0.0 < result["itemcoverage@10"] <= 1.0
    assert 0.0 <= result["giniindex@10"] <= 1.0
    assert 0.0 <= result["tailpercentage@10"] <= 1.0
    assert result["averagepopularity@10"] > 0 and result["shannonentropy@10"] > 0
