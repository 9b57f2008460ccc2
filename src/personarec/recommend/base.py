"""One interface for every recommender, and the registry that picks one by name from config.

Habits borrowed from scikit-learn (``fit`` then ``recommend``; no work in ``__init__``) and
RecTools/LensKit (each model = a pydantic config + a class; ``from_config``/``get_config``
round-trip). Scores are dense ``[n_users, n_items]`` blocks computed batch by batch so that full
ranking over 10^5 items never holds every user at once.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError

if TYPE_CHECKING:
    from personarec.items.space import ItemSpace
    from personarec.personas.profiles import UserProfiles
    from personarec.personas.store.base import PersonaStore


@dataclass(frozen=True)
class FitContext:
    """Shared artifacts a model may use while fitting; each model reads the fields it needs and
    ignores the rest. Typed, so that a misspelt artifact is an error rather than silently unused."""

    items: ItemSpace | None = None  # the item space (clusters, names): persona models need it
    persona_store: PersonaStore | None = None  # stored LLM personas (None: every user's fallback persona)
    base: Recommender | None = None  # an already fitted model to build on (the hybrid's scorer)
    members: tuple[Recommender, ...] | None = None  # already fitted models to combine (the blend's members)
    embedder: Any = None  # text embedder for persona texts: ``embed(texts, show_progress=)`` or a callable
    persona_vectors: np.ndarray | None = None  # float32 [n_users, d] persona embeddings, used as given
    persona_profiles: UserProfiles | None = None  # every user's persona content (stage "valid")
    embed_cache: Path | None = None  # cache root of the default text embedder

    @classmethod
    def of(cls, context: FitContext | None = None, **changes: Any) -> FitContext:
        """``context`` (or an empty one) with ``changes``; an unknown name is a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown fit context field(s) {unknown}; known: {sorted(known)}")
        return replace(context or cls(), **changes)


class RecommenderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recommender(ABC):
    """Fit on a :class:`Split`; score/recommend for batches of users given their histories."""

    name: ClassVar[str]
    config_class: ClassVar[type[RecommenderConfig]] = RecommenderConfig

    def __init__(self, config: RecommenderConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.n_items: int = 0
        #: whether a user's seen items are masked from this model's lists: the protocol card of the
        #: split it was fitted on decides (validation, rerankers and serving all follow it)
        self.exclude_seen: bool = True

    # -- config round-trip ---------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any] | RecommenderConfig | None = None) -> Self:
        if config is None or isinstance(config, RecommenderConfig):
            return cls(config)
        return cls(cls.config_class.model_validate(config))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump()}

    # -- persistence (so serving can load a trained model) --------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to directory ``path``: ``config.json`` (name + config) and its state."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "n_items": self.n_items,
            "exclude_seen": self.exclude_seen,
            "config": self.config.model_dump(mode="json"),
        }
        (d / "config.json").write_text(json.dumps(meta, indent=2))
        self._save_state(d)
        return d

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model written by :meth:`save` (the class must match the saved name)."""
        d = Path(path)
        meta = _read_meta(d)
        if meta["name"] != cls.name:
            raise ConfigError(f"{d} holds a {meta['name']!r} model, not {cls.name!r}")
        model = cls.from_config(meta["config"])
        model.n_items = int(meta["n_items"])
        model.exclude_seen = bool(meta.get("exclude_seen", True))  # saved before the card decided: masked
        model._load_state(d)
        return model

    def _save_state(self, directory: Path) -> None:
        """Write learned arrays/tensors into ``directory`` (subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def _load_state(self, directory: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded")

    # -- learning ------------------------------------------------------------------------
    def fit(self, split: Split, context: FitContext | None = None, **artifacts: Any) -> Self:
        """Learn from ``split.train`` (``split.valid`` may be used for early stopping).

        ``context`` (or keyword ``artifacts``, the same :class:`FitContext` field names) carries
        the shared artifacts some models use and others ignore. The split's protocol card decides
        whether seen items are masked (:attr:`exclude_seen`), for validation as for ranking.
        """
        ctx = FitContext.of(context, **artifacts)
        self.exclude_seen = bool(split.protocol.exclude_seen)
        return self._fit(split, ctx)

    @abstractmethod
    def _fit(self, split: Split, ctx: FitContext) -> Self:
        """What :meth:`fit` does for this model, with the typed context."""

    @abstractmethod
    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        """Scores ``float32 [len(users), n_items]``; higher is better. ``history[u]`` is user
        ``u``'s chronological input sequence (what the model may see)."""

    def score_sequence(self, items: np.ndarray) -> np.ndarray:
        """Scores ``[n_items]`` for one live sequence of item indices, without re-training: the
        sequence as the only row of a history (models that know users by index override this)."""
        return self.score(np.array([0]), UserSequences.from_sequences([np.asarray(items, dtype=np.int32)]))[0]


def mask_seen(scores: np.ndarray, users: np.ndarray, history: UserSequences) -> None:
    """Set the scores of each user's already-seen items to -inf, in place, without a Python loop
    over items."""
    starts, ends = history.indptr[users], history.indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = history.items[np.repeat(starts, lengths) + offsets]
    scores[rows, cols] = -np.inf


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's ``targets`` item in ``scores`` under :func:`top_k`'s tie-break
    (higher score first, ties to the lower item index), so that validation ranks exactly as the
    evaluated lists do: an item tied with the target counts ahead of it only if its index is lower."""
    rows = np.arange(len(targets))
    target_score = scores[rows, targets][:, None]
    lower_index = np.arange(scores.shape[1])[None, :] < np.asarray(targets)[:, None]
    return ((scores > target_score) | ((scores == target_score) & lower_index)).sum(axis=1)


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of one target per row from its 0-based rank (``1 / log2(rank + 2)`` inside the top k)."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def history_matrix(users: np.ndarray, history: UserSequences, n_items: int) -> sp.csr_matrix:
    """Binary ``[len(users), n_items]`` matrix of the given users' histories (duplicates -> 1)."""
    users = np.asarray(users, dtype=np.int64)
    starts, ends = history.indptr[users], history.indptr[users + 1]
    lengths = ends - starts
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
    cols = history.items[np.repeat(starts, lengths) + offsets]
    m = sp.csr_matrix((np.ones(len(cols), np.float32), cols, indptr), shape=(len(users), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def train_matrix(split: Split) -> sp.csr_matrix:
    """Binary user x item matrix of ``split.train``."""
    history = split.history("train")
    return history_matrix(np.arange(history.n_users), history, split.n_items)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k (sorted, best first) via argpartition: O(n_items) per row. Ties go to the
    lower item index, so the same scores give the same list in a batch of 1000 users or alone."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((len(scores), 0), np.int32), np.zeros((len(scores), 0), scores.dtype)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)  # the cut falls inside a tie
    for row in tied:  # few rows in practice; take the tied items with the lowest indices
        s = scores[row]
        above = np.flatnonzero(s > kth[row])
        at = np.flatnonzero(s == kth[row])[: k - len(above)]
        part[row] = np.concatenate([above, at])
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1) if part.size else part
    return np.take_along_axis(part, order, axis=1).astype(np.int32), np.take_along_axis(part_scores, order, axis=1)


#: The built-in recommenders as ``name -> "module:Class"``, imported on first use: this module
#: never imports an implementation (they import it), so there is no import cycle between the
#: interface and the registry, and asking for ``popular`` does not load torch.
BUILT_IN: dict[str, str] = {
    "popular": "personarec.recommend.popular:MostPopular",
    "itemknn": "personarec.recommend.itemknn:ItemKNN",
    "ease": "personarec.recommend.ease:EASE",
    "sasrec": "personarec.recommend.sasrec:SASRec",
    "text_sasrec": "personarec.recommend.text_sasrec:TextSASRec",
    "persona_sasrec": "personarec.recommend.persona_sasrec:PersonaSASRec",
    "persona_hybrid": "personarec.recommend.persona_hybrid:PersonaHybrid",
    "persona_retrieval": "personarec.recommend.persona_retrieval:PersonaRetrieval",
    "blend": "personarec.recommend.blend:Blend",
}
#: Classes registered so far (built-ins once imported, and any plugin decorated with ``register``).
RECOMMENDERS: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a recommender available to config by its ``name``."""
    RECOMMENDERS[cls.name] = cls
    return cls


def recommender_names() -> list[str]:
    return sorted(set(BUILT_IN) | set(RECOMMENDERS))


def recommender_class(name: str) -> type[Recommender]:
    """The class registered as ``name`` (a built-in is imported here the first time it is asked for)."""
    if name not in RECOMMENDERS and name in BUILT_IN:
        module, attr = BUILT_IN[name].split(":")
        register(getattr(importlib.import_module(module), attr))
    if name not in RECOMMENDERS:
        raise ConfigError(f"unknown recommender {name!r}; available: {recommender_names()}")
    return RECOMMENDERS[name]


def all_recommenders() -> dict[str, type[Recommender]]:
    """Every available recommender class by name (imports the built-ins)."""
    return {n: recommender_class(n) for n in recommender_names()}


def build_recommender(name: str, config: dict[str, Any] | None = None) -> Recommender:
    """Instantiate a registered recommender from its name and config dict."""
    config = {k: v for k, v in (config or {}).items() if k != "name"}  # get_config() output is accepted
    return recommender_class(name).from_config(config)


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.exists():
        raise ConfigError(f"no saved model in {directory} (expected config.json); run `personarec train` first")
    return json.loads(path.read_text())


def load_recommender(path: str | Path) -> Recommender:
    """Load any saved model: the class is picked by the name stored in ``path/config.json``."""
    meta = _read_meta(Path(path))
    try:
        cls = recommender_class(meta["name"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cls.load(path)
