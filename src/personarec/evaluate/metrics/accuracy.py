"""Accuracy of full-ranking top-k lists: Recall, HR, NDCG, MRR at each cut-off.

Definitions (one or several held-out targets per user; ``T`` = distinct targets, ``hit_j`` = the
item at rank ``j`` (0-based) is in ``T``):

- ``recall@k = sum_{j<k} hit_j / |T|`` (RecBole/LensKit convention; equals HR under leave-one-out);
- ``hr@k = 1 if any hit in the top k``;
- ``ndcg@k = sum_{j<k} hit_j / log2(j+2)``, divided by the ideal DCG with ``min(|T|, k)`` hits;
- ``mrr@k = 1 / (rank of the first hit)``, 0 without a hit in the top k.
"""

from __future__ import annotations

import numpy as np

from personarec.evaluate.metrics.base import Metric, UserBatch, at, register


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1)


def hr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    k = min(k, hits.shape[1])
    disc = discounts(k)
    dcg = hits[:, :k].astype(np.float64) @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_relevant, k)]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1.0), 0.0)


@register
class Accuracy(Metric):
    """Recall/HR/NDCG/MRR@k for every k of the evaluation."""

    name = "accuracy"

    def per_user(self, batch: UserBatch) -> dict[str, np.ndarray]:
        hits, n_rel = batch.hits, batch.n_relevant
        out: dict[str, np.ndarray] = {}
        for k in batch.data.ks:
            c = batch.cut(k)
            out[at("recall", k)] = recall_at_k(hits, n_rel, c)
            out[at("ndcg", k)] = ndcg_at_k(hits, n_rel, c)
            out[at("hr", k)] = hr_at_k(hits, c)
            out[at("mrr", k)] = mrr_at_k(hits, c)
        return out
