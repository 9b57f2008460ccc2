"""The deterministic fallback persona, built from cluster statistics when the LLM cannot deliver.

Interests are the user's strongest clusters (recency-weighted shares, renormalised); explore
topics are the top transition candidates (unseen clusters most often visited next from the user's
clusters). Same inputs -> same persona, no model involved, always grounded and novel. Marked
``provenance.fallback = True`` so that consumers and the quality report can tell.
"""

from __future__ import annotations

from personarec.personas.history import PersonaContext
from personarec.personas.schema import ExploreTopic, Interest, Persona, Provenance


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def fallback_payload(ctx: PersonaContext, max_interests: int = 5, max_explore: int = 3) -> dict:
    """Summary, interests and explore topics from statistics alone."""
    top = ctx.stats[:max_interests]
    total = sum(s.weight for s in top) or 1.0
    interests = [{"cluster": s.name, "weight": round(s.weight / total, 4)} for s in top]
    by_name = {s.name: s for s in ctx.stats}
    explore = []
    for name in ctx.candidate_names[:max_explore]:
        explore.append(
            {
                "cluster": name,
                "reason": f"Also liked by people who like {top[0].name}." if top else "Popular next step.",
            }
        )
    names = [i["cluster"] for i in interests[:3]]
    recent = min(ctx.stats, key=lambda s: s.events_since).name if ctx.stats else ""
    summary = f"Based on {ctx.history.version} interactions, mostly {_join(names)}." + (
        f" Most recently: {recent}." if recent and recent in by_name else ""
    )
    return {"summary": summary, "interests": interests, "explore": explore}


def fallback_persona(
    ctx: PersonaContext, provenance: Provenance, max_interests: int = 5, max_explore: int = 3
) -> Persona:
    """A valid persona without any model (``provenance.fallback`` is forced to True)."""
    p = fallback_payload(ctx, max_interests, max_explore)
    return Persona(
        user_id=ctx.user_id,
        version=ctx.history.version,
        summary=p["summary"],
        interests=[Interest(**i) for i in p["interests"]],
        explore=[ExploreTopic(**e) for e in p["explore"]],
        provenance=provenance.model_copy(update={"fallback": True}),
    )
