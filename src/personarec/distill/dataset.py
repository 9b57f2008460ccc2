"""The student's supervised examples: (compact prompt without the future, teacher's persona JSON).

The teacher sees privileged information (the user's held-out future, several calls); the student
sees only what it will see at serving time, the one-call cluster prompt of the history. Pairing
the two is the whole distillation signal, so this module keeps it explicit and checkable: an
example is the student's chat messages plus the exact JSON string the student must learn to write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from personarec.errors import DataError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class DistillExample:
    """One training pair. ``prompt`` has no assistant turn; ``target`` is the persona JSON text."""

    user_id: str
    prompt: Messages
    target: str


def canonical_target(target: str | dict[str, Any]) -> str:
    """The persona JSON in one compact, key-order-stable form, so the student learns one spelling."""
    obj = json.loads(target) if isinstance(target, str) else target
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def build_examples(pairs: Iterable[tuple[Messages, str | dict[str, Any]]], user_ids: Iterable[str] | None = None) -> list[DistillExample]:
    """Validate (prompt messages, target JSON) pairs and turn them into examples.

    Rejected: a prompt with an assistant turn (the student must produce it), a prompt without a
    user turn, a target that is not a JSON object. Errors name the pair's position.
    """
    ids = list(user_ids) if user_ids is not None else None
    out: list[DistillExample] = []
    for i, (messages, target) in enumerate(pairs):
        if not messages or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages):
            raise DataError(f"pair {i}: prompt must be a non-empty list of {{role, content}} messages")
        roles = [m["role"] for m in messages]
        if "assistant" in roles:
            raise DataError(f"pair {i}: the student prompt must not contain an assistant turn")
        if "user" not in roles:
            raise DataError(f"pair {i}: the student prompt has no user turn")
        try:
            text = canonical_target(target)
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"pair {i}: target is not valid JSON ({exc})") from None
        if not text.startswith("{"):
            raise DataError(f"pair {i}: target must be a JSON object")
        uid = ids[i] if ids is not None else str(i)
        out.append(DistillExample(uid, [dict(m) for m in messages], text))
    if ids is not None and len(ids) != len(out):
        raise DataError(f"{len(ids)} user ids for {len(out)} pairs")
    return out


def persona_target(persona: Any) -> str:
    """The part of a :class:`~personarec.personas.schema.Persona` the student writes (what the
    LLM writes: summary, interests, explore), not the bookkeeping (ids, provenance)."""
    data = persona.model_dump() if hasattr(persona, "model_dump") else dict(persona)
    return canonical_target({k: data[k] for k in ("summary", "interests", "explore") if k in data})


def split_examples(examples: list[DistillExample], eval_fraction: float, seed: int) -> tuple[list[DistillExample], list[DistillExample]]:
    """Random train/validation split by user (each user appears in one side only)."""
    users = sorted({e.user_id for e in examples})
    rng = np.random.default_rng(seed)
    rng.shuffle(users)
    n_eval = int(round(len(users) * eval_fraction))
    held = set(users[:n_eval])
    return [e for e in examples if e.user_id not in held], [e for e in examples if e.user_id in held]


def save_examples(examples: list[DistillExample], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w") as f:
        for e in examples:
            f.write(json.dumps({"user_id": e.user_id, "prompt": e.prompt, "target": e.target}, ensure_ascii=False) + "\n")
    return p


def load_examples(path: str | Path) -> list[DistillExample]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"no distillation examples at {p}")
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"bad JSON ({exc})", path=str(p), line=n) from None
    return build_examples(((r["prompt"], r["target"]) for r in rows), [str(r["user_id"]) for r in rows])
