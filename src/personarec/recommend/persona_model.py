"""What the persona-driven recommenders share: per-history profiles, slot scores, explanations.

Both models (:mod:`~personarec.recommend.persona_retrieval`, :mod:`~personarec.recommend.persona_hybrid`)
describe the history they are asked to score: ``score(users, history)`` builds each user's
profile from ``history[u]`` (the stored LLM persona when its ``version == len(history[u])`` and it
is :func:`~personarec.personas.profiles.usable`, else the deterministic fallback persona of that
history), so a validation run (train history) never sees a persona written after the validation
event, and a test run (train + valid) uses the persona of the longer history.

``score()`` returns a full ``[n_users, n_items]`` matrix, as the evaluation harness ranks it: the
persona-shaped list (the "slots") gets the highest scores in slot order, every other item follows
in the underlying order (similarity, resp. the base model's), so full-ranking metrics are well
defined. :meth:`recommend_explained` returns the same lists as
:class:`~personarec.recommend.persona_ranking.Ranked` records with the one-line reason from the
persona, and :meth:`explain` gives the reason of any item.

Context keys of ``fit``: ``items`` (ItemSpace, required), ``persona_store`` (PersonaStore, optional:
LLM personas), ``base`` (an already fitted Recommender, optional), ``embedder`` (optional: a
``TextEmbedder`` or a callable ``list[str] -> float32 [n, dim]`` for ``query="persona"``; default:
the item space's own model from ``space.meta["config"]``).

Persistence: ``save`` writes the config, the item space (``items/``), the user ids, training
popularity and transition counts (the fallback persona's explore candidates) and the base model
(``base/``). The persona store and a context-given embedder are live resources, not state: re-attach
them with :meth:`attach` after ``load`` (without a store every user gets the fallback persona).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import Field, field_validator

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.personas.config import PersonasConfig
from personarec.personas.profiles import ProfileBuilder, UserProfile
from personarec.personas.transitions import TransitionStats
from personarec.recommend.base import (
    Recommender,
    RecommenderConfig,
    build_recommender,
    load_recommender,
)
from personarec.recommend.persona_ranking import Profile, Ranked

Embedder = Callable[[list[str]], np.ndarray]

#: Slot scores live in (SLOT_BASE, SLOT_BASE + 1]; every other item scores at most ~1.
SLOT_BASE = 3.0


class PersonaModelConfig(RecommenderConfig):
    explore_quota: float = Field(
        0.2, ge=0.0, le=1.0, description="share of list slots given to explore clusters"
    )
    exclude_seen: bool = Field(
        True, description="never put an item of the history into the persona-shaped list"
    )
    persona: dict[str, Any] = Field(
        default_factory=dict,
        description="personas config (max_interests, max_explore, prompt.recency_half_life...) of the fallback persona",
    )
    num_threads: int = Field(1, ge=1, description="faiss / torch threads while scoring")
    profile_cache: int = Field(8192, ge=0, description="profiles kept in memory, keyed by (user, history)")

    @field_validator("persona")
    @classmethod
    def _valid_persona_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        PersonasConfig.model_validate(value)  # fail at config time, not at fit
        return value


class PersonaModel(Recommender):
    """Fit/persistence/profile plumbing shared by the two persona recommenders."""

    config_class = PersonaModelConfig

    def __init__(self, config: PersonaModelConfig | None = None) -> None:
        super().__init__(config)
        self.space: ItemSpace | None = None
        self.builder: ProfileBuilder | None = None
        self.user_ids: np.ndarray = np.zeros(0, dtype=object)
        self.popularity: np.ndarray = np.zeros(0, dtype=np.float32)  # training counts per item
        self.base: Recommender | None = None
        self.persona_store: Any = None
        self.embedder: Any = None
        self._profiles: OrderedDict[tuple, UserProfile] = OrderedDict()

    @property
    def cfg(self) -> PersonaModelConfig:
        return self.config  # type: ignore[return-value]

    def personas_config(self) -> PersonasConfig:
        return PersonasConfig.model_validate(self.cfg.persona)

    # -- fitting ------------------------------------------------------------------------------
    def _needs_base(self) -> bool:
        return True

    def _base_spec(self) -> dict[str, Any] | None:
        return getattr(self.cfg, "base", None)

    def fit(self, split: Split, **context: Any) -> Self:
        space = context.get("items")
        if not isinstance(space, ItemSpace):
            raise ConfigError(f"{self.name} needs the item space: fit(split, items=ItemSpace)")
        if space.n_items != split.n_items:
            raise ConfigError(f"item space has {space.n_items} items, the split {split.n_items}")
        self.n_items = split.n_items
        self.space = space
        self.user_ids = np.asarray(split.user_ids, dtype=object)
        train = split.history("train")
        self.popularity = np.bincount(train.items, minlength=split.n_items).astype(np.float32)
        self.builder = ProfileBuilder(
            space, TransitionStats.fit(train, space.fine, space.n_fine), self.personas_config()
        )
        self.persona_store = context.get("persona_store")
        self.embedder = context.get("embedder")
        self._profiles.clear()
        self.base = None
        if self._needs_base():
            base = context.get("base")
            if base is None:
                spec = dict(self._base_spec() or {"name": "sasrec"})
                base = build_recommender(str(spec.pop("name", "sasrec")), spec)
                rest = {k: v for k, v in context.items() if k not in ("base", "persona_store", "embedder")}
                base.fit(split, **rest)
            if base.n_items != split.n_items:
                raise ConfigError(
                    f"base model {base.name!r} scores {base.n_items} items, the split has {split.n_items}"
                )
            self.base = base
        self._after_fit(fitting=True)
        return self

    def _after_fit(self, fitting: bool = False) -> None:
        """Build derived structures (indices) once ``space`` is set (fit and load)."""

    def attach(self, *, persona_store: Any = None, embedder: Any = None) -> Self:
        """Re-attach live resources after :meth:`load` (or swap them): a persona store, an embedder."""
        if persona_store is not None:
            self.persona_store = persona_store
            self._profiles.clear()
        if embedder is not None:
            self.embedder = embedder
            getattr(self, "_text_cache", {}).clear()
        return self

    # -- profiles -----------------------------------------------------------------------------
    def profile(self, user: int, items: np.ndarray) -> UserProfile:
        """The persona of user ``user`` for exactly the history ``items`` (see module docstring)."""
        assert self.builder is not None, "fit or load the model first"
        items = np.asarray(items, dtype=np.int32)
        user_id = str(self.user_ids[user]) if 0 <= user < len(self.user_ids) else f"user-{user}"
        persona = self.persona_store.get(user_id) if self.persona_store is not None else None
        key = (
            int(user),
            len(items),
            hash(items.tobytes()),
            None if persona is None else (persona.version, persona.provenance.created_at),
        )
        hit = self._profiles.get(key)
        if hit is not None:
            self._profiles.move_to_end(key)
            return hit
        prof = self.builder.for_sequence(user_id, items, persona, user_idx=int(user))
        if self.cfg.profile_cache:
            self._profiles[key] = prof
            while len(self._profiles) > self.cfg.profile_cache:
                self._profiles.popitem(last=False)
        return prof

    def ranking_profile(self, prof: UserProfile) -> Profile:
        """The :class:`recommend.persona_ranking.Profile` of a user profile (no user edits offline)."""
        assert self.space is not None
        names = self.space.fine_names
        return Profile(
            interests={names[c]: w for c, w in prof.interests},
            explore=[(names[c], r) for c, r in prof.explore],
            summary=prof.summary,
        )

    # -- recommending with reasons ------------------------------------------------------------
    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        lists = self._slots(np.asarray(users, dtype=np.int64), history)
        return self._scores_from(lists)

    def _slots(self, users: np.ndarray, history: UserSequences) -> list[tuple[list[Ranked], np.ndarray]]:
        """Per user: the persona-shaped head (Ranked records) and the order key of all items."""
        raise NotImplementedError

    def _scores_from(self, lists: list[tuple[list[Ranked], np.ndarray]]) -> np.ndarray:
        out = np.empty((len(lists), self.n_items), dtype=np.float32)
        for row, (slots, rest) in enumerate(lists):
            out[row] = rest
            if slots:
                idx = np.fromiter((r.item for r in slots), dtype=np.int64, count=len(slots))
                out[row, idx] = SLOT_BASE + (len(slots) - np.arange(len(slots), dtype=np.float32)) / len(
                    slots
                )
        return out

    def recommend_explained(
        self, users: np.ndarray, history: UserSequences, k: int = 10, *, exclude_seen: bool = True
    ) -> list[list[Ranked]]:
        """The same top-``k`` as :meth:`recommend`, each item as a :class:`Ranked` record (kind,
        cluster, one-line reason from the persona); ``score`` is the item's score in :meth:`score`."""
        from personarec.recommend.base import mask_seen, top_k

        users = np.asarray(users, dtype=np.int64)
        lists = self._slots(users, history)
        scores = self._scores_from(lists)
        if exclude_seen:
            mask_seen(scores, users, history)
        items, top = top_k(scores, k)
        out = []
        for row, u in enumerate(users):
            keep = np.isfinite(top[row])
            out.append(
                self._records(int(u), items[row][keep], history[int(u)], lists[row][0], top[row][keep])
            )
        return out

    def explain(self, user_idx: int, items: np.ndarray, history: UserSequences | np.ndarray) -> list[str]:
        """One line per item: why it is (or would be) in ``user_idx``'s list given ``history`` (a
        UserSequences indexed by user, or the user's own chronological item sequence)."""
        seq = _user_items(user_idx, history)
        slots = self._slots(np.array([user_idx]), _single(user_idx, seq))[0][0]
        return [r.reason for r in self._records(user_idx, np.asarray(items), seq, slots)]

    def _records(
        self,
        user_idx: int,
        items: np.ndarray,
        seq: np.ndarray,
        slots: list[Ranked],
        scores: np.ndarray | None = None,
    ) -> list[Ranked]:
        """Slot items keep the record the list was built with; any other item is explained by
        its cluster's place in the persona (explore topic, interest, or neither)."""
        assert self.space is not None, "fit or load the model first"
        in_slots = {r.item: r for r in slots}
        prof = self.profile(user_idx, seq)
        names = self.space.fine_names
        weights, reasons = dict(prof.interests), dict(prof.explore)
        out = []
        for j, item in enumerate(np.asarray(items, dtype=np.int64)):
            score = float(scores[j]) if scores is not None else float("nan")
            if int(item) in in_slots:
                r = in_slots[int(item)]
                out.append(Ranked(r.item, score, r.kind, r.cluster, r.reason))
                continue
            c = int(self.space.fine[item])
            name = names[c]
            if c in reasons:
                out.append(
                    Ranked(int(item), score, "explore", name, f"Something new: {name}. {reasons[c]}".strip())
                )
            elif c in weights:
                out.append(Ranked(int(item), score, "interest", name, f"Because you like {name}."))
            else:
                out.append(Ranked(int(item), score, "model", name, self._model_reason()))
        return out

    def _model_reason(self) -> str:
        return "Close to what you watched recently."

    # -- persistence --------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        assert self.space is not None and self.builder is not None, "fit the model first"
        self.space.save(directory / "items")
        self.builder.transitions.save(directory / "transitions.npz")
        np.savez(directory / "state.npz", popularity=self.popularity)
        (directory / "users.json").write_text(json.dumps([str(u) for u in self.user_ids]))
        if self.base is not None:
            self.base.save(directory / "base")

    def _load_state(self, directory: Path) -> None:
        self.space = ItemSpace.load(directory / "items")
        state = np.load(directory / "state.npz")
        transitions = TransitionStats.load(directory / "transitions.npz")
        self.popularity = state["popularity"]
        self.builder = ProfileBuilder(self.space, transitions, self.personas_config())
        self.user_ids = np.asarray(json.loads((directory / "users.json").read_text()), dtype=object)
        self.base = load_recommender(directory / "base") if (directory / "base").exists() else None
        self._after_fit(fitting=False)


def _user_items(user: int, history: UserSequences | np.ndarray) -> np.ndarray:
    return history[int(user)] if isinstance(history, UserSequences) else np.asarray(history, dtype=np.int32)


def _single(user: int, seq: np.ndarray) -> UserSequences:
    """A UserSequences in which ``user`` has history ``seq`` (and every earlier user none)."""
    seq = np.asarray(seq, dtype=np.int32)
    indptr = np.zeros(int(user) + 2, dtype=np.int64)
    indptr[-1] = len(seq)
    return UserSequences(indptr=indptr, items=seq, timestamps=np.zeros(len(seq), dtype=np.int64))
