"""What the persona-driven recommenders share: per-request profiles, slot scores, explanations.

Both models (:mod:`~personarec.recommend.persona_retrieval`, :mod:`~personarec.recommend.persona_hybrid`)
rank :class:`~personarec.recommend.persona_ranking.RankRequest` objects: a history, the stored
persona (used when :func:`~personarec.personas.profiles.usable`: it describes a prefix of that
history and was written by an LLM, else the deterministic fallback persona of the history), the
user's edits and an explore share. ``score(users, history)`` (offline) makes those requests from
``history[u]`` and the attached persona store, so a validation run (train history) never sees a
persona written after the validation event; the API makes them from the live history and the
serving store. One code path, so offline numbers measure what serving shows.

``score()`` returns a full ``[n_users, n_items]`` matrix, as the evaluation harness ranks it: the
persona-shaped list (the "head") gets the highest scores in head order, every other item follows
in the underlying order (similarity, resp. the base model's), so full-ranking metrics are well
defined. :class:`~personarec.recommend.pipeline.RankingPipeline` turns the same rows into
explained lists (:meth:`describe_items`).

:class:`~personarec.recommend.base.FitContext` fields read by ``fit``: ``items`` (ItemSpace,
required), ``persona_store`` (PersonaStore, optional: LLM personas), ``base`` (an already fitted
Recommender, optional; else the ``base`` config is fitted with the same context), ``embedder`` (optional: a
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
    FitContext,
    Recommender,
    RecommenderConfig,
    build_recommender,
    load_recommender,
)
from personarec.recommend.explain import describe
from personarec.recommend.persona_ranking import Profile, Ranked, RankRequest, edit_profile

Embedder = Callable[[list[str]], np.ndarray]

#: Slot scores live in (SLOT_BASE, SLOT_BASE + 1]; every other item scores at most ~1.
SLOT_BASE = 3.0


class PersonaModelConfig(RecommenderConfig):
    explore_quota: float = Field(
        0.2, ge=0.0, le=1.0, description="share of list slots given to explore clusters"
    )
    exclude_seen: bool | None = Field(
        None,
        description="never put an item of the history into the list; None = as the protocol card of the "
        "split says (true/false must agree with the card: a fit against it is an error, never a silent change)",
    )
    persona: dict[str, Any] = Field(
        default_factory=dict,
        description="personas config (max_interests, max_explore, prompt.recency_half_life...) of the fallback persona",
    )
    added_topic_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="interest weight of a topic the user added (serving edits)"
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

    def _fit(self, split: Split, ctx: FitContext) -> Self:
        space = ctx.items
        if not isinstance(space, ItemSpace):
            raise ConfigError(f"{self.name} needs the item space: fit(split, items=ItemSpace)")
        if space.n_items != split.n_items:
            raise ConfigError(f"item space has {space.n_items} items, the split {split.n_items}")
        if self.cfg.exclude_seen is not None and self.cfg.exclude_seen != split.protocol.exclude_seen:
            card = "excluded" if split.protocol.exclude_seen else "kept"
            raise ConfigError(
                f"{self.name}.exclude_seen = {str(self.cfg.exclude_seen).lower()} but the protocol card has seen "
                f"items {card}: the card decides; drop the setting or change split.exclude_seen"
            )
        self.n_items = split.n_items
        self.space = space
        self.user_ids = np.asarray(split.user_ids, dtype=object)
        train = split.history("train")
        self.popularity = np.bincount(train.items, minlength=split.n_items).astype(np.float32)
        self.builder = ProfileBuilder(
            space, TransitionStats.fit(train, space.fine, space.n_fine), self.personas_config()
        )
        self.persona_store = ctx.persona_store
        self.embedder = ctx.embedder
        self._profiles.clear()
        self.base = None
        if self._needs_base():
            base = ctx.base
            if base is None:
                spec = dict(self._base_spec() or {"name": "sasrec"})
                base = build_recommender(str(spec.pop("name", "sasrec")), spec)
                base.fit(split, FitContext.of(ctx, persona_store=None, embedder=None))
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
    def requests_for(self, users: np.ndarray, history: UserSequences) -> list[RankRequest]:
        """Offline requests: each user's ``history[u]`` with the persona the attached store holds."""
        out = []
        for u in np.asarray(users, dtype=np.int64):
            user_id = str(self.user_ids[u]) if 0 <= u < len(self.user_ids) else f"user-{u}"
            persona = self.persona_store.get(user_id) if self.persona_store is not None else None
            out.append(RankRequest(user_id=user_id, items=history[int(u)], user_idx=int(u), persona=persona))
        return out

    def profile(self, user: int, items: np.ndarray) -> UserProfile:
        """The persona of split user ``user`` for exactly the history ``items`` (persona from the store)."""
        return self.profile_for(self.requests_for(np.array([user]), _single(user, items))[0])

    def profile_for(self, request: RankRequest) -> UserProfile:
        """The persona of the request's history: its stored persona when usable, else the
        fallback persona of ``request.items`` (memoised by user, history and persona version)."""
        assert self.builder is not None, "fit or load the model first"
        items = np.asarray(request.items, dtype=np.int32)
        persona = request.persona
        key = (
            request.user_id,
            request.user_idx,
            len(items),
            hash(items.tobytes()),
            None if persona is None else (persona.version, persona.provenance.created_at),
        )
        hit = self._profiles.get(key)
        if hit is not None:
            self._profiles.move_to_end(key)
            return hit
        prof = self.builder.for_sequence(request.user_id, items, persona, user_idx=request.user_idx)
        if self.cfg.profile_cache:
            self._profiles[key] = prof
            while len(self._profiles) > self.cfg.profile_cache:
                self._profiles.popitem(last=False)
        return prof

    def shaped_profile(self, request: RankRequest, prof: UserProfile | None = None) -> Profile:
        """The profile the list is built from: topics by name, the request's user edits applied."""
        assert self.space is not None
        prof = prof if prof is not None else self.profile_for(request)
        names = self.space.fine_names
        base = Profile(
            interests={names[c]: w for c, w in prof.interests},
            explore=[(names[c], r) for c, r in prof.explore],
            summary=prof.summary,
        )
        return edit_profile(base, request.edits, self.cfg.added_topic_weight)

    def explore_share(self, request: RankRequest) -> float:
        """The request's explore share, else the configured quota (what evaluation measures)."""
        return self.cfg.explore_quota if request.explore is None else float(request.explore)

    # -- scoring ------------------------------------------------------------------------------
    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        return self.score_requests(self.requests_for(users, history))[0]

    def masks_seen(self, exclude_seen: bool | None = None) -> bool:
        """Whether seen items are kept out of the persona-shaped list: the caller's protocol
        (``exclude_seen``, e.g. an evaluation's card) else the card the model was fitted on."""
        return self.exclude_seen if exclude_seen is None else bool(exclude_seen)

    def score_sequence(self, items: np.ndarray) -> np.ndarray:
        """A live sequence of a user this model has no persona for: the fallback persona."""
        return self.score_requests([RankRequest(user_id="", items=np.asarray(items, dtype=np.int32))])[0][0]

    def score_requests(
        self, requests: list[RankRequest], exclude_seen: bool | None = None
    ) -> tuple[np.ndarray, list[list[Ranked]]]:
        """Full score rows (the persona-shaped head first, in order) and the head's records;
        ``exclude_seen`` None = the fitted card's seen-item rule (:meth:`masks_seen`)."""
        heads = self._heads(requests, self.masks_seen(exclude_seen))
        return self._scores_from(heads), [slots for slots, _ in heads]

    def _heads(self, requests: list[RankRequest], exclude_seen: bool) -> list[tuple[list[Ranked], np.ndarray]]:
        """Per request: the persona-shaped head (Ranked records, seen items out of it when
        ``exclude_seen``) and the order key of all items."""
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

    def describe_items(
        self, request: RankRequest, items: np.ndarray, head: list[Ranked], scores: np.ndarray | None = None
    ) -> list[Ranked]:
        """Records of ``items``: head items keep the record the list was built with; any other item
        is explained by its cluster's place in the (edited) persona."""
        assert self.space is not None, "fit or load the model first"
        in_head = {r.item: r for r in head}
        prof = self.shaped_profile(request)
        explore, fallback = dict(prof.explore), self._model_reason()
        out = []
        for j, item in enumerate(np.asarray(items, dtype=np.int64)):
            score = float(scores[j]) if scores is not None else float("nan")
            if int(item) in in_head:
                r = in_head[int(item)]
                out.append(Ranked(r.item, score, r.kind, r.cluster, r.reason))
                continue
            name = self.space.fine_names[self.space.fine[item]]
            kind, reason = describe(
                name, interests=prof.interests, added=prof.added, explore=explore, fallback_reason=fallback
            )
            out.append(Ranked(int(item), score, kind, name, reason))
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


def _single(user: int, seq: np.ndarray) -> UserSequences:
    """A UserSequences in which ``user`` has history ``seq`` (and every earlier user none)."""
    seq = np.asarray(seq, dtype=np.int32)
    indptr = np.zeros(int(user) + 2, dtype=np.int64)
    indptr[-1] = len(seq)
    return UserSequences(indptr=indptr, items=seq, timestamps=np.zeros(len(seq), dtype=np.int64))
