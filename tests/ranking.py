"""Tests rank through the one pipeline evaluation and serving use (no second top-k path)."""

from __future__ import annotations

import numpy as np

from personarec.data.splits import UserSequences
from personarec.recommend.base import Recommender
from personarec.recommend.pipeline import RankingPipeline


def top(model: Recommender, users, history: UserSequences, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items and scores per user, as the evaluation harness ranks them."""
    return RankingPipeline(model).top(np.asarray(users, dtype=np.int64), history, k, exclude_seen=exclude_seen)
