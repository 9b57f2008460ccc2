"""Two-level semantic clusters: coarse topics, then fine interest clusters inside each topic.

The coarse level is spherical k-means over all items. Each coarse cluster is then split by its
own k-means into a number of fine clusters proportional to its size, so fine clusters never
straddle two topics (every fine cluster has exactly one parent) and the total matches the
configured size. Ids are contiguous: coarse ``0..n_coarse-1``; fine ``0..n_fine-1`` ordered by
parent, so ``fine_parent`` is non-decreasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personarec.items.kmeans import kmeans


@dataclass(frozen=True)
class Clustering:
    coarse: np.ndarray  # int32 [n_items]
    fine: np.ndarray  # int32 [n_items]
    fine_parent: np.ndarray  # int32 [n_fine]
    coarse_centroids: np.ndarray  # float32 [n_coarse, dim], unit norm
    fine_centroids: np.ndarray  # float32 [n_fine, dim], unit norm

    @property
    def n_coarse(self) -> int:
        return len(self.coarse_centroids)

    @property
    def n_fine(self) -> int:
        return len(self.fine_centroids)


def allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` fine clusters over groups of ``sizes`` items: proportional (largest
    remainder), at least 1 and at most ``size`` per group."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(min(max(total, len(sizes)), sizes.sum()))
    quota = total * sizes / sizes.sum()
    alloc = np.clip(np.floor(quota).astype(np.int64), 1, sizes)
    while alloc.sum() > total:  # the floor of 1 may overshoot: take back from the largest
        alloc[np.argmax(np.where(alloc > 1, alloc - quota, -np.inf))] -= 1
    remainder = quota - alloc
    while alloc.sum() < total:
        room = np.where(alloc < sizes, remainder, -np.inf)
        j = int(np.argmax(room))
        alloc[j] += 1
        remainder[j] -= 1
    return alloc


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber labels to 0..m-1 (dropping empty ids); returns (new labels, kept old ids)."""
    kept, new = np.unique(labels, return_inverse=True)
    return new.astype(np.int64), kept


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def hierarchical_kmeans(
    embeddings: np.ndarray, n_coarse: int, n_fine: int, *, niter: int = 25, seed: int = 42
) -> Clustering:
    """Cluster unit-norm ``embeddings`` into ``n_coarse`` topics and ``n_fine`` fine clusters in all.

    Either level may come out slightly smaller than asked when the data has fewer distinct points
    (empty clusters are dropped, ids stay contiguous).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    _, coarse_raw = kmeans(x, n_coarse, niter=niter, seed=seed, spherical=True)
    coarse, _ = _compact(coarse_raw)
    n_c = int(coarse.max()) + 1
    sizes = np.bincount(coarse, minlength=n_c)
    per_coarse = allocate(sizes, max(n_fine, n_c))

    fine = np.empty(n, dtype=np.int64)
    parents: list[int] = []
    for c in range(n_c):
        members = np.flatnonzero(coarse == c)
        _, local = kmeans(x[members], int(per_coarse[c]), niter=niter, seed=seed + 1 + c, spherical=True)
        local, _ = _compact(local)
        fine[members] = len(parents) + local
        parents.extend([c] * (int(local.max()) + 1))

    fine_parent = np.asarray(parents, dtype=np.int32)
    return Clustering(
        coarse=coarse.astype(np.int32),
        fine=fine.astype(np.int32),
        fine_parent=fine_parent,
        coarse_centroids=_unit(_means(x, coarse, n_c)),
        fine_centroids=_unit(_means(x, fine, len(fine_parent))),
    )


def _means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, x)
    return sums / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
