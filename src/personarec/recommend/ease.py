"""EASE (Steck, WWW 2019): a shallow linear item-item autoencoder with a closed-form solution.

``B = I - P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹``, so ``diag(B) = 0`` (an item may not
predict itself). Dense ``n_items²``: fine up to a few 10^4 items, the usual EASE limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import scipy.linalg
from pydantic import Field

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError
from personarec.recommend.base import FitContext, Recommender, RecommenderConfig, history_matrix, register, train_matrix


class EASEConfig(RecommenderConfig):
    l2: float = Field(500.0, gt=0, description="L2 regularisation λ added to the Gram matrix diagonal")
    max_items: int = Field(40_000, ge=1, description="refuse larger catalogues (dense n_items² matrix)")


@register
class EASE(Recommender):
    name = "ease"
    config_class = EASEConfig

    def __init__(self, config: EASEConfig | None = None) -> None:
        super().__init__(config)
        self.weights: np.ndarray = np.zeros((0, 0), dtype=np.float32)

    def _fit(self, split: Split, ctx: FitContext) -> Self:
        cfg: EASEConfig = self.config  # type: ignore[assignment]
        self.n_items = split.n_items
        if self.n_items > cfg.max_items:
            raise ConfigError(f"EASE needs a dense {self.n_items}² matrix; raise ease.max_items or use itemknn")
        x = train_matrix(split)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += cfg.l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices_from(b)] = 0.0
        # row-major: scoring adds one row of B per history item; the Gram matrix of a CSC product
        # comes out column-major, and a sparse x column-major product is ~100x slower (Sports: 12 s
        # instead of 0.1 s per 512 users)
        self.weights = np.ascontiguousarray(b, dtype=np.float32)
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        h = history_matrix(users, history, self.n_items)
        return np.asarray(h @ self.weights, dtype=np.float32)

    def _save_state(self, directory: Path) -> None:
        np.save(directory / "weights.npy", self.weights)

    def _load_state(self, directory: Path) -> None:
        self.weights = np.ascontiguousarray(np.load(directory / "weights.npy"))  # files saved column-major too
