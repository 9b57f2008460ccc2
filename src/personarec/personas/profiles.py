"""Every user's persona as arrays a recommender can use: interest clusters, explore clusters, text.

Recommenders that learn from personas (persona-distilled SASRec) or retrieve with them (persona
retrieval) need a persona for *every* user, not only the few an LLM has written so far. This module
takes the LLM persona from the store when it was built from exactly the history in question, and
the deterministic fallback persona of that same history otherwise; ``from_llm`` records which one
each user got, so results can state the LLM share honestly.

Leakage rule: a stored persona is used only if its ``version`` (events included) is at most the
length of the history asked for and it is not a hindsight label; a persona that saw later events
(validation or test) is never used for an earlier stage, while a persona a few events behind is
used, offline as online (stale-while-revalidate), so both rank the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from personarec.data.splits import Split
from personarec.items.space import ItemSpace
from personarec.personas.config import PersonasConfig
from personarec.personas.fallback import fallback_payload
from personarec.personas.history import PersonaContext, Stage, UserHistory, build_context, user_history
from personarec.personas.schema import Persona
from personarec.personas.transitions import TransitionStats
from personarec.personas.store.base import PersonaStore


@dataclass(frozen=True)
class UserProfiles:
    """Per-user persona content, indexed by the split's user index."""

    stage: Stage  # the history the personas describe: "valid" = training events, "test" = + validation
    texts: list[str]  # text that gets embedded (summary + interests + explore topics)
    interests: list[list[tuple[int, float]]]  # (fine cluster index, weight), strongest first
    explore: list[list[int]]  # fine cluster indices to explore
    from_llm: np.ndarray  # bool [n_users]: True = LLM persona from the store, False = fallback

    @property
    def n_users(self) -> int:
        return len(self.texts)

    @property
    def llm_share(self) -> float:
        return float(self.from_llm.mean()) if len(self.from_llm) else 0.0

    @classmethod
    def build(
        cls,
        split: Split,
        space: ItemSpace,
        stage: Stage = "valid",
        store: PersonaStore | None = None,
        config: PersonasConfig | None = None,
    ) -> UserProfiles:
        """Profiles of all users of ``split`` for the history ``stage`` (no LLM is called)."""
        profiler = ProfileBuilder.from_split(split, space, config)
        sequences = split.history(stage)
        texts: list[str] = []
        interests: list[list[tuple[int, float]]] = []
        explore: list[list[int]] = []
        from_llm = np.zeros(split.n_users, dtype=bool)
        for u in range(split.n_users):
            history = user_history(split, u, stage, sequences)
            profile = profiler.profile(history, store.get(history.user_id) if store is not None else None)
            from_llm[u] = profile.from_llm
            interests.append(profile.interests)
            explore.append(profile.explore_clusters)
            texts.append(profile.text)
        return cls(stage=stage, texts=texts, interests=interests, explore=explore, from_llm=from_llm)


def usable(persona: Persona, history_length: int) -> bool:
    """A stored persona may describe this history: it saw no event beyond it (``version <=`` its
    length: a persona lagging a few events behind is what serving shows while a refresh is queued,
    one from the future would leak), it was written by an LLM and it is not a hindsight label."""
    prov = persona.provenance
    return persona.version <= history_length and not prov.fallback and not prov.hindsight


def persona_text(summary: str, interests: list[str], explore: list[str]) -> str:
    """The text a persona is embedded as (the same sentence model as the items)."""
    parts = [summary.strip()]
    if interests:
        parts.append("Interests: " + "; ".join(interests) + ".")
    if explore:
        parts.append("Open to: " + "; ".join(explore) + ".")
    return " ".join(p for p in parts if p)


# -- one history at a time ------------------------------------------------------------------------
@dataclass(frozen=True)
class UserProfile:
    """The persona of ONE history, as cluster indices a recommender can use.

    ``version`` is the history length it describes; ``from_llm`` tells whether the stored LLM
    persona was used (it described exactly this history) or the deterministic fallback.
    """

    user_id: str
    version: int
    summary: str
    text: str  # what gets embedded: see :func:`persona_text`
    interests: list[tuple[int, float]]  # (fine cluster index, weight), strongest first
    explore: list[tuple[int, str]]  # (fine cluster index, one-line reason)
    from_llm: bool

    @property
    def explore_clusters(self) -> list[int]:
        return [c for c, _ in self.explore]


class ProfileBuilder:
    """Builds a :class:`UserProfile` for any item sequence, without a split at hand.

    Needs only the item space, the TRAINING transition statistics (explore candidates of the
    fallback persona) and the personas config, so a saved recommender can rebuild profiles for
    the live histories it is asked to score. The fallback context comes from
    :func:`~personarec.personas.history.build_context`, the same function persona generation uses.
    """

    def __init__(
        self, space: ItemSpace, transitions: TransitionStats, config: PersonasConfig | None = None
    ) -> None:
        self.space = space
        self.transitions = transitions
        self.config = (config or PersonasConfig()).model_copy(update={"hindsight": False})
        self.by_name = space.cluster_by_name()

    @classmethod
    def from_split(
        cls, split: Split, space: ItemSpace, config: PersonasConfig | None = None
    ) -> ProfileBuilder:
        return cls(space, TransitionStats.fit(split.history("train"), space.fine, space.n_fine), config)

    def context(self, history: UserHistory) -> PersonaContext:
        """The fallback persona's context (statistics + explore candidates) of ``history``."""
        return build_context(history, self.space, self.transitions, self.config, titles=[])  # no prompt here

    def profile(self, history: UserHistory, persona: Persona | None = None) -> UserProfile:
        """``persona`` (a stored LLM persona) is used only if :func:`usable` for this history."""
        from_llm = persona is not None and usable(persona, history.version)
        if from_llm:
            assert persona is not None
            payload: dict[str, Any] = persona.model_dump()
        else:
            payload = fallback_payload(
                self.context(history), self.config.max_interests, self.config.max_explore
            )
        by_name, names = self.by_name, self.space.fine_names
        ints = [
            (by_name[i["cluster"]], float(i["weight"]))
            for i in payload["interests"]
            if i["cluster"] in by_name
        ]
        exps = [
            (by_name[e["cluster"]], str(e.get("reason", "")))
            for e in payload["explore"]
            if e["cluster"] in by_name
        ]
        text = persona_text(payload["summary"], [names[c] for c, _ in ints], [names[c] for c, _ in exps])
        return UserProfile(
            user_id=history.user_id, version=history.version, summary=payload["summary"], text=text,
            interests=ints, explore=exps, from_llm=bool(from_llm),
        )  # fmt: skip

    def for_sequence(
        self, user_id: str, items: np.ndarray, persona: Persona | None = None, user_idx: int = -1
    ) -> UserProfile:
        """Profile of ``user_id`` whose chronological history is ``items`` (``persona``, the stored
        one, is used when its version equals ``len(items)``, else the fallback persona of ``items``)."""
        items = np.asarray(items, dtype=np.int32)
        history = UserHistory(
            user_idx=int(user_idx), user_id=str(user_id), items=items,
            timestamps=np.zeros(len(items), dtype=np.int64), stage="live",
        )  # fmt: skip
        return self.profile(history, persona)
