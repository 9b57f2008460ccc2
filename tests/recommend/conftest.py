"""A tiny hand-made split: models can be checked against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from personarec.data.protocol import ProtocolCard
from personarec.data.records import Catalogue
from personarec.data.splits import Split


def make_split(train: list[list[int]], valid: list[list[int]], test: list[list[int]], n_items: int) -> Split:
    """Build a :class:`Split` from per-user item lists (index order = time order)."""

    def frame(seqs: list[list[int]], t0: int) -> pl.DataFrame:
        rows = [(u, i, t0 + t) for u, seq in enumerate(seqs) for t, i in enumerate(seq)]
        return pl.DataFrame(
            {
                "user_idx": np.array([r[0] for r in rows], dtype=np.int32),
                "item_idx": np.array([r[1] for r in rows], dtype=np.int32),
                "timestamp": np.array([r[2] for r in rows], dtype=np.int64),
                "rating": np.ones(len(rows), dtype=np.float32),
            },
            schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "timestamp": pl.Int64, "rating": pl.Float32},
        )

    item_ids = np.array([str(i) for i in range(n_items)], dtype=object)
    card = ProtocolCard(dataset="hand-made", split="leave-one-out", n_users=len(train), n_items=n_items)
    return Split(
        user_ids=np.array([f"u{u}" for u in range(len(train))], dtype=object),
        item_ids=item_ids,
        catalogue=Catalogue.from_frame(pl.DataFrame({"item_id": item_ids.tolist()})),
        train=frame(train, 0),
        valid=frame(valid, 1000),
        test=frame(test, 2000),
        protocol=card,
    )


@pytest.fixture
def tiny_split() -> Split:
    """5 users, 6 items. Item 0 is the most popular (4 users), then 1 (3), 2 (2).
    Items 3 and 4 always co-occur; item 5 appears once."""
    train = [
        [0, 1, 3, 4],
        [0, 1, 2],
        [0, 3, 4],
        [0, 2, 5],
        [1, 3],
    ]
    valid = [[2], [3], [1], [1], [4]]
    test = [[5], [4], [2], [3], [0]]
    return make_split(train, valid, test, n_items=6)


def cyclic_split(n_users: int = 120, n_items: int = 20, length: int = 12, seed: int = 0) -> Split:
    """Every user walks the cycle i -> i+1 (mod n_items) from a random start: the next item is a
    function of the last one, which popularity (uniform here) cannot know."""
    rng = np.random.default_rng(seed)
    train, valid, test = [], [], []
    for _ in range(n_users):
        start = int(rng.integers(n_items))
        walk = [(start + t) % n_items for t in range(length + 2)]
        train.append(walk[:length])
        valid.append([walk[length]])
        test.append([walk[length + 1]])
    return make_split(train, valid, test, n_items)
