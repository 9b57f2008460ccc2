"""Cluster-to-cluster relations (next-step transitions, co-occurrence) in users' TRAINING sequences.

Exploration should be realistic, not random: the clusters a user is offered to explore are the
ones other users actually moved to next from the clusters this user already likes. The counts
``C[a, b]`` = how often an event in fine cluster ``a`` was directly followed (same user, next event)
by one in a different cluster ``b``. Self-transitions are not counted: staying is not exploring.

Two uses:
- :meth:`TransitionStats.candidates` pre-selects the explore candidates a persona writer may choose
  from (recency-weighted transition probabilities from the user's clusters, unseen clusters only);
- :meth:`TransitionStats.most_frequent` is the no-LLM baseline the quality evaluation compares
  the personas' explore topics with (the most frequent transitions out of the user's clusters).

Two explore priors score the candidates (``PersonasConfig.explore_prior``):
- ``transitions``: sum_a w_a * P(b | a), next-step transition probabilities;
- ``ease`` (default): a cluster-level EASE (Steck, 2019) on the user x cluster matrix of the
  training histories, ``B = argmin ||X - XB||^2 + lam ||B||^2, diag(B) = 0`` in closed form, scored
  ``sum_a w_a * B[a, b]``. It reads every co-occurrence in a history, not only the next step, and
  its ridge discounts clusters that are merely popular.
Chosen on a training-only inner split (history = train[:-2], future = the last 2 training events),
top 3 unseen clusters, hit-rate / the raw-count baseline's, ML-100k / ML-latest-small / P5 Beauty:
ease 1.16x / 1.31x / 1.14x, transitions 1.15x / 1.36x / 1.07x (both with the user's clusters weighted
at ``explore_half_life`` = 5 events; at 20 events transitions fall to 1.07x / 1.12x / 1.06x). The
two tie on the small MovieLens sets; P5 Beauty (22,363 users, the least noisy) decides for ease.
Reproduced, with the held-out figures, by ``benchmarks/explore_priors.py`` (no LLM); the engine's by
``benchmarks/persona_engine.py`` and ``persona_explore.py``. With a few thousand clusters at most, the
inverse costs well under a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from personarec.data.splits import UserSequences

ExplorePrior = Literal["transitions", "ease"]
EASE_LAMBDA = 200.0  # ridge of the cluster EASE (chosen on the inner split above; 50-200 are close)


def cluster_ease(sequences: UserSequences, fine: np.ndarray, n_clusters: int, lam: float = EASE_LAMBDA) -> np.ndarray:
    """Closed-form EASE weights [n_clusters, n_clusters] (float32, zero diagonal) of the binary
    user x cluster matrix of ``sequences``."""
    users = np.repeat(np.arange(sequences.n_users), sequences.lengths())
    x = sp.csr_matrix(
        (np.ones(len(sequences.items)), (users, np.asarray(fine)[sequences.items])),
        shape=(sequences.n_users, n_clusters),
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices(n_clusters)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


@dataclass(frozen=True)
class TransitionStats:
    counts: sp.csr_matrix  # int64 [n_clusters, n_clusters], C[a, b] for a != b
    popularity: np.ndarray  # int64 [n_clusters]: training events per cluster (tie-break / fill)
    affinity: np.ndarray | None = None  # float32 [n_clusters, n_clusters]: cluster EASE weights

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def fit(
        cls, sequences: UserSequences, fine: np.ndarray, n_clusters: int | None = None, ease_lambda: float = EASE_LAMBDA
    ) -> TransitionStats:
        """Count next-cluster transitions and fit the cluster EASE on ``sequences`` (pass the
        TRAINING histories)."""
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
        affinity = cluster_ease(sequences, fine, n, ease_lambda) if n else None
        return cls(counts=counts, popularity=popularity, affinity=affinity)

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
        self,
        weights: Mapping[int, float],
        k: int,
        exclude: Iterable[int] | None = None,
        prior: ExplorePrior = "transitions",
    ) -> list[int]:
        """Top-``k`` unseen clusters by the ``prior``'s score; clusters of ``weights`` are excluded.

        Ties (e.g. clusters no transition reaches) are ranked by popularity, so ``k`` are always
        returned while enough unseen clusters exist.
        """
        scores = self.scores(weights, prior)
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        excluded = set(int(r) for r in rows) | set(int(c) for c in (exclude or ()))
        return self._rank(scores, excluded, k)

    def _contributions(self, weights: Mapping[int, float], prior: ExplorePrior) -> tuple[np.ndarray, np.ndarray]:
        """(rows, [n_rows, n_clusters] w_a * relation[a, b]) for the user's clusters ``rows``."""
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        w = np.fromiter(weights.values(), dtype=np.float64)
        if prior == "ease":
            if self.affinity is None:
                raise ValueError("explore_prior = 'ease' needs TransitionStats fitted with its cluster EASE")
            return rows, w[:, None] * self.affinity[rows].astype(np.float64)
        if prior != "transitions":
            raise ValueError(f"unknown explore prior {prior!r} (transitions, ease)")
        sub = self.counts[rows].astype(np.float64)
        row_sums = np.asarray(sub.sum(axis=1)).ravel()
        row_sums[row_sums == 0] = 1.0
        return rows, (sp.diags(w / row_sums) @ sub).toarray()

    def scores(self, weights: Mapping[int, float], prior: ExplorePrior = "transitions") -> np.ndarray:
        """The explore prior of every cluster b: sum_a w_a * P(b | a) (transitions; 0 where no
        transition leads) or sum_a w_a * B[a, b] (ease; may be negative: users of a avoid b)."""
        if not weights:
            return np.zeros(self.n_clusters)
        return self._contributions(weights, prior)[1].sum(axis=0)

    def sources(
        self, weights: Mapping[int, float], candidates: Sequence[int], prior: ExplorePrior = "transitions"
    ) -> list[int | None]:
        """For each candidate, the user's cluster that contributes most to its score (None: none)."""
        if not candidates or not weights:
            return [None] * len(candidates)
        rows, contrib = self._contributions(weights, prior)
        contrib = contrib[:, list(candidates)]  # [n_rows, n_cand]
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
            extra = {} if self.affinity is None else {"affinity": self.affinity}
            np.savez(fh, row=coo.row, col=coo.col, data=coo.data, popularity=self.popularity, **extra)
        return p

    @classmethod
    def load(cls, path: str | Path) -> TransitionStats:
        z = np.load(path)
        n = len(z["popularity"])
        counts = sp.csr_matrix((z["data"], (z["row"], z["col"])), shape=(n, n))
        affinity = z["affinity"] if "affinity" in z.files else None
        return cls(counts=counts, popularity=z["popularity"], affinity=affinity)
