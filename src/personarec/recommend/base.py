"""One interface for every recommender, and the registry that picks one by name from config.

Habits borrowed from scikit-learn (``fit`` then ``recommend``; no work in ``__init__``) and
RecTools/LensKit (each model = a pydantic config + a class; ``from_config``/``get_config``
round-trip). Scores are dense ``[n_users, n_items]`` blocks computed batch by batch so that full
ranking over 10^5 items never holds every user at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError


class RecommenderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recommender(ABC):
    """Fit on a :class:`Split`; score/recommend for batches of users given their histories."""

    name: ClassVar[str]
    config_class: ClassVar[type[RecommenderConfig]] = RecommenderConfig

    def __init__(self, config: RecommenderConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.n_items: int = 0

    # -- config round-trip ---------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any] | RecommenderConfig | None = None) -> Self:
        if config is None or isinstance(config, RecommenderConfig):
            return cls(config)
        return cls(cls.config_class.model_validate(config))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump()}

    # -- learning ------------------------------------------------------------------------
    @abstractmethod
    def fit(self, split: Split, **context: Any) -> Self:
        """Learn from ``split.train`` (``split.valid`` may be used for early stopping).

        ``context`` carries optional shared artifacts (``items``: ItemSpace, ``personas``: ...)
        that some models use and others ignore.
        """

    @abstractmethod
    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        """Scores ``float32 [len(users), n_items]``; higher is better. ``history[u]`` is user
        ``u``'s chronological input sequence (what the model may see)."""

    def score_sequence(self, items: np.ndarray) -> np.ndarray:
        """Scores ``[n_items]`` for one live sequence of item indices, without re-training.

        Sequence models override this; the default treats the sequence as a fresh user.
        """
        seq = np.asarray(items, dtype=np.int32)
        history = UserSequences(
            indptr=np.array([0, len(seq)], dtype=np.int64), items=seq, timestamps=np.zeros(len(seq), np.int64)
        )
        return self.score(np.array([-1]), history)[0]

    # -- ranking -------------------------------------------------------------------------
    def recommend(
        self,
        users: np.ndarray,
        history: UserSequences,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per user, best first (full ranking, batched)."""
        users = np.asarray(users, dtype=np.int64)
        out_items = np.empty((len(users), k), dtype=np.int32)
        out_scores = np.empty((len(users), k), dtype=np.float32)
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            scores = np.asarray(self.score(batch, history), dtype=np.float32)
            if exclude_seen:
                mask_seen(scores, batch, history)
            top_items, top_scores = top_k(scores, k)
            out_items[start : start + len(batch)] = top_items
            out_scores[start : start + len(batch)] = top_scores
        return out_items, out_scores


def mask_seen(scores: np.ndarray, users: np.ndarray, history: UserSequences) -> None:
    """Set the scores of each user's already-seen items to -inf, in place, without a Python loop
    over items."""
    starts, ends = history.indptr[users], history.indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = history.items[np.repeat(starts, lengths) + offsets]
    scores[rows, cols] = -np.inf


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k (sorted, best first) via argpartition: O(n_items) per row."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int32), np.take_along_axis(part_scores, order, axis=1)


RECOMMENDERS: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a recommender available to config by its ``name``."""
    RECOMMENDERS[cls.name] = cls
    return cls


def build_recommender(name: str, config: dict[str, Any] | None = None) -> Recommender:
    """Instantiate a registered recommender from its name and config dict."""
    import personarec.recommend.zoo  # noqa: F401  (registers the built-in models)

    if name not in RECOMMENDERS:
        raise ConfigError(f"unknown recommender {name!r}; available: {sorted(RECOMMENDERS)}")
    return RECOMMENDERS[name].from_config(config or {})
