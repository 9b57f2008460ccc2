"""Turn the model's scores for a live sequence + the (user-edited) persona into a short list.

Exploit: the model's scores as percentile ranks (1 = the model's best item; ranks, not raw
scores, so the persona's pull is the same for every model and score scale) plus
``interest_boost`` x the weight of the item's cluster among the persona's interests (strongest
interest = full boost). Explore: a quota of the
list (``explore`` share) is filled with the model's best items from the persona's explore topics,
round-robin over topics and spread through the list. Blocked topics are never shown; removed
interests get no boost; added topics count as interests. Every item gets a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from personarec.items.space import ItemSpace
from personarec.personas.schema import Persona, PersonaEdits

Kind = Literal["interest", "added_topic", "model", "explore"]


class RankingConfig(BaseModel):
    """How the persona shapes a ranking computed by the trained model."""

    model_config = ConfigDict(extra="forbid")

    interest_boost: float = Field(
        0.1, ge=0.0, description="added to the model's percentile rank (0..1) x interest weight of the item's cluster"
    )
    added_topic_weight: float = Field(0.5, ge=0.0, le=1.0, description="interest weight of a topic the user added")
    explore_default: float = Field(0.2, ge=0.0, le=1.0, description="share of the list given to explore topics")
    max_history: int = Field(200, ge=1, description="most recent events fed to the model")
    exclude_seen: bool = Field(True, description="never recommend an item already in the history")


@dataclass
class Profile:
    """The persona as served: generated persona with the user's edits applied."""

    interests: dict[str, float] = field(default_factory=dict)  # cluster -> weight
    added: list[str] = field(default_factory=list)
    explore: list[tuple[str, str]] = field(default_factory=list)  # (cluster, reason)
    blocked: set[str] = field(default_factory=set)
    summary: str = ""


def apply_edits(persona: Persona | None, edits: PersonaEdits | None, added_weight: float = 0.5) -> Profile:
    edits = edits or PersonaEdits()
    blocked = set(edits.blocked_topics)
    removed = set(edits.removed_interests) | blocked
    prof = Profile(blocked=blocked)
    if persona is not None:
        prof.interests = {i.cluster: i.weight for i in persona.interests if i.cluster not in removed}
        prof.explore = [(t.cluster, t.reason) for t in persona.explore if t.cluster not in removed]
        prof.summary = persona.summary
    for topic in edits.added_topics:
        if topic not in blocked and topic not in prof.interests:
            prof.interests[topic] = added_weight
            prof.added.append(topic)
    prof.explore = [(c, r) for c, r in prof.explore if c not in prof.interests]
    if edits.summary_override is not None:
        prof.summary = edits.summary_override
    return prof


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
    s = np.array(scores, dtype=np.float32, copy=True)
    n = len(s)
    s[~np.isfinite(s)] = -np.inf
    z = percentile(s)[0]
    z[~np.isfinite(s)] = -np.inf
    if config.exclude_seen and len(seen):
        z[seen[(seen >= 0) & (seen < n)]] = -np.inf
    by_name = by_name if by_name is not None else space.cluster_by_name()
    fine = space.fine
    cluster_weight = np.zeros(space.n_fine, dtype=np.float32)
    top_w = max(prof.interests.values(), default=0.0)
    for name, w in prof.interests.items():
        if name in by_name and top_w > 0:
            cluster_weight[by_name[name]] = w / top_w
    blocked = np.zeros(space.n_fine, dtype=bool)
    for name in prof.blocked:
        if name in by_name:
            blocked[by_name[name]] = True
    z[blocked[fine]] = -np.inf
    boosted = z + config.interest_boost * cluster_weight[fine]

    available = int(np.isfinite(boosted).sum())
    k = min(k, available)
    topics = [(by_name[c], c, r) for c, r in prof.explore if c in by_name and not blocked[by_name[c]]]
    n_explore = min(int(round(k * explore)), k) if topics else 0

    # explore picks: per topic, its members by model score, taken round-robin
    chosen: set[int] = set()
    explore_picks: list[Ranked] = []
    if n_explore:
        queues = []
        for cid, name, reason in topics:
            members = np.flatnonzero((fine == cid) & np.isfinite(z))
            order = members[np.argsort(-z[members], kind="stable")][:n_explore]
            queues.append([(int(i), name, reason) for i in order])
        depth = 0
        while len(explore_picks) < n_explore and any(depth < len(q) for q in queues):
            for q in queues:
                if depth < len(q) and len(explore_picks) < n_explore:
                    item, name, reason = q[depth]
                    chosen.add(item)
                    explore_picks.append(Ranked(item, float(boosted[item]), "explore", name, f"Something new: {name}. {reason}"))
            depth += 1
    n_exploit = k - len(explore_picks)
    exploit: list[Ranked] = []
    if n_exploit > 0:
        cand = boosted.copy()
        if chosen:
            cand[list(chosen)] = -np.inf
        m = min(n_exploit, int(np.isfinite(cand).sum()))
        if m > 0:
            top = np.argpartition(-cand, m - 1)[:m]
            top = top[np.argsort(-cand[top], kind="stable")]
            for i in top:
                name = space.fine_names[fine[i]]
                if name in prof.added:
                    kind, reason = "added_topic", f"You added {name} to your interests."
                elif name in prof.interests:
                    kind, reason = "interest", f"Because you like {name}."
                else:
                    kind, reason = "model", f"Ranked highly by the {model_name or 'recommendation'} model for your history."
                exploit.append(Ranked(int(i), float(cand[i]), kind, name, reason))
    # spread explore items so that every prefix of the list holds its share of them
    kinds = quota_schedule(len(exploit), len(explore_picks), len(explore_picks) / max(k, 1))
    exploit_it, explore_it = iter(exploit), iter(explore_picks)
    out = [next(explore_it) if is_explore else next(exploit_it) for is_explore in kinds]
    out.extend(explore_it)  # only when the exploit pool ran short
    return out[:k]


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
