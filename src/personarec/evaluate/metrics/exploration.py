"""Exploration rate: how much of a list leaves the regions the user already knows.

``exploration@k`` = share of a user's top k whose cluster (``ItemSpace.fine`` by default) does not
occur in the user's history. 0 = pure exploitation of known interests; a user without history
explores with every item (1). It says nothing about whether exploring paid off: read it next to
``serendipity@k``, which counts only the exploring items that were relevant.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from personarec.evaluate.metrics.base import ClusterLevel, Metric, MetricConfig, UserBatch, at, register


def exploration_at_k(in_history: np.ndarray, k: int) -> np.ndarray:
    return 1.0 - in_history[:, :k].mean(axis=1)


class ExplorationConfig(MetricConfig):
    level: ClusterLevel = Field("fine", description="cluster level that defines 'outside the history'")


@register
class Exploration(Metric):
    name = "exploration"
    config_class = ExplorationConfig
    requires_items = True

    def per_user(self, batch: UserBatch) -> dict[str, np.ndarray]:
        in_history = batch.in_history_clusters(self.config.level)
        return {at("exploration", k): exploration_at_k(in_history, batch.cut(k)) for k in batch.data.ks}
