"""The persona record: what the LLM writes about a user, and where it came from.

Versioned (``schema_version``) so that stored personas survive schema changes. ``version`` is
the history cut-off the persona includes (the last event's sequence number): a store never
replaces a persona with one built from an older history.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field, model_validator

SCHEMA_VERSION = 1


class Interest(BaseModel):
    """An existing interest (exploitation): a catalogue cluster and how much it matters."""

    cluster: str = Field(description="fine cluster name from the catalogue")
    weight: float = Field(ge=0.0, le=1.0)


class ExploreTopic(BaseModel):
    """A novel cluster the user has not engaged with (exploration), with a one-line reason."""

    cluster: str
    reason: str = Field(max_length=300)


class Provenance(BaseModel):
    model: str
    backend: str
    prompt_version: str
    history_last_timestamp: int | None = None
    history_length: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    fallback: bool = False
    attempts: int = 1
    writer: str = Field("single", description="single call (student-style) or the multi-step teacher")
    hindsight: bool = Field(
        False, description="the writer saw the user's next (validation) events: a training label"
    )
    format: str = Field("json", description="json: the model wrote the record; compact: it chose codes, the text is composed")
    summary_source: str = Field(
        "model", description="model: written by the LLM and checked; composed: built from the fields"
    )
    demographic_filtered: bool = Field(
        False,
        description="the demographic filter acted on this user's persona: a summary or reason replaced, or an "
        "attempt rejected (personas/privacy.py)",
    )
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class Persona(BaseModel):
    schema_version: int = SCHEMA_VERSION
    user_id: str
    version: int = Field(0, ge=0, description="history cut-off: sequence number of the last event included")
    summary: str = Field(max_length=1200)
    interests: list[Interest] = Field(min_length=1, max_length=8)
    explore: list[ExploreTopic] = Field(min_length=1, max_length=3)
    provenance: Provenance

    @model_validator(mode="after")
    def _explore_is_novel(self) -> Persona:
        known = {i.cluster for i in self.interests}
        overlap = [t.cluster for t in self.explore if t.cluster in known]
        if overlap:
            raise ValueError(f"explore topics repeat existing interests: {overlap}")
        if len({t.cluster for t in self.explore}) != len(self.explore):
            raise ValueError("explore topics must be distinct")
        return self


class PersonaEdits(BaseModel):
    """A user's own changes to their persona; they survive later refreshes."""

    removed_interests: list[str] = Field(default_factory=list)
    added_topics: list[str] = Field(default_factory=list)
    blocked_topics: list[str] = Field(default_factory=list)
    summary_override: str | None = Field(None, max_length=1200)
