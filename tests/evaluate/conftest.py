"""A tiny hand-checkable evaluation world (6 items, 4 users) and helpers shared by the tests."""

from __future__ import annotations

import numpy as np
import pytest

from personarec.data.splits import UserSequences
from personarec.evaluate.metrics.base import EvalData
from personarec.items.space import ItemSpace


def seqs(rows: list[list[int]]) -> UserSequences:
    lengths = [len(r) for r in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([i for r in rows for i in r], dtype=np.int32)
    return UserSequences(indptr=indptr, items=items, timestamps=np.arange(len(items), dtype=np.int64))


def tiny_space() -> ItemSpace:
    s = 1 / np.sqrt(2)
    emb = np.array([[1, 0], [0, 1], [1, 0], [s, s], [0, 1], [-1, 0]], dtype=np.float32)
    return ItemSpace(
        item_ids=np.array([f"i{j}" for j in range(6)], dtype=object),
        embeddings=emb,
        fine=np.array([0, 0, 1, 1, 2, 2], dtype=np.int32),
        coarse=np.array([0, 0, 0, 0, 1, 1], dtype=np.int32),
        semantic_ids=np.stack([np.array([0, 0, 1, 1, 2, 2]), np.arange(6)], axis=1).astype(np.int32),
        fine_names=["a", "b", "c"],
        coarse_names=["A", "B"],
        fine_parent=np.array([0, 0, 1], dtype=np.int32),
    )


@pytest.fixture
def tiny() -> tuple[EvalData, np.ndarray, np.ndarray]:
    """History u0:[0,1] u1:[0,2] u2:[0] u3:[1]; targets u0:{3} u1:{1,4} u2:{5}; recs below."""
    data = EvalData(
        n_items=6,
        history=seqs([[0, 1], [0, 2], [0], [1]]),
        targets=seqs([[3], [1, 4], [5], []]),
        ks=(1, 3),
        items=tiny_space(),
    )
    users = np.array([0, 1, 2])
    recs = np.array([[2, 3, 4], [1, 3, 4], [1, 2, 3]])
    return data, users, recs
