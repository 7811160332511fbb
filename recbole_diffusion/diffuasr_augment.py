"""DiffuASR's two stages around the generator in ``diffuasr.py``: the training split's sequences, the stage-1
training loop, generation of the pseudo items and the augmented atomic files the backbone is trained on."""

import json
import os
from logging import getLogger

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_seed, set_color

from recbole_diffusion.validation import ConfigError

AUG_ITEMS = "aug_item_list"  # interaction field of the M target items of a stage-1 training pair
SUMMARY_FILE = "diffuasr_augmentation.json"


def check_split(config):
    """Stage 1 trains on the training split of a leave-one-out split (``eval_args.split: {LS: ...}``)."""
    split = config["eval_args"]["split"]
    if not isinstance(split, dict) or "LS" not in split:
        raise ConfigError("eval_args.split", "a leave-one-out split {LS: ...}", split)


def prepare_stage_two(model_class, config, dataset, train_data, valid_data, test_data):
    """Stage 1: train on the training split, augment every user, write the atomic files.

    With ``augmented_data_path`` set, files already there are reused (augment once, compare backbones);
    without it, stage 1 always runs and writes under ``checkpoint_dir``. Returns what the quick start needs to
    train the backbone: ``model``, ``data_path``, ``config_overrides`` and a ``summary`` for the result.
    """
    backbone = config["backbone"]
    root = config["augmented_data_path"] or os.path.join(config["checkpoint_dir"], "DiffuASR-augmented")
    inter_file = os.path.join(root, config["dataset"], f"{config['dataset']}.inter")
    logger = getLogger()
    if config["augmented_data_path"] and os.path.isfile(inter_file):
        logger.info(set_color("DiffuASR", "green") + f": reusing the augmented data in {inter_file}")
        with open(os.path.join(root, config["dataset"], SUMMARY_FILE)) as file:
            summary = json.load(file)
    else:
        sequences = user_sequences(train_data._dataset, valid_data._dataset, test_data._dataset)
        init_seed(config["seed"], config["reproducibility"])
        model = model_class(config, train_data._dataset).to(config["device"])
        fit_generator(model, [train for train, _ in sequences.values()], config)
        pseudo_items = augment(model, [train for train, _ in sequences.values()], config["eval_batch_size"])
        summary = write_augmented_inter(dataset, inter_file, sequences, pseudo_items)
    summary = {**summary, "augmented_data_path": root}
    logger.info(
        set_color("DiffuASR", "green") + f": {summary['augmented_sequences']} sequences augmented, "
        f"{summary['augmented_items']} items added; training {backbone} on {inter_file}"
    )
    uid, iid, time = dataset.uid_field, dataset.iid_field, dataset.time_field
    return {
        "model": backbone,
        "data_path": root,
        "config_overrides": {"load_col": {"inter": [uid, iid, time]}},
        "summary": summary,
    }


def user_sequences(train_dataset, valid_dataset, test_dataset):
    """``{user id: (training items, held-out items)}`` in RecBole's chronological order.

    Read from the split datasets of a leave-one-out split: a user's first item is the first item of the history of
    their earliest row; the targets of the training rows follow; the validation and test targets are held out.
    """
    sequences = {}
    for split, split_dataset in enumerate((train_dataset, valid_dataset, test_dataset)):
        feat = split_dataset.inter_feat
        rows = zip(
            feat[split_dataset.uid_field].tolist(),
            feat[split_dataset.item_id_list_field][:, 0].tolist(),
            feat[split_dataset.iid_field].tolist(),
        )
        for user, first_item, target in rows:
            if user not in sequences:
                sequences[user] = ([first_item], [])
            sequences[user][0 if split == 0 else 1].append(target)
    return sequences


def _pad(sequences, length):
    """Left-aligned ``[len(sequences), length]`` tensor of the last ``length`` items of each sequence."""
    padded = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, items in enumerate(sequences):
        tail = items[-length:]
        padded[row, : len(tail)] = torch.tensor(tail, dtype=torch.long)
    return padded


def fit_generator(model, training_sequences, config):
    """Train the stage-1 diffusion model: the first M items of each training sequence of more than M + 2 items (the
    official ``filter_data``) are the target, the rest (its last ``MAX_ITEM_LIST_LENGTH`` items) the guidance."""
    aug_num = model.aug_num
    pairs = [items for items in training_sequences if len(items) > aug_num + 2]
    if not pairs:
        raise ValueError(f"aug_num = {aug_num}: no training sequence has more than aug_num + 2 items; lower aug_num")
    data = Interaction(
        {
            AUG_ITEMS: torch.tensor([items[:aug_num] for items in pairs], dtype=torch.long),
            model.ITEM_SEQ: _pad([items[aug_num:] for items in pairs], model.max_seq_length),
        }
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    batch_size = min(config["train_batch_size"], len(pairs))
    logger = getLogger()
    model.train()
    for epoch in range(config["aug_epochs"]):
        order = torch.randperm(len(pairs))
        losses = []
        for start in range(0, len(pairs) - batch_size + 1, batch_size):  # drop_last, as the official loader
            batch = data[order[start : start + batch_size]].to(config["device"])
            loss = model.calculate_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if epoch % 50 == 0 or epoch == config["aug_epochs"] - 1:
            logger.info(f"DiffuASR stage 1 epoch {epoch}: denoising loss {np.mean(losses):.4f} ({len(pairs)} pairs)")


def augment(model, training_sequences, batch_size):
    """The M pseudo items of every user, generated from their training items only, ``[users, M]``."""
    model.eval()
    device = model.item_embedding.weight.device
    guidance = _pad(training_sequences, model.max_seq_length)
    batches = [
        model.pseudo_items(guidance[start : start + batch_size].to(device)).cpu()
        for start in range(0, len(guidance), batch_size)
    ]
    return torch.cat(batches).tolist()


def write_augmented_inter(dataset, inter_file, sequences, pseudo_items):
    """Write ``pseudo items + the user's items`` as atomic ``.inter`` file with increasing per-user timestamps."""
    uid, iid, time = dataset.uid_field, dataset.iid_field, dataset.time_field
    lines = [f"{uid}:token\t{iid}:token\t{time}:float"]
    for (user, (train, heldout)), pseudo in zip(sequences.items(), pseudo_items):
        user_token = dataset.id2token(uid, user)
        item_tokens = dataset.id2token(iid, pseudo + train + heldout)
        lines += [f"{user_token}\t{item}\t{position}" for position, item in enumerate(item_tokens, start=1)]
    os.makedirs(os.path.dirname(inter_file), exist_ok=True)
    with open(inter_file, "w") as file:
        file.write("\n".join(lines) + "\n")
    summary = {"augmented_sequences": len(pseudo_items), "augmented_items": sum(map(len, pseudo_items))}
    with open(os.path.join(os.path.dirname(inter_file), SUMMARY_FILE), "w") as file:
        json.dump(summary, file)
    return summary
