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

Three explore priors score the candidates (``PersonasConfig.explore_prior``):
- ``transitions``: sum_a w_a * P(b | a), next-step transition probabilities;
- ``ease``: a cluster-level EASE (Steck, 2019) on the user x cluster matrix of the training
  histories, ``B = argmin ||X - XB||^2 + lam ||B||^2, diag(B) = 0`` in closed form, scored
  ``sum_a w_a * B[a, b]``. It reads every co-occurrence in a history, not only the next step, and
  its ridge discounts clusters that are merely popular;
- ``item_ease`` (default): the same EASE one level down, on the user x item matrix of the
  ``ITEM_EASE_CAP`` most popular items, sparsified to each item's ``ITEM_EASE_NEIGHBORS`` strongest
  positive weights. A user's recency-weighted items score every item; a cluster scores the sum of
  its ``CLUSTER_TOP_ITEMS`` best items. A cluster is a bag of very different items, so item-level
  co-occurrence says much more about *which* unseen cluster comes next than cluster counts do.
Chosen on a training-only inner split (history = train[:-2], future = the last 2 training events),
top 3 unseen clusters, hit-rate / the raw-count baseline's, ML-100k / ML-latest-small / P5 Beauty,
user clusters weighted at ``explore_half_life`` = 5 events:
item_ease (lam 200) 1.35x / 1.69x / 1.14x, ease 1.16x / 1.31x / 1.14x, transitions 1.15x / 1.36x /
1.07x (lam 50: 1.25x / 1.76x / 1.16x, lam 500: 1.36x / 1.57x / 1.12x; half-life 20 is worse for all).
On the held-out test futures item_ease is 1.57x / 1.89x / 1.27x against ease's 1.29x / 1.46x / 1.23x.
Reproduced by ``benchmarks/explore_priors.py`` (no LLM, ~25 min for the three datasets); the engine's
by ``benchmarks/persona_engine.py`` and ``persona_explore.py``. The cluster inverse is well under a
second; the item inverse (15k x 15k, float32) a few tens of seconds, once per fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from personarec.data.splits import UserSequences

ExplorePrior = Literal["transitions", "ease", "item_ease"]
EASE_LAMBDA = 200.0  # ridge of the cluster EASE (chosen on the inner split above; 50-200 are close)
ITEM_EASE_LAMBDA = 200.0  # ridge of the item EASE (see item_ease)
ITEM_EASE_CAP = 15_000  # the most popular items the item EASE is fitted on (dense inverse: cap^2 floats)
ITEM_EASE_NEIGHBORS = 100  # strongest positive weights kept per item (the sparse matrix that is stored)
CLUSTER_TOP_ITEMS = 5  # a cluster's item_ease score: its 5 best-scored items


@dataclass(frozen=True)
class ExploreRanking:
    """One history's explore prior, computed once: every cluster's score, the top candidates, and
    per user cluster its contribution to each score (what :meth:`sources` explains candidates by)."""

    scores: np.ndarray  # [n_clusters]
    candidates: list[int]
    rows: np.ndarray  # the user's clusters
    contributions: np.ndarray  # [len(rows), n_clusters]; column sums = scores

    def sources(self, candidates: Sequence[int] | None = None) -> list[int | None]:
        """The user's cluster contributing most to each candidate (default: the top ones); None: none."""
        return _best_sources(self.rows, self.contributions, self.candidates if candidates is None else candidates)


def _best_sources(rows: np.ndarray, contrib: np.ndarray, candidates: Sequence[int]) -> list[int | None]:
    if not len(candidates):
        return []
    sub = contrib[:, list(candidates)]  # [n_rows, n_cand]
    best = sub.argmax(axis=0)
    return [int(rows[b]) if sub[b, j] > 0 else None for j, b in enumerate(best)]


def recency_weights(items: np.ndarray, half_life: float) -> dict[int, float]:
    """Item -> sum of 0.5 ** (events since / half_life) over a chronological history."""
    items = np.asarray(items, dtype=np.int64)
    if not len(items):
        return {}
    decay = np.power(0.5, np.arange(len(items) - 1, -1, -1, dtype=np.float64) / half_life)
    uniq, inverse = np.unique(items, return_inverse=True)
    return {int(i): float(w) for i, w in zip(uniq, np.bincount(inverse, weights=decay), strict=True)}


def item_ease(
    sequences: UserSequences,
    n_items: int,
    lam: float = ITEM_EASE_LAMBDA,
    cap: int = ITEM_EASE_CAP,
    neighbors: int = ITEM_EASE_NEIGHBORS,
) -> sp.csr_matrix:
    """Item-level EASE weights [n_items, n_items], pruned to each item's ``neighbors`` strongest
    positive weights (float32 CSR). Fitted on the ``cap`` most popular items (their dense Gram
    inverse is the cost: ~cap^2 * 8 bytes, seconds at 10k items); rarer items get no row or column,
    so a cluster of only rare items scores 0 and is ranked by popularity."""
    users = np.repeat(np.arange(sequences.n_users), sequences.lengths())
    items = np.asarray(sequences.items, dtype=np.int64)
    counts = np.bincount(items, minlength=n_items)
    kept = np.flatnonzero(counts)
    if len(kept) > cap:
        kept = np.sort(np.argsort(-counts, kind="stable")[:cap])
    if not len(kept):
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    local = np.full(n_items, -1, dtype=np.int64)
    local[kept] = np.arange(len(kept))
    inside = local[items] >= 0
    x = sp.csr_matrix(
        (np.ones(int(inside.sum())), (users[inside], local[items[inside]])), shape=(sequences.n_users, len(kept))
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices(len(kept))] += lam
    p = np.linalg.inv(gram)
    del gram
    b = -p / np.diag(p)
    del p
    np.fill_diagonal(b, 0.0)
    m = min(neighbors, len(kept) - 1) if len(kept) > 1 else 0
    rows, cols, vals = [], [], []
    for start in range(0, len(kept), 2048):  # prune row blocks: top-m positive weights per item
        block = b[start : start + 2048]
        if m == 0:
            break
        top = np.argpartition(-block, m - 1, axis=1)[:, :m]
        v = np.take_along_axis(block, top, axis=1)
        keep = v > 0
        r = np.repeat(np.arange(start, start + len(block)), m).reshape(len(block), m)
        rows.append(kept[r[keep]]), cols.append(kept[top[keep]]), vals.append(v[keep].astype(np.float32))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items), dtype=np.float32
    )


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
    item_weights: sp.csr_matrix | None = None  # float32 [n_items, n_items]: pruned item EASE weights
    item_cluster: np.ndarray | None = None  # int [n_items]: the fine cluster of each item

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def fit(
        cls,
        sequences: UserSequences,
        fine: np.ndarray,
        n_clusters: int | None = None,
        ease_lambda: float = EASE_LAMBDA,
        item_lambda: float | None = ITEM_EASE_LAMBDA,
        item_neighbors: int = ITEM_EASE_NEIGHBORS,
    ) -> TransitionStats:
        """Count next-cluster transitions and fit the cluster and item EASE on ``sequences`` (pass
        the TRAINING histories; ``item_lambda=None`` skips the item EASE)."""
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
        items = None
        if item_lambda is not None and n:
            items = item_ease(sequences, len(fine), item_lambda, neighbors=item_neighbors)
        return cls(counts=counts, popularity=popularity, affinity=affinity, item_weights=items,
                   item_cluster=fine.astype(np.int32) if items is not None else None)  # fmt: skip

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
        items: Mapping[int, float] | None = None,
    ) -> list[int]:
        """Top-``k`` unseen clusters by the ``prior``'s score; clusters of ``weights`` are excluded.

        Ties (e.g. clusters no transition reaches) are ranked by popularity, so ``k`` are always
        returned while enough unseen clusters exist. ``items`` (item -> recency weight of the same
        history, :func:`recency_weights`) is what ``item_ease`` reads.
        """
        scores = self.scores(weights, prior, items)
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        excluded = set(int(r) for r in rows) | set(int(c) for c in (exclude or ()))
        return self._rank(scores, excluded, k)

    def _contributions(
        self, weights: Mapping[int, float], prior: ExplorePrior, items: Mapping[int, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, [n_rows, n_clusters] w_a * relation[a, b]) for the user's clusters ``rows``."""
        rows = np.fromiter(weights.keys(), dtype=np.int64)
        w = np.fromiter(weights.values(), dtype=np.float64)
        if prior == "item_ease":
            return rows, self._item_contributions(rows, items or {})
        if prior == "ease":
            if self.affinity is None:
                raise ValueError("explore_prior = 'ease' needs TransitionStats fitted with its cluster EASE")
            return rows, w[:, None] * self.affinity[rows].astype(np.float64)
        if prior != "transitions":
            raise ValueError(f"unknown explore prior {prior!r} (transitions, ease, item_ease)")
        sub = self.counts[rows].astype(np.float64)
        row_sums = np.asarray(sub.sum(axis=1)).ravel()
        row_sums[row_sums == 0] = 1.0
        return rows, (sp.diags(w / row_sums) @ sub).toarray()

    def _item_contributions(self, rows: np.ndarray, items: Mapping[int, float]) -> np.ndarray:
        """item_ease: C[a, b] = sum over the user's items i in cluster a of w_i * sum_{j in top(b)} B[i, j],
        where top(b) are the ``CLUSTER_TOP_ITEMS`` items of cluster b with the highest positive score
        s_j = sum_i w_i B[i, j]. Column sums are the clusters' scores: the summed score of each
        cluster's best few items, so one strong item does not make a cluster, nor does sheer size."""
        if self.item_weights is None or self.item_cluster is None:
            raise ValueError("explore_prior = 'item_ease' needs TransitionStats fitted with its item EASE")
        out = np.zeros((len(rows), self.n_clusters))
        if not items or not len(rows):
            return out
        idx = np.fromiter(items.keys(), dtype=np.int64)
        w = np.fromiter(items.values(), dtype=np.float64)
        m = sp.diags(w) @ self.item_weights[idx].astype(np.float64)  # [n_user_items, n_items]
        s = np.asarray(m.sum(axis=0)).ravel()
        pos = np.flatnonzero(s > 0)
        if not len(pos):
            return out
        cl = self.item_cluster[pos]
        order = np.lexsort((-s[pos], cl))  # by cluster, best item first
        cl_sorted = cl[order]
        first = np.r_[0, np.flatnonzero(np.diff(cl_sorted)) + 1]
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        top = pos[order[rank < CLUSTER_TOP_ITEMS]]
        picked = m.tocsc()[:, top]  # [n_user_items, n_top]
        per_cluster = (picked @ sp.csr_matrix(
            (np.ones(len(top)), (np.arange(len(top)), self.item_cluster[top])), shape=(len(top), self.n_clusters)
        )).toarray()  # fmt: skip
        row_of = {int(c): r for r, c in enumerate(rows)}
        user_rows = np.array([row_of.get(int(c), -1) for c in self.item_cluster[idx]], dtype=np.int64)
        ok = user_rows >= 0
        np.add.at(out, user_rows[ok], per_cluster[ok])
        return out

    def scores(
        self, weights: Mapping[int, float], prior: ExplorePrior = "transitions", items: Mapping[int, float] | None = None
    ) -> np.ndarray:
        """The explore prior of every cluster b: sum_a w_a * P(b | a) (transitions; 0 where no
        transition leads), sum_a w_a * B[a, b] (ease; may be negative: users of a avoid b), or the
        summed item-EASE score of b's best items (item_ease; reads ``items``)."""
        if not weights:
            return np.zeros(self.n_clusters)
        return self._contributions(weights, prior, items)[1].sum(axis=0)

    def sources(
        self,
        weights: Mapping[int, float],
        candidates: Sequence[int],
        prior: ExplorePrior = "transitions",
        items: Mapping[int, float] | None = None,
    ) -> list[int | None]:
        """For each candidate, the user's cluster that contributes most to its score (None: none)."""
        if not candidates or not weights:
            return [None] * len(candidates)
        return _best_sources(*self._contributions(weights, prior, items), candidates)

    def explore(
        self, weights: Mapping[int, float], k: int, prior: ExplorePrior = "transitions",
        items: Mapping[int, float] | None = None,
    ) -> ExploreRanking:
        """Scores, top-``k`` candidates and their sources from one pass over the prior (what a persona
        context needs; the item prior's contributions are the costly part, so they are computed once)."""
        if not weights:
            return ExploreRanking(np.zeros(self.n_clusters), [], np.zeros(0, np.int64), np.zeros((0, self.n_clusters)))
        rows, contrib = self._contributions(weights, prior, items)
        scores = contrib.sum(axis=0)
        return ExploreRanking(scores, self._rank(scores, set(int(r) for r in rows), k), rows, contrib)

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
            if self.item_weights is not None and self.item_cluster is not None:
                iw = self.item_weights.tocoo()
                extra.update(item_row=iw.row, item_col=iw.col, item_data=iw.data, item_cluster=self.item_cluster)
            np.savez(fh, row=coo.row, col=coo.col, data=coo.data, popularity=self.popularity, **extra)
        return p

    @classmethod
    def load(cls, path: str | Path) -> TransitionStats:
        z = np.load(path)
        n = len(z["popularity"])
        counts = sp.csr_matrix((z["data"], (z["row"], z["col"])), shape=(n, n))
        affinity = z["affinity"] if "affinity" in z.files else None
        item_weights = item_cluster = None
        if "item_cluster" in z.files:
            item_cluster = z["item_cluster"]
            k = len(item_cluster)
            item_weights = sp.csr_matrix((z["item_data"], (z["item_row"], z["item_col"])), shape=(k, k))
        return cls(counts=counts, popularity=z["popularity"], affinity=affinity, item_weights=item_weights,
                   item_cluster=item_cluster)  # fmt: skip
