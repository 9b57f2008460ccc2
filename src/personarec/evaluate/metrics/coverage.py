"""How much of the catalogue the recommendations reach.

- ``coverage@k``: share of catalogue items that appear in at least one user's top k;
- ``gini@k``: Gini coefficient of how often each item is recommended (0 = every item equally
  often, -> 1 = all slots go to one item); coverage says *whether* an item is shown, Gini *how evenly*;
- per-cluster table (needs an :class:`ItemSpace`): for each fine cluster, the share of its items
  recommended at least once, its share of all recommendation slots, of the catalogue and of the
  held-out targets, so a reader sees which regions of the catalogue a model ignores.

These depend on how many users are served: compare them only between equally sized user sets.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field

from personarec.evaluate.metrics.base import EvalData, Metric, MetricConfig, at, gather_rows, register


def catalogue_coverage(recs: np.ndarray, n_items: int, k: int) -> float:
    return len(np.unique(recs[:, :k])) / n_items if n_items else 0.0


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (sorted-rank formula)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def cluster_coverage(
    recs: np.ndarray, clusters: np.ndarray, names: list[str], target_items: np.ndarray | None = None
) -> pl.DataFrame:
    """One row per cluster: size, items recommended at least once, coverage and shares."""
    n_clusters = len(names)
    size = np.bincount(clusters, minlength=n_clusters)
    covered_items = np.unique(recs)
    covered = np.bincount(clusters[covered_items], minlength=n_clusters)
    slots = np.bincount(clusters[recs.ravel()], minlength=n_clusters)
    frame = {
        "cluster_id": np.arange(n_clusters, dtype=np.int32),
        "name": names,
        "size": size.astype(np.int64),
        "covered": covered.astype(np.int64),
        "coverage": np.divide(covered, size, out=np.zeros(n_clusters), where=size > 0),
        "rec_share": slots / max(slots.sum(), 1),
        "catalogue_share": size / max(size.sum(), 1),
    }
    if target_items is not None:
        t = np.bincount(clusters[target_items], minlength=n_clusters)
        frame["target_share"] = t / max(t.sum(), 1)
    return pl.DataFrame(frame)


class CoverageConfig(MetricConfig):
    cluster_k: int = Field(10, ge=1, description="cut-off used for the per-cluster table")


@register
class Coverage(Metric):
    name = "coverage"
    config_class = CoverageConfig

    def global_(self, recs: np.ndarray, users: np.ndarray, data: EvalData) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in data.ks:
            out[at("coverage", k)] = catalogue_coverage(recs, data.n_items, k)
            out[at("gini", k)] = gini(np.bincount(recs[:, :k].ravel(), minlength=data.n_items))
        return out

    def tables(self, recs: np.ndarray, users: np.ndarray, data: EvalData) -> dict[str, pl.DataFrame]:
        if data.items is None:
            return {}
        k = min(self.config.cluster_k, recs.shape[1])
        _, targets = gather_rows(data.targets, users)
        table = cluster_coverage(recs[:, :k], data.items.fine, data.items.fine_names, targets)
        return {"cluster_coverage": table.with_columns(pl.lit(k).alias("k"))}
