"""A faiss index over item vectors that is searched inside one fine cluster at a time."""

from __future__ import annotations

import numpy as np


class ClusterIndex:
    """Inner-product ANN over the item vectors that is searched *inside one fine cluster* per query.

    A faiss ``IndexIVFFlat`` whose inverted lists ARE the fine clusters: items are added
    pre-assigned to their own cluster (``add_preassigned``; the coarse quantizer holds the cluster
    centroids but is never used to route), and every (query, cluster) pair is one row of a single
    batched ``search_preassigned`` call with ``nprobe = 1``. Why this over one flat index per
    cluster: one C++ call (no Python loop over users x clusters), one index object to build, and
    the per-row cost is only the scan of that cluster's list (~25 items per fine cluster by
    default, so ~10k items and thousands of (user, cluster) rows take milliseconds). Exact within
    the cluster (flat codes); "approximate" only in that it never looks outside it, which is the
    point. Rebuilt from the item space on load (cheaper than storing it).
    """

    def __init__(self, vectors: np.ndarray, fine: np.ndarray, n_clusters: int) -> None:
        import faiss
        from faiss.contrib.ivf_tools import add_preassigned

        x = np.ascontiguousarray(vectors, dtype=np.float32)
        fine = np.asarray(fine, dtype=np.int64)
        self.n_clusters, self.dim = int(n_clusters), int(x.shape[1])
        self.sizes = np.bincount(fine, minlength=self.n_clusters)
        centroids = np.zeros((self.n_clusters, self.dim), dtype=np.float32)
        np.add.at(centroids, fine, x)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        self.quantizer = faiss.IndexFlatIP(self.dim)
        self.quantizer.add(centroids)
        self.index = faiss.IndexIVFFlat(self.quantizer, self.dim, self.n_clusters, faiss.METRIC_INNER_PRODUCT)
        self.index.is_trained = True  # the lists are given, not learned
        # keep the ids array alive in this frame: add_preassigned rebinds its own `ids` to a raw
        # pointer, so a temporary would be freed before faiss copies it (garbage labels)
        ids = np.arange(len(x), dtype=np.int64)
        add_preassigned(self.index, x, fine, ids)
        self.index.nprobe = 1

    def search(self, queries: np.ndarray, clusters: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of cluster ``clusters[r]`` for query row ``r``: similarities and item
        indices ``[rows, k]``, best first; ``-1`` pads clusters with fewer than ``k`` items."""
        from faiss.contrib.ivf_tools import search_preassigned

        q = np.ascontiguousarray(queries, dtype=np.float32)
        rows = len(q)
        k = max(1, min(int(k), int(self.sizes.max(initial=1))))
        if rows == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        lists = np.asarray(clusters, dtype=np.int64).reshape(rows, 1)
        dist, idx = search_preassigned(self.index, q, k, lists, np.zeros((rows, 1), dtype=np.float32))
        return dist, idx


