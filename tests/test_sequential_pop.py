"""SequentialPop, the popularity floor of sequential comparisons: its scores are the training-target counts of the
raw sequences, it fits in one epoch, reloads weights-only, and ranks the same through the plugin and plain RecBole."""

import numpy as np
import torch
from recbole.config import Config as RecBoleConfig
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.trainer import TraditionalTrainer, Trainer
from recbole.utils import init_seed

from recbole_diffusion import get_model, get_trainer, resources, run_recbole_diffusion
from tests.conftest import build_model, random_sequences


def expected_target_counts(dataset, sequences):
    """Training-target counts by RecBole item id, from the raw sequences: under leave-one-out every item of a user
    but the first (never a target) and the last two (validation and test targets)."""
    counts = np.zeros(dataset.item_num)
    for items in sequences.values():
        for item in items[1:-2]:
            counts[dataset.token2id(dataset.iid_field, f"i{item}")] += 1
    return counts


def test_scores_are_the_training_target_counts_for_every_history(tiny_config):
    _, model, train_data, _, test_data = build_model("SequentialPop", tiny_config, dataset="random")
    expected = expected_target_counts(train_data._dataset, random_sequences())
    np.testing.assert_array_equal(model.target_count.numpy(), expected)
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert (scores[:, 0] == -torch.inf).all()  # the padding item is never recommended
    assert (scores == scores[0]).all()  # the same ranking for every history
    ranking = scores[0].argsort(descending=True)[:-1].numpy()
    assert (np.diff(expected[ranking]) <= 0).all()  # by decreasing training-target count
    items = batch[model.ITEM_ID]
    assert torch.equal(model.predict(batch), torch.as_tensor(expected, dtype=torch.float)[items])


def test_fits_in_one_epoch_reloads_weights_only_and_recommends_the_most_frequent_target_first(tiny_config):
    """With eval_step > epochs the one-epoch trainer still validates and saves (the plugin's TraditionalTrainer
    repair). HR@1 is the share of users whose test item is the most frequent training target."""
    config_dict = {**tiny_config, "epochs": 3, "eval_step": 5, "topk": [1, 10], "valid_metric": "Hit@1"}
    config, model, train_data, valid_data, test_data = build_model("SequentialPop", config_dict, dataset="random")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert isinstance(trainer, TraditionalTrainer) and trainer.epochs == 1
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)

    sequences = random_sequences()
    expected = expected_target_counts(train_data._dataset, sequences)
    second, first = np.sort(expected)[-2:]
    assert first > second  # a unique most frequent target in this data
    top_item = train_data._dataset.id2token(train_data._dataset.iid_field, int(expected.argmax()))
    assert model.full_sort_predict(next(iter(test_data))[0])[0].argmax() == int(expected.argmax())
    test_items = [f"i{items[-1]}" for items in sequences.values()]
    assert result["hit@1"] == round(np.mean([item == top_item for item in test_items]), 4)

    reloaded = get_model("SequentialPop")(config, train_data._dataset)
    reloaded.target_count.zero_()
    reloaded.load_state_dict(torch.load(trainer.saved_model_file, weights_only=True)["state_dict"])
    assert torch.equal(reloaded.target_count, model.target_count)


def test_plugin_run_and_plain_recbole_give_the_same_test_result(tiny_config):
    """The README recipe: RecBole's own Config (with the model yaml), data preparation and Trainer."""
    plugin = run_recbole_diffusion("SequentialPop", "random", config_dict=dict(tiny_config))
    model_class = get_model("SequentialPop")
    config = RecBoleConfig(
        model=model_class,
        dataset="random",
        config_file_list=[str(resources.model_yaml("SequentialPop"))],
        config_dict=dict(tiny_config),
    )
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = recbole_data_preparation(config, recbole_create_dataset(config))
    trainer = Trainer(config, model_class(config, train_data._dataset))
    trainer.fit(train_data, valid_data)
    assert trainer.evaluate(test_data, load_best_model=True) == plugin["test_result"]
    assert 0 < plugin["test_result"]["hit@10"] < 1
