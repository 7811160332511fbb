"""DiffuASR: stage 1 (diffusion generator) on the training split only, the augmented atomic files, and the backbone
trained on them through the quick start."""

from pathlib import Path

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_diffusion import (
    Config,
    create_dataset,
    data_preparation,
    diffuasr_augment,
    get_model,
    run_recbole_diffusion,
)
from recbole_diffusion.model.sequential_recommender import diffuasr
from tests.conftest import build_model, count_calls_in_full_sort, random_sequences, write_atomic_inter

DIFFUASR_SMALL = {
    "hidden_size": 16,  # 4 x 4 maps; also the backbone's (SASRec) hidden size
    "unet_channel_mult": [1, 2, 2],
    "aug_num": 3,
    "aug_epochs": 3,
    "diffusion_steps": 100,
}
BACKBONE_EPOCHS = 3  # SASRec (16 dims) reaches HR@10 > 0.8 on the markov data


def split_data(config_dict, dataset="markov", data_path=None):
    config = Config(model="DiffuASR", dataset=dataset, config_dict=config_dict)
    if data_path:
        config["data_path"] = str(Path(data_path) / dataset)
    data = create_dataset(config)
    return config, data, *data_preparation(config, data)


def targets_by_user(data, split_data_loader):
    """``{user token: target item token}`` of a valid or test split, and the last history item."""
    feat = split_data_loader._dataset.inter_feat
    users = data.id2token(data.uid_field, feat[data.uid_field].numpy())
    targets = data.id2token(data.iid_field, feat[data.iid_field].numpy())
    lengths = feat[data.item_list_length_field].numpy()
    last = data.id2token(data.iid_field, feat[data.item_id_list_field].numpy()[range(len(lengths)), lengths - 1])
    return {user: (target, last_item) for user, target, last_item in zip(users, targets, last)}


def test_stage_one_trains_and_generates_valid_items(tiny_config):
    config, model, train_data, valid_data, test_data = build_model("DiffuASR", {**tiny_config, **DIFFUASR_SMALL})
    sequences = diffuasr_augment.user_sequences(train_data._dataset, valid_data._dataset, test_data._dataset)
    assert len(sequences) == 300
    assert all(len(train) == 10 and len(heldout) == 2 for train, heldout in sequences.values())
    before = [parameter.detach().clone() for parameter in model.unet.parameters()]
    diffuasr_augment.fit_generator(model, [train for train, _ in sequences.values()], config)
    assert any(not torch.equal(old, new) for old, new in zip(before, model.unet.parameters()))
    pseudo_items = torch.tensor(diffuasr_augment.augment(model, [train for train, _ in sequences.values()], 128))
    assert pseudo_items.shape == (300, 3)
    assert ((pseudo_items >= 1) & (pseudo_items < train_data._dataset.item_num)).all()
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), train_data._dataset.item_num)
    assert (scores[:, 0] == -torch.inf).all()  # the padding item is never generated
    assert scores[:, 1:].abs().max() <= 1 + 1e-5  # cosine rounding


def test_save_load_gives_identical_scores(tiny_config, tmp_path):
    config, model, train_data, _, test_data = build_model("DiffuASR", {**tiny_config, **DIFFUASR_SMALL})
    torch.save(model.state_dict(), tmp_path / "generator.pth")
    reloaded = get_model("DiffuASR")(config, train_data._dataset)
    reloaded.load_state_dict(torch.load(tmp_path / "generator.pth", weights_only=True))
    model.eval()
    reloaded.eval()
    batch = next(iter(test_data))[0]
    torch.manual_seed(7)
    original_scores = model.full_sort_predict(batch)
    torch.manual_seed(7)
    assert torch.equal(original_scores, reloaded.full_sort_predict(batch))


def test_augmentation_keeps_valid_and_test_targets(tiny_config):
    config, data, train_data, valid_data, test_data = split_data({**tiny_config, **DIFFUASR_SMALL})
    stage_two = diffuasr.DiffuASR.prepare_stage_two(config, data, train_data, valid_data, test_data)
    assert stage_two["model"] == "SASRec"
    assert stage_two["summary"]["augmented_sequences"] == 300
    assert stage_two["summary"]["augmented_items"] == 300 * 3
    backbone_config = Config(model="SASRec", dataset="markov", config_dict={**tiny_config, **DIFFUASR_SMALL})
    backbone_config["data_path"] = str(Path(stage_two["data_path"]) / "markov")
    augmented = create_dataset(backbone_config)
    aug_train, aug_valid, aug_test = data_preparation(backbone_config, augmented)
    # Same users, same valid / test targets and the same last history items.
    assert targets_by_user(augmented, aug_valid) == targets_by_user(data, valid_data)
    assert targets_by_user(augmented, aug_test) == targets_by_user(data, test_data)
    # Every training sequence is the M pseudo items followed by the user's own training items.
    original = diffuasr_augment.user_sequences(train_data._dataset, valid_data._dataset, test_data._dataset)
    grown = diffuasr_augment.user_sequences(aug_train._dataset, aug_valid._dataset, aug_test._dataset)
    for user, (train, _) in original.items():
        user_token = data.id2token(data.uid_field, user)
        aug_train_items = grown[augmented.token2id(augmented.uid_field, user_token)][0]
        assert list(augmented.id2token(augmented.iid_field, aug_train_items[3:])) == list(
            data.id2token(data.iid_field, train)
        )


def test_generation_never_sees_held_out_items(tiny_config, tmp_path):
    """Changing the valid and test items of most users leaves stage 1 (trained weights, generated items) unchanged."""
    sequences = random_sequences()
    changed = {
        user: items[:-2] + ([(items[-2] + 7) % 60, (items[-1] + 13) % 60] if user >= 100 else items[-2:])
        for user, items in sequences.items()
    }
    write_atomic_inter(tmp_path, "random", changed)
    runs = []
    for data_path in (None, tmp_path):
        config_dict = {**tiny_config, **DIFFUASR_SMALL, "checkpoint_dir": str(tmp_path / f"saved{len(runs)}")}
        config, data, train_data, valid_data, test_data = split_data(config_dict, "random", data_path)
        stage_two = diffuasr.DiffuASR.prepare_stage_two(config, data, train_data, valid_data, test_data)
        lines = (Path(stage_two["data_path"]) / "random" / "random.inter").read_text().splitlines()[1:]
        pseudo_tokens = [line.split("\t")[:2] for line in lines if float(line.split("\t")[2]) <= 3]
        runs.append((list(data.field2id_token[data.iid_field]), targets_by_user(data, test_data), pseudo_tokens))
    (items, test_targets, pseudo_tokens), (changed_items, changed_test_targets, changed_pseudo_tokens) = runs
    assert changed_items == items  # the same item ids in both datasets
    assert changed_test_targets != test_targets
    assert changed_pseudo_tokens == pseudo_tokens


def test_backbone_learns_markov_pattern_and_stays_at_chance_on_random(tiny_config):
    config = {**tiny_config, **DIFFUASR_SMALL, "epochs": BACKBONE_EPOCHS}
    markov = run_recbole_diffusion("DiffuASR", "markov", config_dict=dict(config), saved=False)
    noise = run_recbole_diffusion("DiffuASR", "random", config_dict=dict(config), saved=False)
    assert markov["test_result"]["hit@10"] > 0.8
    # Chance is 10 / N_ITEMS = 0.167 with std ~0.022 over 300 test users; 0.27 is over four std above it.
    assert noise["test_result"]["hit@10"] < 0.27
    assert markov["augmented_sequences"] == 300 and markov["augmented_items"] == 900


def test_same_seed_same_results_and_reuse_of_saved_augmentation(tiny_config, tmp_path, monkeypatch):
    config = {**tiny_config, **DIFFUASR_SMALL, "augmented_data_path": str(tmp_path / "augmented")}
    first = run_recbole_diffusion("DiffuASR", "markov", config_dict=dict(config), saved=False)
    first_file = (tmp_path / "augmented" / "markov" / "markov.inter").read_text()
    other_seed = run_recbole_diffusion(
        "DiffuASR", "markov", config_dict={**config, "seed": 7, "augmented_data_path": None}, saved=False
    )
    other_file = (Path(other_seed["augmented_data_path"]) / "markov" / "markov.inter").read_text()
    assert other_file != first_file
    assert other_seed["best_valid_result"] != first["best_valid_result"]

    def no_stage_one(*args):
        raise AssertionError("stage 1 ran although the augmented data exist")

    monkeypatch.setattr(diffuasr_augment, "fit_generator", no_stage_one)
    reused = run_recbole_diffusion("DiffuASR", "markov", config_dict=dict(config), saved=False)
    assert reused["test_result"] == first["test_result"]
    assert reused["best_valid_result"] == first["best_valid_result"]
    assert reused["augmented_items"] == first["augmented_items"] == 900


def test_cf_training_official_loss_is_on_the_guided_combination_dropout_loss_on_dropped_guidance(tiny_config):
    """official: the loss moves with the guidance weight, not with p_uncond, and trains the null guidance; dropout:
    the reverse. With w = 0 (official) or p_uncond = 0 (dropout) both are the plain conditional loss."""
    _, model, train_data, valid_data, test_data = build_model("DiffuASR", {**tiny_config, **DIFFUASR_SMALL})
    sequences = diffuasr_augment.user_sequences(train_data._dataset, valid_data._dataset, test_data._dataset)
    pairs = [train for train, _ in sequences.values()][:64]
    batch = Interaction(
        {
            diffuasr_augment.AUG_ITEMS: torch.tensor([items[:3] for items in pairs]),
            model.ITEM_SEQ: torch.tensor([items[3:] for items in pairs]),
        }
    )
    model.eval()  # no U-Net dropout: the losses differ only by the option under test

    def loss(guidance_type="cf", cf_training="official", guidance_weight=1.0, p_uncond=0.1):
        model.guidance_type, model.cf_training = guidance_type, cf_training
        model.guidance_weight, model.p_uncond = guidance_weight, p_uncond
        model.zero_grad()
        torch.manual_seed(3)
        value = model.calculate_loss(batch)
        value.backward()
        return value.item(), model.null_guidance.grad

    conditional, _ = loss(guidance_type="cond")
    official, official_null_grad = loss()
    assert loss(guidance_weight=0.0)[0] == pytest.approx(conditional, rel=1e-6)
    assert loss(guidance_weight=3.0)[0] != pytest.approx(official, rel=1e-3)
    assert loss(p_uncond=0.9)[0] == official
    assert official_null_grad is not None and official_null_grad.abs().sum() > 0
    dropout, _ = loss(cf_training="dropout")
    assert loss(cf_training="dropout", p_uncond=0.0)[0] == pytest.approx(conditional, rel=1e-6)
    assert loss(cf_training="dropout", p_uncond=0.0)[1].abs().sum() == 0  # the null guidance is never used
    assert loss(cf_training="dropout", p_uncond=0.9)[0] != pytest.approx(dropout, rel=1e-3)
    assert loss(cf_training="dropout", guidance_weight=3.0)[0] == dropout


def test_training_timesteps_come_in_antithetic_pairs(tiny_config):
    """As the official DiffusionModel.forward: steps t for the first batch // 2 + 1 rows, T - 1 - t for the rest."""
    _, model, _, _, _ = build_model("DiffuASR", {**tiny_config, **DIFFUASR_SMALL})
    seen = []
    model.unet.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[1].clone()))
    batch_size, steps, first = 7, model.diffusion.num_steps, 7 // 2 + 1
    interaction = Interaction(
        {
            diffuasr_augment.AUG_ITEMS: torch.randint(1, 10, (batch_size, DIFFUASR_SMALL["aug_num"])),
            model.ITEM_SEQ: torch.randint(1, 10, (batch_size, model.max_seq_length)),
        }
    )
    torch.manual_seed(0)
    model.calculate_loss(interaction)
    timesteps = seen[0]  # the conditional U-Net pass; the unconditional one gets the same steps
    assert timesteps.shape == (batch_size,) and torch.equal(seen[1], timesteps)
    assert torch.equal(timesteps[first:], steps - 1 - timesteps[: batch_size - first])
    assert ((timesteps >= 0) & (timesteps < steps)).all()


@pytest.mark.parametrize("cf_training", ["official", "dropout"])
def test_both_cf_trainings_run_both_stages(tiny_config, cf_training):
    config = {**tiny_config, **DIFFUASR_SMALL, "aug_epochs": 1, "epochs": 1, "cf_training": cf_training}
    result = run_recbole_diffusion("DiffuASR", "markov", config_dict=config, saved=False)
    assert result["augmented_sequences"] == 300 and result["augmented_items"] == 900
    assert 0.0 <= result["test_result"]["hit@10"] <= 1.0


@pytest.mark.parametrize("guidance_type, calls_per_step", [("cf", 2), ("cond", 1)])
def test_unet_calls_per_ddim_step(tiny_config, guidance_type, calls_per_step):
    settings = {**tiny_config, **DIFFUASR_SMALL, "guidance_type": guidance_type, "inference_steps": 4}
    _, model, _, _, test_data = build_model("DiffuASR", settings)
    assert count_calls_in_full_sort(model, model.unet, test_data) == calls_per_step * 4


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("hidden_size", 15, "hidden_size"),
        ("unet_channel_mult", [1, 2, 2, 2], "unet_channel_mult"),
        ("unet_channels", 12, "unet_channels"),
        ("guidance_type", "cg", "guidance_type"),
        ("cf_training", "cfg", "cf_training"),
        ("p_uncond", 1.0, "p_uncond"),
        ("aug_num", 0, "aug_num"),
        ("beta_schedule", "foo", "schedule"),
    ],
)
def test_bad_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        build_model("DiffuASR", {**tiny_config, **DIFFUASR_SMALL, key: value})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("backbone", "BPR", "backbone"),
        ("backbone", "DiffuASR", "backbone"),
        ("aug_num", 9, "aug_num"),
        ("eval_args", {"split": {"RS": [0.8, 0.1, 0.1]}}, "leave-one-out"),
    ],
)
def test_bad_stage_two_config_is_rejected(tiny_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        run_recbole_diffusion("DiffuASR", "markov", config_dict={**tiny_config, **DIFFUASR_SMALL, key: value})
