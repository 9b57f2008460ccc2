"""MostPopular: every user gets the items with the most training events.

The floor every other model must beat; also the "popularity list" the serendipity metric uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np

from personarec.data.splits import Split, UserSequences
from personarec.recommend.base import FitContext, Recommender, RecommenderConfig, register


class MostPopularConfig(RecommenderConfig):
    """No knobs: popularity is counted on ``split.train``."""


@register
class MostPopular(Recommender):
    name = "popular"
    config_class = MostPopularConfig

    def __init__(self, config: MostPopularConfig | None = None) -> None:
        super().__init__(config)
        self.counts: np.ndarray = np.zeros(0, dtype=np.float32)

    def _fit(self, split: Split, ctx: FitContext) -> Self:
        self.n_items = split.n_items
        items = split.train["item_idx"].to_numpy()
        self.counts = np.bincount(items, minlength=self.n_items).astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), self.n_items)).copy()

    def _save_state(self, directory: Path) -> None:
        np.save(directory / "counts.npy", self.counts)

    def _load_state(self, directory: Path) -> None:
        self.counts = np.load(directory / "counts.npy")
