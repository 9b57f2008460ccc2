"""Teacher labels for distillation: hindsight multi-step personas paired with the student's prompt.

For each training user the teacher (multi-step writer, hindsight: it also sees the user's next,
validation-period interactions) writes a persona from the user's TRAINING events. The student's
input is the single-call prompt of the same training history WITHOUT the future: exactly what the
``single`` writer sends at serving time. The teacher may pick an explore topic that is not among
the student's candidates (hindsight adds the clusters the user really went on to); the student's
grammar could never produce it, so such topics are dropped from the target, and a user whose
target keeps no explore topic is skipped (counted in the report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from personarec.distill.dataset import DistillExample, canonical_target
from personarec.personas.config import PersonasConfig


@dataclass
class TeacherReport:
    requested: int = 0
    labelled: int = 0  # examples produced
    teacher_fallbacks: int = 0  # teacher failed -> no example
    dropped_explore_topics: int = 0  # teacher topics outside the student's candidates
    skipped_no_explore: int = 0
    teacher_calls: int = 0
    teacher_seconds: float = 0.0  # LLM time of the teacher
    wall_seconds: float = 0.0
    user_ids: list[str] = field(default_factory=list)


def student_config(pc: PersonasConfig) -> PersonasConfig:
    """The student's view: one call, no hindsight, training events (the same history the teacher saw)."""
    return pc.model_copy(update={"mode": "single", "hindsight": False, "history_stage": "valid"})


def teacher_config(pc: PersonasConfig) -> PersonasConfig:
    return pc.model_copy(update={"mode": "teacher", "hindsight": True, "history_stage": "valid"})


def student_prompt(engine: Any, user_idx: int) -> Any:
    """The single-call prompt (messages + allowed names) of a user, as the student sees it."""
    ctx = engine.context(user_idx)
    cfg = engine.config
    return ctx, engine.builder.persona(ctx, max_interests=cfg.max_interests, max_explore=cfg.max_explore)


def restrict_to_prompt(payload: dict[str, Any], interest_names: list[str], explore_names: list[str]) -> tuple[dict[str, Any] | None, int]:
    """Keep only topics the student's grammar allows; returns (target or None, topics dropped)."""
    interests = [i for i in payload["interests"] if i["cluster"] in set(interest_names)]
    explore = [e for e in payload["explore"] if e["cluster"] in set(explore_names)]
    dropped = len(payload["explore"]) - len(explore) + len(payload["interests"]) - len(interests)
    if not interests or not explore:
        return None, dropped
    return {"summary": payload["summary"], "interests": interests, "explore": explore}, dropped


def teacher_examples(
    split: Any,
    space: Any,
    backend: Any,
    users: list[int],
    pc: PersonasConfig,
    *,
    seed: int = 0,
    show_progress: bool = True,
    transitions: Any = None,
    on_user: Callable[[int, str], None] | None = None,
) -> tuple[list[DistillExample], TeacherReport, dict[str, Any]]:
    """Run the hindsight teacher on ``users`` (indices) and pair each persona with the student prompt.

    Returns the examples, a report, and the teacher personas by user id (payload dicts).
    """
    import time

    from personarec.cli_common import progress
    from personarec.personas.generate import PersonaEngine

    teacher = PersonaEngine(split, space, backend, teacher_config(pc), transitions=transitions, seed=seed)
    student = PersonaEngine(split, space, backend, student_config(pc), transitions=teacher.contexts.transitions, seed=seed)
    report = TeacherReport(requested=len(users))
    examples: list[DistillExample] = []
    personas: dict[str, Any] = {}
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("teacher personas (multi-step, hindsight)", total=len(users), visible=show_progress)
        for u in users:
            out = teacher.persona_for(teacher.context(u))
            bar.advance(task)
            if on_user is not None:
                on_user(u, out.status)
            if out.draft is not None:
                report.teacher_calls += out.draft.calls
            if out.persona is not None:
                report.teacher_seconds += out.persona.provenance.latency_s
            if out.status != "generated" or out.persona is None:
                report.teacher_fallbacks += out.status == "fallback"
                continue
            payload = out.persona.model_dump(include={"summary", "interests", "explore"})
            personas[out.persona.user_id] = payload
            _, prompt = student_prompt(student, u)
            target, dropped = restrict_to_prompt(payload, prompt.interest_names, prompt.explore_names)
            report.dropped_explore_topics += dropped
            if target is None:
                report.skipped_no_explore += 1
                continue
            examples.append(DistillExample(out.persona.user_id, prompt.messages, canonical_target(target)))
            report.user_ids.append(out.persona.user_id)
    report.labelled = len(examples)
    report.wall_seconds = round(time.perf_counter() - start, 3)
    return examples, report, personas
