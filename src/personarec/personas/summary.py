"""The summary a person reads: composed faithfully from the structured fields, or checked.

A persona's summary must agree with its fields: every cluster it names is one of its interests or
explore topics, it mentions the top interest, and it carries no digit runs or copied field syntax.
:func:`compose_summary` writes such a summary from the fields alone (the default when the backend
is a small model); :func:`check_summary` validates a summary a model wrote freely (a strong,
OpenAI-compatible backend), and the engine replaces a failing one with the composed one, saying so
in the provenance (``summary_source``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from personarec.personas.history import PersonaContext

_DIGIT_RUN = re.compile(r"\d{4,}")
_FIELD_SYNTAX = re.compile(r"[{}\[\]]|\b(?:interests|explore|cluster|weight|summary)\b\s*[:=]|\"\s*:", re.I)


def _join(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _fit(parts: list[str], limit: int) -> str:
    """Sentences in order while they fit ``limit`` characters (the first always, cut if needed)."""
    out = ""
    for p in parts:
        candidate = (out + " " + p).strip()
        if len(candidate) <= limit:
            out = candidate
        elif not out:
            out = p[: limit - 1].rstrip() + "…"
    return out


def compose_summary(
    interests: Sequence[dict[str, Any]], explore: Sequence[dict[str, Any]], ctx: PersonaContext, limit: int = 240
) -> str:
    """"Mostly A and B, also C. Lately: D. Something new to try: E." from the fields only."""
    names = [str(i["cluster"]) for i in interests]
    parts = [f"Mostly {_join(names[:2])}." if names else ""]
    if len(names) > 2:
        parts.append(f"Also {_join(names[2:4])}.")
    if ctx.stats and names:
        recent = min(ctx.stats, key=lambda s: s.events_since).name
        if recent in names and recent != names[0]:
            parts.append(f"Lately: {recent}.")
    if explore:
        parts.append(f"Something new to try: {explore[0]['cluster']}.")
    return _fit([p for p in parts if p], limit)


def compose_reason(source: str | None, limit: int = 90) -> str:
    """The reason of an explore topic, from the user's cluster that proposed it (either prior)."""
    text = f"Also liked by people who like {source}." if source else "Liked by people with similar tastes."
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def named_clusters(summary: str, all_names: Iterable[str]) -> set[str]:
    """Catalogue cluster names that appear verbatim in ``summary`` (longest match wins)."""
    found: set[str] = set()
    text = summary.casefold()
    for name in sorted(set(all_names), key=len, reverse=True):
        key = name.casefold()
        if key and key in text:
            found.add(name)
            text = text.replace(key, " ")
    return found


def check_summary(summary: str, payload: dict[str, Any], all_names: Iterable[str]) -> list[str]:
    """Problems that make a summary disagree with its fields (empty = consistent)."""
    problems = []
    fields = {str(i["cluster"]) for i in payload.get("interests", [])} | {
        str(e["cluster"]) for e in payload.get("explore", [])
    }
    stray = named_clusters(summary, all_names) - fields
    if stray:
        problems.append(f"names clusters outside its fields: {sorted(stray)[:3]}")
    interests = payload.get("interests") or []
    if interests:
        top = str(interests[0]["cluster"])
        if top.casefold() not in summary.casefold():
            problems.append(f"does not mention the top interest {top!r}")
    rest = summary.casefold()  # the catalogue's own names may hold digits or brackets: check the rest
    for name in sorted(fields, key=len, reverse=True):
        rest = rest.replace(name.casefold(), " ")
    if _DIGIT_RUN.search(rest):
        problems.append("contains a digit run")
    if _FIELD_SYNTAX.search(rest):
        problems.append("contains copied field syntax")
    if not summary.strip():
        problems.append("empty")
    return problems
