"""Novelty: how unknown the recommended items are, as mean self-information.

``novelty@k`` = mean over a user's top k of ``-log2 p(i)``, where ``p(i)`` is the share of users
who interacted with ``i`` in the history the models saw for this stage (never the held-out
events). An item nobody interacted with counts as seen by one user: the most novel value the data
can support, and finite. Popular items score near 0; an item seen by 1 of 1,024 users scores 10.
"""

from __future__ import annotations

import numpy as np

from personarec.evaluate.metrics.base import EvalData, Metric, UserBatch, at, register


def self_information(popularity: np.ndarray, n_users: int) -> np.ndarray:
    """``-log2(max(count, 1) / n_users)`` per item."""
    n = max(int(n_users), 1)
    return -np.log2(np.maximum(popularity, 1) / n)


def novelty_at_k(recs: np.ndarray, info: np.ndarray, k: int) -> np.ndarray:
    return info[recs[:, :k]].mean(axis=1)


@register
class Novelty(Metric):
    name = "novelty"

    def _info(self, data: EvalData) -> np.ndarray:
        # cached on the data object's identity: the same array serves every batch and model
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] is not data:
            cache = (data, self_information(data.popularity, max(data.n_history_users, 1)))
            self._cache = cache
        return cache[1]

    def per_user(self, batch: UserBatch) -> dict[str, np.ndarray]:
        info = self._info(batch.data)
        return {at("novelty", k): novelty_at_k(batch.recs, info, batch.cut(k)) for k in batch.data.ks}
