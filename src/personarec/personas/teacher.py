"""Persona writers: the single constrained call (what the student does) and the multi-step teacher.

A writer turns one :class:`~personarec.personas.history.PersonaContext` into a persona payload
(``summary``, ``interests``, ``explore``) with an :class:`~personarec.personas.backends.base.LLMBackend`.
It raises :class:`OutputError` when the model's answer is unusable (not JSON, refused, schema or
grounding violated) and lets :class:`LLMError` through; the batch runner retries both, then falls
back. Writers are chosen by name (``single`` | ``teacher``) from :data:`WRITERS`.

The multi-step teacher (the paper's training-data collection with multi-step reasoning):

1. summarise the existing interests (free text);
2. reason about adjacent, not-yet-seen clusters, choosing among candidates pre-selected from
   cluster-to-cluster transitions (constrained JSON: candidate names only);
3. write the final persona JSON (constrained), reusing steps 1-2 as a draft.

In hindsight mode the context also carries the user's next interactions (validation events, never
test), shown to steps 2 and 3 so that explore labels are topics the user really went on to.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from personarec.errors import ConfigError
from personarec.personas.backends.base import Generation, LLMBackend
from personarec.personas.config import PersonasConfig
from personarec.personas.constrain import check_persona_output, persona_json_schema
from personarec.personas.history import PersonaContext
from personarec.personas.prompts import Prompt, PromptBuilder

_REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I am unable|I'm unable|I'm sorry|as an AI|I won't)\b", re.IGNORECASE
)


class OutputError(ValueError):
    """The model answered, but the answer cannot become a persona. ``kind`` names why."""

    KINDS = ("invalid_json", "refusal", "schema", "ungrounded")

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class Draft:
    """A writer's result: the validated payload and what it cost."""

    payload: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0
    model: str = ""
    steps: dict[str, Any] = field(default_factory=dict)  # teacher intermediate outputs

    def add(self, gen: Generation) -> None:
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        self.latency_s += gen.latency_s
        self.calls += 1
        self.model = gen.model


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a completion; tolerates a code fence or text around one object."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[stripped.find("{") :] if "{" in stripped else stripped
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        data = None
        if 0 <= start < end:
            try:
                data = json.loads(stripped[start : end + 1])
            except json.JSONDecodeError:
                data = None
        if data is None:
            kind = "refusal" if _REFUSAL.search(text) else "invalid_json"
            raise OutputError(kind, f"no JSON object in output {text[:120]!r}") from None
    if not isinstance(data, dict):
        raise OutputError("invalid_json", "output is not a JSON object")
    return data


#: Interest weights the grammar allows. llama.cpp's JSON-schema converter ignores ``minimum`` /
#: ``maximum`` on numbers (SmolLM2 then writes weights like 35), an enum of levels it enforces.
WEIGHT_LEVELS = [round(0.1 * i, 1) for i in range(1, 11)]


def dedupe_topics(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Drop repeated clusters within ``interests`` / ``explore`` (first occurrence wins).

    A grammar cannot make array items distinct and greedy decoding of a small model does repeat
    itself; a repeat adds no information, so it is removed (and counted) rather than failing the
    whole answer. Entries that are not objects are left for :func:`validate_payload` to reject.
    """
    removed = 0
    out = dict(data)
    for key in ("interests", "explore"):
        items = data.get(key)
        if not isinstance(items, list):
            continue
        seen: set[str] = set()
        kept = []
        for it in items:
            name = it.get("cluster") if isinstance(it, dict) else None
            if isinstance(name, str) and name in seen:
                removed += 1
                continue
            if isinstance(name, str):
                seen.add(name)
            kept.append(it)
        out[key] = kept
    return out, removed


def validate_payload(data: dict[str, Any], ctx: PersonaContext, all_names: set[str]) -> dict[str, Any]:
    """Schema + grounding: interests are history clusters, explore topics existing unseen clusters,
    every list distinct. Returns a normalised payload (weights clamped to [0, 1] are NOT silently
    fixed: an out-of-range weight is a schema error)."""
    summary = data.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise OutputError("schema", "summary missing or empty")
    for key in ("interests", "explore"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise OutputError("schema", f"{key} missing or empty")
    interests, explore = [], []
    for it in data["interests"]:
        if not isinstance(it, dict) or not isinstance(it.get("cluster"), str):
            raise OutputError("schema", f"bad interest entry {it!r}")
        w = it.get("weight")
        if not isinstance(w, int | float) or isinstance(w, bool) or not 0.0 <= float(w) <= 1.0:
            raise OutputError("schema", f"interest weight {w!r} not a number in [0, 1]")
        interests.append({"cluster": it["cluster"], "weight": float(w)})
    for ex in data["explore"]:
        if (
            not isinstance(ex, dict)
            or not isinstance(ex.get("cluster"), str)
            or not isinstance(ex.get("reason"), str)
        ):
            raise OutputError("schema", f"bad explore entry {ex!r}")
        explore.append({"cluster": ex["cluster"], "reason": " ".join(ex["reason"].split())[:300]})
    seen = ctx.seen_names
    report = check_persona_output(
        {"summary": summary, "interests": interests, "explore": explore},
        allowed_interest_clusters=sorted(seen),
        allowed_explore_clusters=sorted(all_names - seen),
        history_clusters=sorted(seen),
    )
    if not report.ok:
        raise OutputError("ungrounded", "; ".join(report.problems))
    return {"summary": " ".join(summary.split())[:1200], "interests": interests, "explore": explore}


class PersonaWriter(ABC):
    """Turns a context into a validated persona payload with one backend."""

    name: ClassVar[str]

    def __init__(self, builder: PromptBuilder, config: PersonasConfig, all_names: list[str]) -> None:
        self.builder = builder
        self.config = config
        self.all_names = set(all_names)

    def _schema(self, prompt: Prompt) -> dict[str, Any]:
        schema = persona_json_schema(
            prompt.interest_names,
            prompt.explore_names,
            max_interests=self.config.max_interests,
            n_explore=self.config.max_explore,
            min_explore=1,
            summary_max_length=self.config.summary_max_chars,
            reason_max_length=self.config.reason_max_chars,
        )
        weight = schema["properties"]["interests"]["items"]["properties"].get("weight")
        if isinstance(weight, dict):
            weight.clear()
            weight.update({"type": "number", "enum": WEIGHT_LEVELS})
        return schema

    def _final(
        self,
        ctx: PersonaContext,
        prompt: Prompt,
        backend: LLMBackend,
        draft: Draft,
        temperature: float,
        seed: int | None,
    ) -> Draft:
        gen = backend.generate(
            prompt.messages,
            json_schema=self._schema(prompt),
            max_tokens=self.config.max_tokens,
            temperature=temperature,
            seed=seed,
        )
        draft.add(gen)
        draft.steps["final_text"] = gen.text
        data, removed = dedupe_topics(parse_json_object(gen.text))
        draft.steps["duplicates_removed"] = removed
        draft.payload = validate_payload(data, ctx, self.all_names)
        return draft

    @abstractmethod
    def write(
        self,
        ctx: PersonaContext,
        backend: LLMBackend,
        *,
        temperature: float,
        seed: int | None,
        draft: Draft | None = None,
    ) -> Draft:
        """Fill ``draft`` (tokens and latency accumulate in it even when an error is raised)."""


class SingleCallWriter(PersonaWriter):
    """One constrained call: history view + candidates -> persona JSON."""

    name = "single"

    def write(
        self,
        ctx: PersonaContext,
        backend: LLMBackend,
        *,
        temperature: float,
        seed: int | None,
        draft: Draft | None = None,
    ) -> Draft:
        prompt = self.builder.persona(
            ctx, max_interests=self.config.max_interests, max_explore=self.config.max_explore
        )
        return self._final(
            ctx, prompt, backend, draft if draft is not None else Draft(payload={}), temperature, seed
        )


class MultiStepTeacher(PersonaWriter):
    """Three calls: summarise interests, choose adjacent unseen clusters, write the final JSON."""

    name = "teacher"
    summary_tokens: ClassVar[int] = 80
    explore_tokens: ClassVar[int] = 180

    def _explore_schema(self, names: list[str]) -> dict[str, Any]:
        full = persona_json_schema(
            names[:1] or ["-"],
            names,
            n_explore=self.config.max_explore,
            min_explore=1,
            reason_max_length=self.config.reason_max_chars,
        )
        return {
            "type": "object",
            "properties": {"explore": full["properties"]["explore"]},
            "required": ["explore"],
            "additionalProperties": False,
        }

    def write(
        self,
        ctx: PersonaContext,
        backend: LLMBackend,
        *,
        temperature: float,
        seed: int | None,
        draft: Draft | None = None,
    ) -> Draft:
        draft = draft if draft is not None else Draft(payload={})
        # step 1: existing interests, in words
        gen = backend.generate(
            self.builder.summary(ctx).messages,
            max_tokens=self.summary_tokens,
            temperature=temperature,
            seed=seed,
        )
        draft.add(gen)
        summary = " ".join(gen.text.split())[: self.config.summary_max_chars * 2]
        draft.steps["summary"] = summary
        # step 2: adjacent unseen clusters among the transition-preselected candidates
        candidates = ctx.candidate_names
        gen = backend.generate(
            self.builder.explore(ctx, summary, max_explore=self.config.max_explore).messages,
            json_schema=self._explore_schema(candidates),
            max_tokens=self.explore_tokens,
            temperature=temperature,
            seed=seed,
        )
        draft.add(gen)
        chosen: list[dict[str, str]] = []
        try:
            for ex in parse_json_object(gen.text).get("explore") or []:
                name = ex.get("cluster") if isinstance(ex, dict) else None
                if name in candidates and name not in {c["cluster"] for c in chosen}:
                    chosen.append(
                        {
                            "cluster": name,
                            "reason": " ".join(str(ex.get("reason", "")).split())[
                                : self.config.reason_max_chars
                            ],
                        }
                    )
        except OutputError:
            chosen = []  # a bad intermediate step only loses the draft; step 3 still decides
        draft.steps["explore"] = chosen
        # step 3: the final persona, constrained to the chosen topics when step 2 produced any
        prompt = self.builder.persona(
            ctx,
            max_interests=self.config.max_interests,
            max_explore=self.config.max_explore,
            draft_summary=summary,
            draft_explore=chosen,
            explore_names=[c["cluster"] for c in chosen] or candidates,
        )
        return self._final(ctx, prompt, backend, draft, temperature, seed)


WRITERS: dict[str, type[PersonaWriter]] = {w.name: w for w in (SingleCallWriter, MultiStepTeacher)}


def build_writer(
    name: str, builder: PromptBuilder, config: PersonasConfig, all_names: list[str]
) -> PersonaWriter:
    if name not in WRITERS:
        raise ConfigError(f"unknown persona writer {name!r}; available: {sorted(WRITERS)}")
    return WRITERS[name](builder, config, all_names)
