"""Cluster-to-cluster transitions observed in users' TRAINING sequences.

Exploration should be realistic, not random: the clusters a user is offered to explore are the
ones other users actually moved to next from the clusters this user already likes. The counts
``C[a, b]`` = how often an event in fine cluster ``a`` was directly followed (same user, next event)
by one in a different cluster ``b``. Self-transitions are not counted: staying is not exploring.

Two uses:
- :meth:`TransitionStats.candidates` pre-selects the explore candidates a persona writer may choose
  from (recency-weighted transition probabilities from the user's clusters, unseen clusters only);
- :meth:`TransitionStats.most_frequent` is the no-LLM baseline the quality evaluation compares
  the personas' explore topics with (the most frequent transitions out of the user's clusters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from personarec.data.splits import UserSequences


@dataclass(frozen=True)
class TransitionStats:
    counts: sp.csr_matrix  # int64 [n_clusters, n_clusters], C[a, b] for a != b
    popularity: np.ndarray  # int64 [n_clusters]: training events per cluster (tie-break / fill)

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def fit(
        cls, sequences: UserSequences, fine: np.ndarray, n_clusters: int | None = None
    ) -> TransitionStats:
        """Count next-cluster transitions in ``sequences`` (pass the TRAINING histories)."""
        fine = np.asarray(fine)
        n = int(n_clusters if n_clusters is not None else (fine.max() + 1 if len(fine) else 0))
        clusters = fine[sequences.items].astype(np.int64)
        src, dst = clusters[:-1], clusters[1:]
        # position i -> i+1 stays inside one user unless i+1 starts a new user
        starts = np.zeros(len(clusters), dtype=bool)
        starts[sequences.indptr[1:-1][sequences.indptr[1:-1] < len(clusters)]] = True
        keep = ~starts[1:] & (src != dst) if len(clusters) else np.zeros(0, dtype=bool)
        counts = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.int64), (src[keep], dst[keep])), shape=(n, n)
        )
        counts.sum_duplicates()
        popularity = np.bincount(clusters, minlength=n).astype(np.int64)
        return cls(counts=counts, popularity=popularity)

    def next_counts(self, cluster: int) -> dict[int, int]:
        """Where users went next from ``cluster`` (cluster -> count)."""
        row = self.counts.getrow(cluster)
        return {int(b): int(c) for b, c in zip(row.indices, row.data, strict=True)}

    def _rank(self, scores: np.ndarray, exclude: Iterable[int], k: int) -> list[int]:
        scores = scores.astype(np.float64).copy()
        mask = np.zeros(self.n_clusters, dtype=bool)
        ex = np.fromiter((int(c) for c in exclude), dtype=np.int64)
        mask[ex] = True
        # primary key: score; tie-break: training popularity, then cluster id (deterministic)
        order = np.lexsort((np.arange(self.n_clusters), -self.popularity, -scores))
        return [int(c) for c in order if not mask[c]][:k]

    def candidates(
        self, weights: Mapping[int, float], k: int, exclude: Iterable[int] | None = None
    ) -> list[int]:
        """Top-``k`` unseen clusters by sum_a w_a * P(b | a); clusters of ``weights`` are excluded.

        Clusters no transition reaches are ranked after by popularity, so ``k`` are always returned
        while enough unseen clusters exist.
        """
        scores = self.scores(weights)
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        excluded = set(int(r) for r in rows) | set(int(c) for c in (exclude or ()))
        return self._rank(scores, excluded, k)

    def scores(self, weights: Mapping[int, float]) -> np.ndarray:
        """sum_a w_a * P(b | a) for every cluster b (the explore prior; 0 where no transition leads)."""
        if not weights:
            return np.zeros(self.n_clusters)
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        w = np.fromiter(weights.values(), dtype=np.float64)
        sub = self.counts[rows].astype(np.float64)
        row_sums = np.asarray(sub.sum(axis=1)).ravel()
        row_sums[row_sums == 0] = 1.0
        probs = sp.diags(w / row_sums) @ sub
        return np.asarray(probs.sum(axis=0)).ravel()

    def sources(self, weights: Mapping[int, float], candidates: Sequence[int]) -> list[int | None]:
        """For each candidate, the user's cluster that contributes most to its score (None: none)."""
        if not candidates or not weights:
            return [None] * len(candidates)
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        w = np.fromiter(weights.values(), dtype=np.float64)
        sub = self.counts[rows].astype(np.float64)
        row_sums = np.asarray(sub.sum(axis=1)).ravel()
        row_sums[row_sums == 0] = 1.0
        contrib = (sp.diags(w / row_sums) @ sub)[:, list(candidates)].toarray()  # [n_rows, n_cand]
        best = contrib.argmax(axis=0)
        return [int(rows[b]) if contrib[b, j] > 0 else None for j, b in enumerate(best)]

    def most_frequent(self, seen: Iterable[int], k: int) -> list[int]:
        """Baseline: the ``k`` unseen clusters most often reached from the user's clusters (raw counts)."""
        rows = np.fromiter((int(c) for c in seen), dtype=np.int64)
        scores = np.asarray(self.counts[rows].sum(axis=0)).ravel()
        return self._rank(scores, rows.tolist(), k)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        coo = self.counts.tocoo()
        with p.open("wb") as fh:
            np.savez(fh, row=coo.row, col=coo.col, data=coo.data, popularity=self.popularity)
        return p

    @classmethod
    def load(cls, path: str | Path) -> TransitionStats:
        z = np.load(path)
        n = len(z["popularity"])
        counts = sp.csr_matrix((z["data"], (z["row"], z["col"])), shape=(n, n))
        return cls(counts=counts, popularity=z["popularity"])
