"""Student vs teacher on held-out users: topic agreement, grounding, future hits, speed.

Pure functions over persona payloads (``summary``/``interests``/``explore`` dicts), so the
benchmark and any report can use them on stored personas without running a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def topics(payload: dict[str, Any], part: str = "all") -> set[str]:
    """Cluster names of a persona: ``interests``, ``explore`` or ``all`` (both)."""
    keys = ("interests", "explore") if part == "all" else (part,)
    return {t["cluster"] for k in keys for t in payload.get(k, [])}


def f1(pred: set[str], truth: set[str]) -> float:
    if not pred and not truth:
        return 1.0
    return 2 * len(pred & truth) / (len(pred) + len(truth)) if pred or truth else 0.0


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def agreement(student: dict[str, dict[str, Any]], teacher: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean topic F1 / Jaccard of the student's clusters against the teacher's, per part, on the
    users both produced a persona for."""
    users = sorted(set(student) & set(teacher))
    out: dict[str, Any] = {"n_users": len(users)}
    for part in ("all", "interests", "explore"):
        fs = [f1(topics(student[u], part), topics(teacher[u], part)) for u in users]
        js = [jaccard(topics(student[u], part), topics(teacher[u], part)) for u in users]
        out[f"{part}_f1"] = round(float(np.mean(fs)), 4) if users else None
        out[f"{part}_jaccard"] = round(float(np.mean(js)), 4) if users else None
    return out


def future_scores(personas: dict[str, dict[str, Any]], future_clusters: dict[str, set[str]]) -> dict[str, Any]:
    """Against the held-out future: topic F1 of all persona clusters vs the future's clusters,
    exploit precision (interests in the future), explore hit-rate (any explore topic in the future)."""
    users = sorted(u for u in personas if u in future_clusters)
    f1s, hits, prec = [], [], []
    for u in users:
        fut = future_clusters[u]
        f1s.append(f1(topics(personas[u]), fut))
        hits.append(float(bool(topics(personas[u], "explore") & fut)))
        ints = topics(personas[u], "interests")
        prec.append(len(ints & fut) / len(ints) if ints else 0.0)
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    return {"n_users": len(users), "topic_f1": mean(f1s), "explore_hit_rate": mean(hits), "exploit_precision": mean(prec)}


def median(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return round(float(np.median(xs)), 4) if xs else None
