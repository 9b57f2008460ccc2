"""A user's history as the persona stage sees it: items, cluster statistics and (hindsight) the future.

Everything here is computed from a :class:`~personarec.data.splits.Split` and an
:class:`~personarec.items.space.ItemSpace` with numpy; no LLM involved. The *stage* decides what a
persona may see (``split.history(stage)``): ``valid`` = training events, ``test`` = training +
validation events. Hindsight peeks at the validation targets only; test items are never read here
except by :func:`future_items`, which the quality evaluation uses as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from personarec.data.splits import Split, UserSequences
from personarec.items.space import ItemSpace
from personarec.personas.config import PersonasConfig
from personarec.personas.transitions import TransitionStats, recency_weights

Stage = Literal["valid", "test"]


@dataclass(frozen=True)
class ClusterStat:
    """How one fine cluster shows up in a user's history."""

    cluster: int
    name: str
    count: int
    events_since: int  # events since the most recent one in this cluster (0 = the last event)
    weight: float  # recency-weighted share of the history (all weights of a user sum to 1)
    examples: tuple[int, ...]  # item indices, most recent first (distinct)


@dataclass(frozen=True)
class UserHistory:
    """One user's chronological items up to a cut-off."""

    user_idx: int
    user_id: str
    items: np.ndarray  # int32 item indices, oldest first
    timestamps: np.ndarray  # int64
    stage: str

    @property
    def version(self) -> int:
        """The persona version: number of events included (a longer history = a newer persona)."""
        return len(self.items)

    @property
    def last_timestamp(self) -> int | None:
        return int(self.timestamps[-1]) if len(self.timestamps) else None


@dataclass(frozen=True)
class PersonaContext:
    """Everything a persona writer may use for one user."""

    history: UserHistory
    stats: list[ClusterStat]  # every cluster of the history, strongest first
    candidates: list[int]  # explore candidates: fine clusters NOT in the history, best first
    titles: list[str] = field(repr=False, default_factory=list)  # item index -> title (shared list)
    fine_names: list[str] = field(repr=False, default_factory=list)
    hindsight: list[ClusterStat] | None = None  # the user's next interactions (validation only)
    candidate_sources: list[int | None] = field(
        default_factory=list
    )  # history cluster leading to each candidate
    candidate_scores: list[float] = field(default_factory=list)  # explore prior of each candidate (>= 0)

    @property
    def user_id(self) -> str:
        return self.history.user_id

    @property
    def seen(self) -> set[int]:
        return {s.cluster for s in self.stats}

    @property
    def seen_names(self) -> set[str]:
        return {s.name for s in self.stats}

    @property
    def candidate_names(self) -> list[str]:
        return [self.fine_names[c] for c in self.candidates]

    def source_name(self, candidate_rank: int) -> str | None:
        """Name of the history cluster users most often came from to candidate ``candidate_rank``."""
        if candidate_rank >= len(self.candidate_sources):
            return None
        src = self.candidate_sources[candidate_rank]
        return None if src is None else self.fine_names[src]


def user_history(
    split: Split, user_idx: int, stage: Stage, sequences: UserSequences | None = None
) -> UserHistory:
    """The events a persona for ``stage`` may see (pass ``sequences`` to reuse one CSR build)."""
    seq = sequences if sequences is not None else split.history(stage)
    lo, hi = int(seq.indptr[user_idx]), int(seq.indptr[user_idx + 1])
    return UserHistory(
        user_idx=int(user_idx),
        user_id=str(split.user_ids[user_idx]),
        items=seq.items[lo:hi],
        timestamps=seq.timestamps[lo:hi],
        stage=stage,
    )


def cluster_stats(
    items: np.ndarray, space: ItemSpace, half_life: float = 20.0, max_examples: int = 2
) -> list[ClusterStat]:
    """Per-cluster counts, recency and example items of a chronological item sequence."""
    items = np.asarray(items, dtype=np.int64)
    n = len(items)
    if n == 0:
        return []
    clusters = space.fine[items]
    ago = np.arange(n - 1, -1, -1, dtype=np.float64)  # events since, per position
    decay = np.power(0.5, ago / half_life)
    uniq, inverse = np.unique(clusters, return_inverse=True)
    weights = np.bincount(inverse, weights=decay, minlength=len(uniq))
    weights = weights / weights.sum()
    counts = np.bincount(inverse, minlength=len(uniq))
    last_pos = np.full(len(uniq), -1, dtype=np.int64)
    np.maximum.at(last_pos, inverse, np.arange(n))
    order = np.lexsort((uniq, -counts, -weights))  # strongest first, ties by count then id
    stats = []
    for k in order:
        positions = np.flatnonzero(inverse == k)[::-1]
        examples: list[int] = []
        for p in positions:
            it = int(items[p])
            if it not in examples:
                examples.append(it)
            if len(examples) >= max_examples:
                break
        stats.append(
            ClusterStat(
                cluster=int(uniq[k]),
                name=space.fine_names[int(uniq[k])],
                count=int(counts[k]),
                events_since=int(n - 1 - last_pos[k]),
                weight=float(weights[k]),
                examples=tuple(examples),
            )
        )
    return stats


def item_titles(split: Split) -> list[str]:
    """Item index -> title (the catalogue is aligned with the split's item index)."""
    return [str(t) for t in split.catalogue.frame["title"].to_list()]


def hindsight_items(split: Split, user_idx: int, valid_targets: UserSequences | None = None) -> np.ndarray:
    """The user's next interactions after the training events: the VALIDATION targets, never test."""
    targets = valid_targets if valid_targets is not None else split.targets("valid")
    return targets[user_idx]


def future_items(split: Split, stage: Stage) -> UserSequences:
    """Held-out ground truth after a ``stage`` history: valid -> validation + test, test -> test."""
    import polars as pl

    if stage == "test":
        return split.targets("test")
    frame = pl.concat([split.valid, split.test]).sort(["user_idx", "timestamp"], maintain_order=True)
    return UserSequences.from_frame(frame, split.n_users)


def build_context(
    history: UserHistory,
    space: ItemSpace,
    transitions: TransitionStats,
    config: PersonasConfig,
    titles: list[str],
    next_items: np.ndarray | None = None,
) -> PersonaContext:
    """Cluster statistics and explore candidates of one history (``next_items``: hindsight events,
    validation only). Needs no split: saved recommenders rebuild contexts of live histories."""
    pc = config.prompt
    stats = cluster_stats(history.items, space, pc.recency_half_life, max(pc.examples_top, pc.examples_other, 1))
    weights = {s.cluster: s.weight for s in stats}
    recent = {s.cluster: s.weight for s in cluster_stats(history.items, space, config.explore_half_life, 0)}
    recent_items = recency_weights(history.items, config.explore_half_life) if config.explore_prior == "item_ease" else None
    k = config.n_candidates
    ranking = transitions.explore(recent, k, config.explore_prior, recent_items)
    candidates = ranking.candidates
    future = None
    if next_items is not None and len(next_items):
        future = cluster_stats(next_items, space, pc.recency_half_life, 1)
        novel = [s.cluster for s in future if s.cluster not in weights and s.cluster not in candidates]
        if novel:  # the clusters the user really went on to must be choosable
            candidates = candidates[: max(0, k - len(novel))] + novel[:k]
    return PersonaContext(
        history=history, stats=stats, candidates=candidates, titles=titles,
        fine_names=space.fine_names, hindsight=future,
        candidate_sources=ranking.sources(candidates),
        candidate_scores=[max(float(ranking.scores[c]), 0.0) for c in candidates],  # ease may be < 0: no support
    )  # fmt: skip


class ContextBuilder:
    """Builds :class:`PersonaContext` objects for the users of one split (no LLM needed).

    The history stage follows the config; hindsight forces the TRAINING history and adds the
    validation targets as "next" events. Test targets are never read.
    """

    def __init__(
        self,
        split: Split,
        space: ItemSpace,
        config: PersonasConfig | None = None,
        *,
        transitions: TransitionStats | None = None,
    ) -> None:
        self.split, self.space, self.config = split, space, config or PersonasConfig()
        train = split.history("train")
        self.transitions = transitions or TransitionStats.fit(train, space.fine, space.n_fine)
        self.stage: Stage = "valid" if self.config.hindsight else self.config.history_stage
        self.sequences: UserSequences = train if self.stage == "valid" else split.history(self.stage)
        self.valid_targets = split.targets("valid") if self.config.hindsight else None
        self.titles = item_titles(split)

    def context_for(self, history: UserHistory, next_items: np.ndarray | None = None) -> PersonaContext:
        """Context for any history (``next_items``: hindsight events, validation only)."""
        return build_context(history, self.space, self.transitions, self.config, self.titles, next_items)

    def history(self, user_idx: int) -> UserHistory:
        """The events a persona of this user is built from (cheap: a CSR slice)."""
        return user_history(self.split, user_idx, self.stage, self.sequences)

    def context(self, user_idx: int) -> PersonaContext:
        history = self.history(user_idx)
        nxt = hindsight_items(self.split, user_idx, self.valid_targets) if self.config.hindsight else None
        return self.context_for(history, nxt)
