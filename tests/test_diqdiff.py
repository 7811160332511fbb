"""DiQDiff end to end on tiny synthetic data, plus its codebook (SVQ) and discrepancy loss (CDM)."""

import pytest
import torch
from recbole.utils import init_seed

from recbole_diffusion import Config, create_dataset, data_preparation, get_model, get_trainer, run_recbole_diffusion
from tests.conftest import N_ITEMS

DIQDIFF_SMALL = {
    "hidden_size": 32,
    "inner_size": 64,
    "n_layers": 1,
    "n_heads": 2,
    "num_codes": 4,
    "diffusion_steps": 8,
    "learning_rate": 0.005,
}


def build(config_dict, dataset="markov"):
    config = Config(model="DiQDiff", dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("DiQDiff")(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def test_one_epoch_and_full_sort(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIQDIFF_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    result = trainer.evaluate(test_data, load_best_model=True)
    assert set(result) == {"hit@10", "ndcg@10"}
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), test_data._dataset.item_num)
    assert torch.isfinite(scores[:, 1:]).all() and (scores[:, 0] == -torch.inf).all()  # padding never recommended
    assert model.codebook.abs().sum() > 0  # training filled the codebook


def test_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config):
    config = {**tiny_config, **DIQDIFF_SMALL, "epochs": 5}
    markov = run_recbole_diffusion("DiQDiff", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DiQDiff", "random", config_dict=dict(config), saved=False)
    assert markov["test_result"]["hit@10"] > 0.8
    # 300 test users: chance 10 / N_ITEMS = 0.167, std ~0.022; 0.27 is more than four standard deviations above.
    assert noise["test_result"]["hit@10"] < 0.27 and N_ITEMS == 60


def test_codebook_update_is_mean_of_assigned_sequences(tiny_config):
    _, model, *_ = build({**tiny_config, **DIQDIFF_SMALL})
    codes, size = model.codebook.shape[0], model.codebook[0].numel()
    model.codebook.fill_(7.0)
    histories = torch.arange(4 * size, dtype=torch.float).view(4, size)
    assignment = torch.zeros(4, codes)
    assignment[[0, 1, 2, 3], [0, 2, 0, 0]] = 1.0  # code 0: histories 0, 2, 3; code 2: history 1; codes 1, 3 unused
    codebook = model.update_codebook(histories, assignment).flatten(1)
    assert torch.allclose(codebook[0], histories[[0, 2, 3]].mean(dim=0))
    assert torch.equal(codebook[2], histories[1])
    assert (codebook[[1, 3]] == 7.0).all()  # an unused code keeps its value
    assert torch.equal(model.codebook.flatten(1), codebook)  # stored for evaluation


def test_quantize_picks_one_code_and_evaluation_ignores_the_rest_of_the_batch(tiny_config):
    _, model, _, _, test_data = build({**tiny_config, **DIQDIFF_SMALL})
    history = torch.randn(16, model.max_seq_length, model.hidden_size)
    model.train()
    codes = model.quantize(history)  # each training history gets the mean of the histories sharing its code
    assert all(any(torch.allclose(code, c) for c in model.codebook) for code in codes)
    assert len({tuple(code.flatten().tolist()) for code in codes}) <= model.num_codes
    model.eval()
    batch = next(iter(test_data))[0]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    _, whole = model.forward(item_seq, item_seq_len)
    _, part = model.forward(item_seq[:5], item_seq_len[:5])
    assert torch.equal(whole[:5], part)


def test_discrepancy_loss_falls_when_generated_items_are_pushed_apart(tiny_config):
    _, model, *_ = build({**tiny_config, **DIQDIFF_SMALL})
    torch.manual_seed(0)
    close = torch.randn(1, 32) + 0.05 * torch.randn(8, 32)  # eight nearly identical generated items
    assert model.discrepancy_loss(torch.eye(8, 32)) < model.discrepancy_loss(close)
    generated = close.clone().requires_grad_(True)
    losses = []
    for _ in range(20):  # gradient descent on L_c alone
        loss = model.discrepancy_loss(generated)
        losses.append(loss.item())
        (gradient,) = torch.autograd.grad(loss, generated)
        generated = (generated - 5.0 * gradient).detach().requires_grad_(True)
    assert losses[-1] < 0.1 * losses[0]
    assert mean_cosine(generated.detach()) < 0.8 < 0.95 < mean_cosine(close)  # the items were pushed apart


def mean_cosine(vectors):
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    return ((unit @ unit.t()).sum() - len(unit)) / (len(unit) * (len(unit) - 1))


def test_align_right_moves_histories_to_the_end():
    from recbole_diffusion.model.sequential_recommender.diqdiff import align_right

    item_seq = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]])
    aligned = align_right(item_seq, torch.tensor([3, 5, 1]))
    assert aligned.tolist() == [[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]]


def test_ddim_inference_steps(tiny_config):
    _, model, _, _, test_data = build({**tiny_config, **DIQDIFF_SMALL, "inference_steps": 3})
    model.eval()
    batch = next(iter(test_data))[0]
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    model.full_sort_predict(batch)
    assert len(calls) == 3  # one denoiser call per DDIM step (no classifier-free guidance)


def test_save_load_gives_identical_scores(tiny_config):
    config, model, train_data, valid_data, test_data = build({**tiny_config, **DIQDIFF_SMALL})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    reloaded = get_model("DiQDiff")(config, train_data._dataset)
    reloaded.load_state_dict(checkpoint["state_dict"])
    model.eval()
    reloaded.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(7)
    original_scores = model.full_sort_predict(batch)
    torch.manual_seed(7)
    reloaded_scores = reloaded.full_sort_predict(batch)
    assert torch.equal(original_scores, reloaded_scores)


def test_same_seed_same_metrics(tiny_config):
    config = {**tiny_config, **DIQDIFF_SMALL, "epochs": 2}
    first = run_recbole_diffusion("DiQDiff", "markov", config_dict=dict(config), saved=False)
    second = run_recbole_diffusion("DiQDiff", "markov", config_dict=dict(config), saved=False)
    other_seed = run_recbole_diffusion("DiQDiff", "markov", config_dict={**config, "seed": 7}, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    assert other_seed["best_valid_result"] != first["best_valid_result"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("num_codes", 0, "num_codes"),
        ("gumbel_temperature", 0.0, "gumbel_temperature"),
        ("contrast_temperature", -1.0, "contrast_temperature"),
        ("lambda_contrast", -0.1, "lambda_contrast"),
        ("emb_dropout_prob", 1.0, "emb_dropout_prob"),
        ("inference_steps", 0, "inference_steps"),
        ("beta_schedule", "foo", "schedule"),
    ],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build({**tiny_config, **DIQDIFF_SMALL, key: value})
