"""Tiny datasets for the general (collaborative-filtering) models.

``markov`` (from conftest): each user holds a contiguous stretch of one item cycle, so items near a user's stretch
are what similar users hold: a collaborative model reaches a high Hit@10.
``random_distinct``: each user draws 12 *distinct* items uniformly. (The conftest ``random`` data repeats items
within a user; RecBole never masks a test item that is also in the training history, so a model that reconstructs
its input legitimately hits those repeats, about 15% of users, and sits well above 10/60 there.) Here no model can
beat chance: 10 of the ~49 unmasked candidates, Hit@10 ~ 0.20.
``no_time``: the markov data without a timestamp column.
"""

from pathlib import Path

import numpy as np

from tests.conftest import N_ITEMS, N_USERS, SEQUENCE_LENGTH

RANDOM_DISTINCT_CHANCE = 10 / (N_ITEMS - (SEQUENCE_LENGTH - 1))


def random_distinct_sequences(seed=0):
    rng = np.random.default_rng(seed)
    return {user: rng.choice(N_ITEMS, size=SEQUENCE_LENGTH, replace=False).tolist() for user in range(N_USERS)}


def write_untimed_inter(folder, name, sequences):
    """Like ``write_atomic_inter`` but with no timestamp column."""
    dataset_dir = Path(folder) / name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token"] + [
        f"u{user}\ti{item}" for user, items in sequences.items() for item in items
    ]
    (dataset_dir / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return dataset_dir
