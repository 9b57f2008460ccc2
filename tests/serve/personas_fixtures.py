"""Small persona builders shared by the serving tests."""

from __future__ import annotations

from personarec.personas.schema import ExploreTopic, Interest, Persona, Provenance


def make_persona(user_id: str = "u1", version: int = 1, interests=("drama", "comedy"), explore=("noir",), summary="") -> Persona:
    return Persona(
        user_id=user_id,
        version=version,
        summary=summary or f"persona of {user_id} at v{version}",
        interests=[Interest(cluster=c, weight=0.5) for c in interests],
        explore=[ExploreTopic(cluster=c, reason="new to them") for c in explore],
        provenance=Provenance(model="test", backend="test", prompt_version="t"),
    )
