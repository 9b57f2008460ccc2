"""Serendipity: relevant recommendations that an obvious recommender would not have made.

An item is *unexpected* for a user when it is neither among the ``popular_n`` most popular items
of the history (the "primitive" popularity list of Ge et al., 2010) nor in a cluster the user's
own history already touches (``ItemSpace.fine`` or ``.coarse``). Then

``serendipity@k = |{j < k : hit_j and unexpected_j}| / |T|``

i.e. the share of the user's held-out targets that the list found *and* that were unexpected.
Normalised like recall (not by k, as Ge et al. do) so that ``serendipity@k <= recall@k`` and
the two read on the same scale under leave-one-out.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from personarec.evaluate.metrics.base import ClusterLevel, EvalData, Metric, MetricConfig, UserBatch, at, register


def popular_items(popularity: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` most popular items (ties broken by the lower item index)."""
    order = np.argsort(-popularity, kind="stable")
    return order[: min(n, len(order))]


def serendipity_at_k(
    hits: np.ndarray, unexpected: np.ndarray, n_relevant: np.ndarray, k: int
) -> np.ndarray:
    return (hits[:, :k] & unexpected[:, :k]).sum(axis=1) / np.maximum(n_relevant, 1)


class SerendipityConfig(MetricConfig):
    popular_n: int = Field(100, ge=0, description="size of the popularity list whose items are 'expected'")
    level: ClusterLevel = Field("fine", description="cluster level of the user's history that is 'expected'")


@register
class Serendipity(Metric):
    name = "serendipity"
    config_class = SerendipityConfig
    requires_items = True

    def _popular_mask(self, data: EvalData) -> np.ndarray:
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] is not data:
            mask = np.zeros(data.n_items, dtype=bool)
            mask[popular_items(data.popularity, self.config.popular_n)] = True
            cache = (data, mask)
            self._cache = cache
        return cache[1]

    def per_user(self, batch: UserBatch) -> dict[str, np.ndarray]:
        unexpected = ~self._popular_mask(batch.data)[batch.recs] & ~batch.in_history_clusters(self.config.level)
        return {
            at("serendipity", k): serendipity_at_k(batch.hits, unexpected, batch.n_relevant, batch.cut(k))
            for k in batch.data.ks
        }
