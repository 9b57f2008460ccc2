"""``[personas]`` section of the run config: which LLM, which prompt, how many users, how hard to try."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PromptConfig(BaseModel):
    """How a user's history becomes prompt text (see :mod:`personarec.personas.prompts`)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["clustered", "raw"] = Field(
        "clustered",
        description="clustered: cluster-level view within a token budget; raw: every title (for comparison)",
    )
    token_budget: int = Field(
        96,
        ge=32,
        description="max tokens of the history block in clustered mode; a short history gets at most what "
        "its title list costs, so the clustered view is never the longer one",
    )
    max_clusters: int = Field(12, ge=1, description="at most this many history clusters are listed")
    examples_top: int = Field(
        1, ge=0, le=5, description="example titles of each of the 3 strongest clusters (seen more than once)"
    )
    examples_other: int = Field(
        0, ge=0, le=5, description="example titles for the other listed clusters (seen more than once)"
    )
    max_title_chars: int = Field(60, ge=8, description="titles are cut to this length")
    recency_half_life: float = Field(20.0, gt=0, description="events after which an interaction counts half")
    domain: str | None = Field(
        None,
        description="what the items are, in the system prompt ('a user from their <domain> history'); None = "
        "from the data: the dataset loader's domain (movie, beauty product, ...), else the catalogue's "
        "commonest top-level category, else 'item'",
    )


class RayConfig(BaseModel):
    """Where and how wide the Ray batch runner runs (personas.engine = "ray"; personas/ray_runner.py)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description="Ray cluster: None = start a local one for this job; 'auto' = the cluster this machine "
        "belongs to (`ray start`); 'ray://host:10001' = a remote cluster through Ray Client",
    )
    actors: int = Field(2, ge=1, le=4096, description="persona engines in the actor pool (one model load each)")
    cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs Ray reserves per actor; also the llama.cpp threads of an embedded backend"
    )


class PersonasConfig(BaseModel):
    """Persona generation: backend, prompt, teacher mode, batch size and robustness knobs."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["local", "ray"] = Field(
        "local",
        description="batch runner: local = this process (threads for remote backends, batches for embedded); "
        "ray = an actor pool of persona engines on a Ray cluster (settings in [personas.ray])",
    )
    ray: RayConfig = Field(default_factory=RayConfig)
    backend: str = Field("embedded", description="LLM backend name: embedded | openai | transformers")
    backend_config: dict[str, Any] = Field(default_factory=dict, description="the backend's own config")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    mode: Literal["single", "teacher"] = Field(
        "single",
        description="single: one constrained call (what the student does); teacher: 3-step reasoning",
    )
    hindsight: bool = Field(
        False,
        description="teacher labels: history = training events, and the prompt also shows the user's "
        "validation interactions (never test) so explore topics are ones the user really went on to",
    )
    history_stage: Literal["valid", "test"] = Field(
        "test",
        description="history a persona is built from: valid = training events; test = training + validation",
    )
    format: Literal["auto", "compact", "json"] = Field(
        "auto",
        description="compact: the model picks history/candidate codes in a few tokens, batched with a shared "
        "prefix, and the record is composed (needs a local llama.cpp backend); json: one constrained JSON "
        "call with a free summary (strong OpenAI-compatible models); auto: compact when the backend can batch",
    )
    batch_size: int = Field(16, ge=1, le=64, description="users decoded together in one forward pass (compact)")
    explore_llm_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="compact explore ranking: (1-w) log explore prior + w log p_model over the candidates "
        "(0 = prior only, 1 = model only)",
    )
    compact_history: int = Field(
        6, ge=1, le=8, description="compact prompt: history clusters listed (strongest first); each costs ~12 prompt tokens"
    )
    compact_candidates: int = Field(
        5, ge=1, le=8, description="compact prompt: explore candidates listed (best transition prior first)"
    )
    compact_name_chars: int = Field(
        32, ge=8, le=80, description="compact prompt: cluster names are cut to this many characters"
    )
    compact_example: bool = Field(
        True,
        description="compact prompt: a worked example in the shared prefix (the untuned model needs it to follow "
        "the format; a tuned student does not, and trains faster without it). Free at serving time: the prefix "
        "is evaluated once",
    )
    explore_calibration: bool = Field(
        False,
        description="compact explore ranking: divide the model's candidate probabilities by those it gives the "
        "same layout with every name blanked ('N/A'), which removes its preference for list positions (off: "
        "candidates are listed best prior first, so that preference helps; measured in persona_engine.json)",
    )
    sample_users: int = Field(
        20, ge=0, description="users the pipeline/demo generates personas for (a seeded sample; 0 = every user)"
    )
    n_candidates: int = Field(
        8, ge=1, le=32, description="explore candidates pre-selected by the explore prior"
    )
    explore_prior: Literal["transitions", "ease", "item_ease"] = Field(
        "item_ease",
        description="how unseen clusters are scored as explore candidates: item_ease = an item-level EASE "
        "scores every unseen item from the user's recent items and a cluster scores the sum of its 5 best; "
        "ease = cluster-level EASE on users' training cluster sets; transitions = next-step transition "
        "probabilities (personas/transitions.py has the measured choice)",
    )
    explore_half_life: float = Field(
        5.0,
        gt=0,
        description="events after which one of the user's clusters (or items) counts half when scoring explore "
        "candidates (recent tastes predict the next step better than the long-run profile)",
    )
    max_interests: int = Field(5, ge=1, le=8)
    max_explore: int = Field(3, ge=1, le=3)
    max_tokens: int = Field(
        280, ge=32, description="completion budget of the final persona call (fits the length caps below)"
    )
    summary_max_chars: int = Field(
        240, ge=40, le=1200, description="cap on the summary in the output grammar"
    )
    reason_max_chars: int = Field(90, ge=20, le=300, description="cap on each explore reason in the grammar")
    demographic_filter: Literal["replace", "reject", "off"] = Field(
        "replace",
        description="an LLM persona whose summary or explore reason holds a demographic word (gender, family, "
        "age, occupation) that the user's own input does not hold: replace = that text is replaced by the "
        "one composed from the persona's fields; reject = the attempt fails (retry, then the fallback); "
        "off = not checked. Counted in the report (demographic_filtered) and the persona's provenance",
    )
    demographic_words: list[str] | None = Field(
        None,
        description="words/phrases the filter looks for (case-insensitive, whole words, plural s included); "
        "None = the default lexicon of personas/privacy.py (every group)",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    retry_temperature: float = Field(0.7, ge=0.0, le=2.0, description="temperature of retries (a new sample)")
    retries: int = Field(2, ge=0, le=10, description="extra attempts per user before the fallback persona")
    concurrency: int = Field(1, ge=1, le=256, description="users in flight at once (remote backends benefit)")
    retry_fallbacks: bool = Field(True, description="re-generate users whose stored persona is a fallback")
    store: str = Field(
        "personas.db",
        description="SQLite file (relative to the run dir) or a store URL: sqlite:///file.db, redis://host:port/0, "
        "parquet:///dir (a batch sink of parquet shards)",
    )
    seed: int | None = Field(None, description="sampling seed; None = the run seed")

    @field_validator("demographic_words")
    @classmethod
    def _words_not_blank(cls, words: list[str] | None) -> list[str] | None:
        if words is not None and any(not w.strip() for w in words):
            raise ValueError("demographic_words: empty entry (an empty word would match nothing or everything)")
        return words
