"""One seeded k-means (faiss) shared by the semantic clusters and the semantic IDs."""

from __future__ import annotations

import numpy as np


def kmeans(
    x: np.ndarray, k: int, *, niter: int = 25, seed: int = 42, spherical: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids float32 [k, d], labels int64 [n])`` of k-means on the rows of ``x``.

    ``k`` is clamped to ``n``. Labels are the nearest centroid after the last iteration, so a
    centroid may end up with no member when ``x`` has fewer distinct rows than ``k``.
    ``spherical`` keeps centroids on the unit sphere (cosine k-means for normalised embeddings).
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = max(1, min(int(k), n))
    if k == 1:
        centroid = x.mean(axis=0, keepdims=True)
        if spherical:
            centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        return centroid.astype(np.float32), np.zeros(n, dtype=np.int64)
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=int(seed) % (2**31 - 1),
        spherical=spherical,
        verbose=False,
        min_points_per_centroid=1,  # small clusters are intended here; silences faiss's warning
        max_points_per_centroid=1024,  # subsample (seeded) only for very large inputs
    )
    km.train(x)
    centroids = np.asarray(km.centroids, dtype=np.float32)
    _, labels = km.index.search(x, 1)
    return centroids, labels[:, 0].astype(np.int64)
