"""The persona reranker: a model's scores + the (user-edited) persona -> a short explained list.

Exploit: the model's scores as percentile ranks (1 = the model's best item; ranks, not raw
scores, so the persona's pull is the same for every model and score scale) plus
``interest_boost`` x the weight of the item's cluster among the persona's interests (strongest
interest = full boost). Explore: a quota of the list (``explore`` share) is filled with the model's
best items from the topics the user added and the persona's explore topics, round-robin over
topics and spread through the list so that every prefix holds its share. Blocked topics are never
shown; removed interests get no boost. Every item gets a one-line reason
(:mod:`personarec.recommend.explain`).

This module holds the reranker and the request type; :mod:`personarec.recommend.pipeline` runs
scorer -> reranker -> list for evaluation and serving alike.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from personarec.errors import PersonarecError
from personarec.items.space import ItemSpace
from personarec.personas.schema import Persona, PersonaEdits
from personarec.recommend.explain import Kind, added_topic_reason, describe, explore_reason, model_reason

T = TypeVar("T")


class RankingConfig(BaseModel):
    """How the persona shapes a ranking computed by the trained model."""

    model_config = ConfigDict(extra="forbid")

    interest_boost: float = Field(
        0.0,
        ge=0.0,
        description="added to the model's percentile rank (0..1) x interest weight of the item's cluster; 0 keeps the model's exploit order",
    )
    added_topic_weight: float = Field(0.5, ge=0.0, le=1.0, description="interest weight of a topic the user added")
    exclude_seen: bool | None = Field(
        None,
        description="never recommend an item already in the history (None = as the protocol card the model "
        "was trained under says; true/false overrides it for serving)",
    )


@dataclass(frozen=True)
class RankRequest:
    """One user's ranking request, offline or online: the history to rank for and the persona
    controls that apply to it.

    ``persona`` is the stored persona to use (None: the fallback persona of ``items``); it is used
    only if it describes a prefix of ``items`` (:func:`personarec.personas.profiles.usable`).
    ``explore`` None = the model's own explore share (what offline evaluation measured).
    """

    user_id: str
    items: np.ndarray  # chronological item indices
    user_idx: int = -1  # index in the training split, -1 = a user it never saw
    persona: Persona | None = None
    edits: PersonaEdits | None = None
    explore: float | None = None


@dataclass
class Profile:
    """The persona as ranked: topics by name, the user's edits applied."""

    interests: dict[str, float] = field(default_factory=dict)  # cluster -> weight
    added: list[str] = field(default_factory=list)
    explore: list[tuple[str, str]] = field(default_factory=list)  # (cluster, reason)
    blocked: set[str] = field(default_factory=set)
    summary: str = ""


class UnknownTopicError(PersonarecError, ValueError):
    """User-supplied topics (added or blocked) that are not catalogue cluster names."""

    def __init__(self, topics: Sequence[str]) -> None:
        shown = [_one_line(t) for t in topics[:5]]
        more = f" (+{len(topics) - 5} more)" if len(topics) > 5 else ""
        super().__init__(f"unknown topic(s) {shown}{more}: topics must be catalogue cluster names")
        self.topics = list(topics)


def _one_line(text: str, limit: int = 60) -> str:
    """A topic as the error shows it: control and invisible characters escaped, cut to ``limit``."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unknown_topics(edits: PersonaEdits, topics: Collection[str]) -> list[str]:
    """The added and blocked topics of ``edits`` that are not in ``topics`` (exact names), sorted."""
    return sorted({t for t in [*edits.added_topics, *edits.blocked_topics] if t not in topics})


def check_edits(edits: PersonaEdits, topics: Collection[str]) -> PersonaEdits:
    """``edits`` if every added or blocked topic is a catalogue cluster name, else
    :class:`UnknownTopicError`: free text a user types (or injects) never becomes a topic."""
    bad = unknown_topics(edits, topics)
    if bad:
        raise UnknownTopicError(bad)
    return edits


def edit_profile(
    prof: Profile, edits: PersonaEdits | None, added_weight: float = 0.5, topics: Collection[str] | None = None
) -> Profile:
    """``prof`` with the user's edits applied: removed and blocked topics dropped, added topics
    become interests (weight ``added_weight``), a summary override replaces the summary. With
    ``topics`` (the catalogue's cluster names), an added topic that is not one is ignored, so a
    stored edit that predates the catalogue (or skipped :func:`check_edits`) never reaches a view."""
    edits = edits or PersonaEdits()
    if topics is not None:
        edits = edits.model_copy(update={"added_topics": [t for t in edits.added_topics if t in topics]})
    blocked = set(edits.blocked_topics) | prof.blocked
    removed = set(edits.removed_interests) | blocked
    out = Profile(
        interests={c: w for c, w in prof.interests.items() if c not in removed},
        added=[c for c in prof.added if c not in blocked],
        explore=[(c, r) for c, r in prof.explore if c not in removed],
        blocked=blocked,
        summary=prof.summary if edits.summary_override is None else edits.summary_override,
    )
    for topic in edits.added_topics:
        if topic not in blocked and topic not in out.interests:
            out.interests[topic] = added_weight
            out.added.append(topic)
    out.explore = [(c, r) for c, r in out.explore if c not in out.interests]
    return out


def apply_edits(
    persona: Persona | None,
    edits: PersonaEdits | None,
    added_weight: float = 0.5,
    topics: Collection[str] | None = None,
) -> Profile:
    """The stored persona (or none yet) with the user's edits applied (``topics``: see :func:`edit_profile`)."""
    base = Profile()
    if persona is not None:
        base = Profile(
            interests={i.cluster: i.weight for i in persona.interests},
            explore=[(t.cluster, t.reason) for t in persona.explore],
            summary=persona.summary,
        )
    return edit_profile(base, edits, added_weight, topics)


def edited_persona(persona: Persona, prof: Profile) -> dict:
    """The persona as the user sees it (edits applied), for GET /persona."""
    out = persona.model_dump(mode="json")
    out["summary"] = prof.summary
    out["interests"] = [{"cluster": c, "weight": w} for c, w in prof.interests.items()]
    out["explore"] = [{"cluster": c, "reason": r} for c, r in prof.explore]
    return out


@dataclass
class Ranked:
    item: int
    score: float
    kind: Kind
    cluster: str
    reason: str


def rank(
    scores: np.ndarray,
    seen: np.ndarray,
    space: ItemSpace,
    prof: Profile,
    k: int,
    explore: float,
    config: RankingConfig,
    model_name: str | None = None,
    by_name: dict[str, int] | None = None,
) -> list[Ranked]:
    """Top-``k`` items for one user (see the module docstring)."""
    by_name = by_name if by_name is not None else space.cluster_by_name()
    z, boosted = _exploit_scores(scores, seen, space, prof, config, by_name)
    k = min(k, int(np.isfinite(boosted).sum()))
    picks = _explore_picks(z, boosted, space.fine, prof, by_name, min(int(round(k * explore)), k))
    exploit = _exploit_picks(boosted, space, prof, k - len(picks), {r.item for r in picks}, model_name)
    return interleave(exploit, picks, len(picks) / max(k, 1))[:k]


def _exploit_scores(
    scores: np.ndarray, seen: np.ndarray, space: ItemSpace, prof: Profile, config: RankingConfig,
    by_name: dict[str, int],
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Percentile ranks (seen and blocked items -inf) and the same plus the interest boost."""
    s = np.array(scores, dtype=np.float32, copy=True)
    s[~np.isfinite(s)] = -np.inf
    z = percentile(s)[0]
    z[~np.isfinite(s)] = -np.inf
    if config.exclude_seen is not False and len(seen):  # unresolved (None) masks: the safe side
        z[seen[(seen >= 0) & (seen < len(s))]] = -np.inf
    z[topic_mask(space, prof.blocked, by_name)[space.fine]] = -np.inf
    weight = np.zeros(space.n_fine, dtype=np.float32)
    top_w = max(prof.interests.values(), default=0.0)
    for name, w in prof.interests.items():
        if name in by_name and top_w > 0:
            weight[by_name[name]] = w / top_w
    return z, z + config.interest_boost * weight[space.fine]


def topic_mask(space: ItemSpace, topics: set[str] | list[str], by_name: dict[str, int]) -> np.ndarray:
    """Bool ``[n_fine]``: the clusters named in ``topics``."""
    mask = np.zeros(space.n_fine, dtype=bool)
    for name in topics:
        if name in by_name:
            mask[by_name[name]] = True
    return mask


def _explore_picks(
    z: np.ndarray, boosted: np.ndarray, fine: np.ndarray, prof: Profile, by_name: dict[str, int], n: int
) -> list[Ranked]:
    """``n`` items from the added and explore topics: per topic its best items by model score,
    taken round-robin (added topics first: the user asked for them)."""
    topics = [(c, "added_topic", "") for c in prof.added] + [(c, "explore", r) for c, r in prof.explore]
    topics = [(by_name[c], c, kind, r) for c, kind, r in topics if c in by_name]
    if n <= 0 or not topics:
        return []
    queues = []
    for cid, name, kind, why in topics:
        members = np.flatnonzero((fine == cid) & np.isfinite(z))
        order = members[np.argsort(-z[members], kind="stable")][:n]
        if kind == "explore":
            queues.append([Ranked(int(i), float(boosted[i]), "explore", name, explore_reason(name, why)) for i in order])
        else:
            reason = added_topic_reason(name)
            queues.append([Ranked(int(i), float(boosted[i]), "added_topic", name, reason) for i in order])
    return round_robin(queues, n, key=lambda r: r.item)


def _exploit_picks(
    boosted: np.ndarray, space: ItemSpace, prof: Profile, n: int, taken: set[int], model_name: str | None
) -> list[Ranked]:
    """The ``n`` best boosted items not already taken, each with the reason its topic gives."""
    if n <= 0:
        return []
    cand = boosted.copy()
    if taken:
        cand[list(taken)] = -np.inf
    m = min(n, int(np.isfinite(cand).sum()))
    if m <= 0:
        return []
    top = np.argpartition(-cand, m - 1)[:m]
    top = top[np.lexsort((top, -cand[top]))]
    fallback, out = model_reason(model_name), []
    for i in top:
        name = space.fine_names[space.fine[i]]
        kind, reason = describe(name, interests=prof.interests, added=prof.added, explore={}, fallback_reason=fallback)
        out.append(Ranked(int(i), float(cand[i]), kind, name, reason))
    return out


def round_robin(queues: Sequence[Sequence[T]], limit: int, key=lambda x: x) -> list[T]:
    """Take the first element of every queue, then the second, ... until ``limit`` elements; an
    element whose ``key`` was already taken is skipped (topics may share items)."""
    out: list[T] = []
    taken: set = set()
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < limit and key(q[depth]) not in taken:
                taken.add(key(q[depth]))
                out.append(q[depth])
        depth += 1
    return out


def interleave(exploit: Sequence[T], explore: Sequence[T], quota: float, *, leftover: bool = True) -> list[T]:
    """One list in which every prefix holds its share of explore items (:func:`quota_schedule`);
    with ``leftover``, the remaining explore items follow when the exploit pool ran short (a short
    list is then filled rather than cut)."""
    kinds = quota_schedule(len(exploit), len(explore), quota)
    exploit_it, explore_it = iter(exploit), iter(explore)
    out = [next(explore_it) if is_explore else next(exploit_it) for is_explore in kinds]
    if leftover:
        out.extend(explore_it)
    return out


def percentile(scores: np.ndarray) -> np.ndarray:
    """Row-wise percentile ranks in (0, 1] (1 = best, stable ties by index): ranks, not raw scores,
    so a persona's pull is the same for every model and score scale."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    n = s.shape[1]
    order = np.argsort(-s, axis=1, kind="stable")
    z = np.empty_like(s)
    np.put_along_axis(z, order, np.broadcast_to(1.0 - np.arange(n, dtype=np.float32) / max(n, 1), s.shape), axis=1)
    return z


def quota_schedule(n_exploit: int, n_explore: int, quota: float) -> list[bool]:
    """Slot kinds (True = explore) such that every prefix of length ``p`` holds
    ``round(p * quota)`` explore slots (halves round down: exploit first), while both pools last.
    When the explore pool runs out, exploit items continue alone; when the exploit pool runs out,
    the list stops (explore items are never piled up at the end, which would break the quota of
    longer prefixes)."""

    def due(p: int) -> int:
        return int(np.ceil(p * quota - 0.5 - 1e-9))

    kinds: list[bool] = []
    e = x = 0
    while True:
        p = len(kinds) + 1
        want_explore = due(p) > due(p - 1)
        if want_explore and e < n_explore:
            kinds.append(True)
            e += 1
        elif x < n_exploit and (not want_explore or e >= n_explore):
            kinds.append(False)
            x += 1
        else:
            break
    return kinds
