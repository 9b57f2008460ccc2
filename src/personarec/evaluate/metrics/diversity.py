"""Intra-list diversity: how different the items of one list are from each other.

``ild@k`` = mean over the ``k(k-1)/2`` pairs of a user's top k of the cosine distance
``1 - cos(e_i, e_j)`` between item embeddings (``ItemSpace.embeddings``). Computed as a batched
Gram matrix ``[B, k, k]``, in chunks of users so that ``B * k * dim`` floats stay bounded.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from personarec.evaluate.metrics.base import Metric, MetricConfig, UserBatch, at, register


def intra_list_diversity(recs: np.ndarray, embeddings: np.ndarray, ks: tuple[int, ...], chunk: int = 4096) -> dict[int, np.ndarray]:
    """``{k: ild [B]}``; embeddings are re-normalised, so any scale works. Lists shorter than 2 -> 0."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    emb = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    out = {k: np.zeros(len(recs), dtype=np.float64) for k in ks}
    width = recs.shape[1]
    for start in range(0, len(recs), chunk):
        e = emb[recs[start : start + chunk]]  # [b, K, d]
        gram = np.einsum("bid,bjd->bij", e, e, optimize=True).astype(np.float64)
        for k in ks:
            c = min(k, width)
            if c < 2:
                continue
            block = gram[:, :c, :c]
            off_diag = block.sum(axis=(1, 2)) - np.trace(block, axis1=1, axis2=2)
            out[k][start : start + chunk] = 1.0 - off_diag / (c * (c - 1))
    return out


class DiversityConfig(MetricConfig):
    chunk_users: int = Field(4096, ge=1, description="users per Gram-matrix chunk (memory bound)")


@register
class Diversity(Metric):
    name = "diversity"
    config_class = DiversityConfig
    requires_items = True

    def per_user(self, batch: UserBatch) -> dict[str, np.ndarray]:
        assert batch.data.items is not None
        ild = intra_list_diversity(batch.recs, batch.data.items.embeddings, batch.data.ks, self.config.chunk_users)
        return {at("ild", k): v for k, v in ild.items()}
