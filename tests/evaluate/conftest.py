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


# -- a synthetic split and test-only recommenders (real Recommender subclasses, no mocks) ----------
from personarec.data.records import Catalogue, Dataset, Interactions  # noqa: E402
from personarec.data.splits import Split, make_split  # noqa: E402
from personarec.recommend.base import Recommender  # noqa: E402


def synthetic_split(n_users: int = 300, n_items: int = 40, per_user: int = 8, seed: int = 0) -> Split:
    import polars as pl

    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)  # a long tail, so popularity means something
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False, p=pop / pop.sum())
        for t, i in enumerate(items):
            rows.append((f"u{u:04d}", f"i{i:03d}", 1000 + t, 4.0))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "rating"], orient="row")
    cat = pl.DataFrame({"item_id": [f"i{i:03d}" for i in range(n_items)], "title": [f"item {i}" for i in range(n_items)]})
    ds = Dataset("synthetic", Interactions.from_frame(frame), Catalogue.from_frame(cat), {"events.csv": "0" * 64})
    return make_split(ds)


def synthetic_space(split: Split, n_fine: int = 4, seed: int = 0) -> ItemSpace:
    rng = np.random.default_rng(seed)
    n = split.n_items
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    fine = (np.arange(n) % n_fine).astype(np.int32)
    return ItemSpace(
        item_ids=split.item_ids, embeddings=emb, fine=fine, coarse=(fine // 2).astype(np.int32),
        semantic_ids=np.stack([fine, np.arange(n)], axis=1).astype(np.int32),
        fine_names=[f"cluster {c}" for c in range(n_fine)], coarse_names=[f"group {c}" for c in range((n_fine + 1) // 2)],
        fine_parent=(np.arange(n_fine) // 2).astype(np.int32),
    )  # fmt: skip


class TableRecommender(Recommender):
    """Scores read from a fixed ``[n_users, n_items]`` table: deterministic per user, batch-independent."""

    name = "table-test"

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = table.astype(np.float32)
        self.n_items = table.shape[1]

    def _fit(self, split, ctx):
        return self

    def score(self, users, history):
        return self.table[users].copy()


def random_model(split: Split, seed: int) -> TableRecommender:
    return TableRecommender(np.random.default_rng(seed).random((split.n_users, split.n_items)))


def oracle_model(split: Split, share: float, seed: int, stage: str = "test") -> TableRecommender:
    """Random, except that for a ``share`` of users the held-out target is ranked first."""
    rng = np.random.default_rng(seed)
    table = rng.random((split.n_users, split.n_items))
    targets = split.targets(stage)
    for u in np.flatnonzero(rng.random(split.n_users) < share):
        table[u, targets[u]] = 10.0
    return TableRecommender(table)


@pytest.fixture(scope="module")
def split() -> Split:
    return synthetic_split()


@pytest.fixture(scope="module")
def space(split) -> ItemSpace:
    return synthetic_space(split)
