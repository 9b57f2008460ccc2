"""ItemKNN: cosine item-item similarity with shrinkage, sparse, top-N neighbours per item.

``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|·|U_j|) + shrink)``; a user's score for item ``j`` is the sum
of ``sim(i, j)`` over the items ``i`` in their history. Only each item's ``neighbours`` strongest
similarities are kept, so the model is a sparse matrix and scoring is one sparse product. The
co-occurrence block is computed a column chunk at a time, so memory stays ``O(n_items · chunk)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from personarec.data.splits import Split, UserSequences
from personarec.recommend.base import FitContext, Recommender, RecommenderConfig, history_matrix, register, train_matrix


class ItemKNNConfig(RecommenderConfig):
    neighbours: int = Field(100, ge=1, description="similarities kept per item (top-N)")
    shrink: float = Field(10.0, ge=0, description="shrinkage added to the cosine denominator")
    chunk: int = Field(2048, ge=1, description="items per block when computing similarities")


@register
class ItemKNN(Recommender):
    name = "itemknn"
    config_class = ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        super().__init__(config)
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, split: Split, ctx: FitContext) -> Self:
        cfg: ItemKNNConfig = self.config  # type: ignore[assignment]
        self.n_items = split.n_items
        x = train_matrix(split).tocsc()
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
        k = min(cfg.neighbours, max(self.n_items - 1, 1))
        rows, cols, vals = [], [], []
        for start in range(0, self.n_items, cfg.chunk):
            stop = min(start + cfg.chunk, self.n_items)
            co = (xt @ x[:, start:stop]).toarray().astype(np.float32)  # [n_items, chunk]
            sim = co / (np.outer(norms, norms[start:stop]) + cfg.shrink + 1e-12)
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0  # an item is not its own neighbour
            top = np.argpartition(-sim, k - 1, axis=0)[:k]  # [k, chunk] strongest neighbours i of each j
            top_vals = np.take_along_axis(sim, top, axis=0)
            keep = top_vals > 0
            rows.append(top[keep])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[keep])
            vals.append(top_vals[keep])
        self.similarity = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.n_items, self.n_items), dtype=np.float32,
        )
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        h = history_matrix(users, history, self.n_items)
        return np.asarray((h @ self.similarity).toarray(), dtype=np.float32)

    def _save_state(self, directory: Path) -> None:
        sp.save_npz(directory / "similarity.npz", self.similarity)

    def _load_state(self, directory: Path) -> None:
        self.similarity = sp.load_npz(directory / "similarity.npz").tocsr()
