"""What every metric shares: the evaluation data of one stage, a batch of top-k lists, the metric
interface and the registry that picks metrics by name.

A metric family sees top-k *index matrices* (``recs[b, j]`` = item of rank ``j`` for the ``b``-th
user of the batch), never score matrices: ranking is the recommender's job, and a ``[n_users, k]``
int matrix stays small at any catalogue size. Two kinds of output:

- ``per_user``: one value per user (averaged for the table, kept whole for the A/B tests and
  confidence intervals); computed batch by batch, so memory is bounded by the batch;
- ``global_``: a value over all lists at once (catalogue coverage, Gini), and ``tables`` such as
  per-cluster coverage. These need every user's list and are computed once per model (or per arm).
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal, Self

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace

ClusterLevel = Literal["fine", "coarse"]


# -- vectorised CSR helpers -----------------------------------------------------------------------
def gather_rows(seqs: UserSequences, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the sequences of ``users``: returns ``(row, item)`` pairs, ``row`` indexing ``users``.

    One fancy-indexing pass, no Python loop over users.
    """
    users = np.asarray(users, dtype=np.int64)
    starts, ends = seqs.indptr[users], seqs.indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
    offsets = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, seqs.items[np.repeat(starts, lengths) + offsets].astype(np.int64)


def row_membership(candidates: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``out[b, j]`` is True when ``candidates[b, j]`` is among the ``values`` paired with row ``b``.

    Pairs are encoded as one int64 key (row * width + value) and looked up with a binary search,
    so the cost is O((B*k + n_pairs) log n_pairs) whatever the catalogue size.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.size == 0 or len(values) == 0:
        return np.zeros(candidates.shape, dtype=bool)
    width = int(max(candidates.max(), values.max())) + 1
    keys = np.unique(rows * width + values)
    query = np.arange(candidates.shape[0], dtype=np.int64)[:, None] * width + candidates
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    return keys[pos] == query


def distinct_user_counts(seqs: UserSequences, n_items: int) -> np.ndarray:
    """int64 [n_items]: how many distinct users have each item in ``seqs`` (repeats count once)."""
    rows = np.repeat(np.arange(seqs.n_users, dtype=np.int64), seqs.lengths())
    keys = np.unique(rows * n_items + seqs.items.astype(np.int64))
    return np.bincount(keys % n_items, minlength=n_items).astype(np.int64)


# -- the data a metric may read -------------------------------------------------------------------
@dataclass(frozen=True)
class EvalData:
    """Everything metrics may read for one stage; shared by every model and batch.

    ``history`` is what the models were allowed to see for this stage (``split.history(stage)``);
    ``popularity`` counts the distinct users of each item *in that history only*, so no metric
    ever reads the held-out events except through ``targets``.
    """

    n_items: int
    targets: UserSequences
    history: UserSequences
    ks: tuple[int, ...]
    items: ItemSpace | None = None
    popularity: np.ndarray = field(default=None)  # type: ignore[assignment]  # int64 [n_items]
    n_history_users: int = 0

    def __post_init__(self) -> None:
        if self.popularity is None:
            object.__setattr__(self, "popularity", distinct_user_counts(self.history, self.n_items))
            object.__setattr__(self, "n_history_users", int((self.history.lengths() > 0).sum()))
        if self.items is not None and self.items.n_items != self.n_items:
            raise ConfigError(
                f"item space has {self.items.n_items} items but the split has {self.n_items}; "
                "rebuild the item space for this split (`personarec items build`)"
            )

    @classmethod
    def from_split(
        cls, split: Split, stage: Literal["valid", "test"], ks: tuple[int, ...], items: ItemSpace | None = None
    ) -> EvalData:
        return cls(
            n_items=split.n_items, targets=split.targets(stage), history=split.history(stage), ks=tuple(ks), items=items
        )

    def clusters(self, level: ClusterLevel) -> np.ndarray:
        assert self.items is not None
        return self.items.fine if level == "fine" else self.items.coarse

    def n_clusters(self, level: ClusterLevel) -> int:
        assert self.items is not None
        return self.items.n_fine if level == "fine" else self.items.n_coarse


@dataclass
class UserBatch:
    """Top-k lists of a batch of users plus lazily computed facts several metrics share."""

    users: np.ndarray  # int64 [B]
    recs: np.ndarray  # int [B, K]
    data: EvalData
    _history_clusters: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def width(self) -> int:
        return self.recs.shape[1]

    def cut(self, k: int) -> int:
        """The usable list length for cut-off ``k`` (a catalogue smaller than k gives shorter lists)."""
        return min(k, self.width)

    @cached_property
    def hits(self) -> np.ndarray:
        """bool [B, K]: the item at rank j is one of the user's held-out targets."""
        rows, items = gather_rows(self.data.targets, self.users)
        return row_membership(self.recs, rows, items)

    @cached_property
    def n_relevant(self) -> np.ndarray:
        """int [B]: distinct held-out targets per user (duplicates count once)."""
        rows, items = gather_rows(self.data.targets, self.users)
        if len(rows) == 0:
            return np.zeros(len(self.users), dtype=np.int64)
        keys = np.unique(rows * (self.data.n_items + 1) + items)
        return np.bincount(keys // (self.data.n_items + 1), minlength=len(self.users)).astype(np.int64)

    def in_history_clusters(self, level: ClusterLevel) -> np.ndarray:
        """bool [B, K]: the recommended item's cluster already occurs in the user's history."""
        if level not in self._history_clusters:
            clusters = self.data.clusters(level)
            rows, items = gather_rows(self.data.history, self.users)
            self._history_clusters[level] = row_membership(clusters[self.recs], rows, clusters[items].astype(np.int64))
        return self._history_clusters[level]


# -- the metric interface and registry ------------------------------------------------------------
class MetricConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(ABC):
    """One metric family. Override ``per_user`` and/or ``global_`` / ``tables``."""

    name: ClassVar[str]
    config_class: ClassVar[type[MetricConfig]] = MetricConfig
    #: True when the family needs an :class:`ItemSpace` (embeddings or clusters).
    requires_items: ClassVar[bool] = False

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @classmethod
    def from_config(cls, config: dict[str, Any] | MetricConfig | None = None) -> Self:
        if config is None or isinstance(config, MetricConfig):
            return cls(config)
        return cls(cls.config_class.model_validate(config))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump()}

    def per_user(self, batch: UserBatch) -> dict[str, np.ndarray]:
        """Column name (``"ndcg@10"``) -> float64 ``[B]``; averaged over users for the table."""
        return {}

    def global_(self, recs: np.ndarray, users: np.ndarray, data: EvalData) -> dict[str, float]:
        """Values over all lists at once (not decomposable per user)."""
        return {}

    def tables(self, recs: np.ndarray, users: np.ndarray, data: EvalData) -> dict[str, pl.DataFrame]:
        """Extra tables (e.g. per-cluster coverage), saved next to the summary."""
        return {}


METRICS: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make a metric family available by its ``name``."""
    METRICS[cls.name] = cls
    return cls


def build_metric(name: str, config: dict[str, Any] | None = None) -> Metric:
    import personarec.evaluate.metrics  # noqa: F401  (registers the built-in families)

    if name not in METRICS:
        raise ConfigError(f"unknown metric family {name!r}; available: {sorted(METRICS)}")
    return METRICS[name].from_config(config or {})


def at(name: str, k: int) -> str:
    """Column name convention: ``at("ndcg", 10) == "ndcg@10"``."""
    return f"{name}@{k}"
