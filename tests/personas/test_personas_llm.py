"""End to end with the real embedded model (SmolLM2-135M GGUF via llama.cpp) on a few ML-100k users."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

from personarec.personas.config import PersonasConfig, PromptConfig  # noqa: E402
from personarec.personas.generate import PersonaEngine, generate_personas  # noqa: E402
from personarec.personas.history import PersonaContext  # noqa: E402
from personarec.personas.quality import evaluate_personas, grounding_problems  # noqa: E402
from personarec.personas.teacher import Draft  # noqa: E402
from personarec.personas.store.base import open_store  # noqa: E402
from tests.personas.spaces import genre_space  # noqa: E402
from tests.personas.test_prompts import INJECTION  # noqa: E402

pytestmark = pytest.mark.llm
USERS = [0, 7, 42]


@pytest.fixture(scope="module")
def space(ml100k_split):
    return genre_space(ml100k_split)


@pytest.fixture(scope="module")
def embedded(embedded_backend):
    return embedded_backend


def _seen_names(split, space, persona):
    u = split.user_index()[persona.user_id]
    return {space.fine_names[c] for c in space.fine[split.history("test")[u][: persona.version]]}


def test_single_call_end_to_end_and_resume(ml100k_split, space, embedded, tmp_path):
    store = open_store(str(tmp_path / "p.db"))
    cfg = PersonasConfig(retries=2)
    report = generate_personas(ml100k_split, space, embedded, USERS, store, cfg, show_progress=False)
    assert report.requested == 3 and report.generated + report.fallbacks == 3
    assert report.generated >= 2, [f.errors for f in report.failures]  # the constrained model does the job
    assert report.output_tokens > 0 and report.input_tokens > 0
    for uid in report.user_ids:
        p = store.get(uid)
        assert p is not None and p.provenance.backend == "embedded"
        seen = _seen_names(ml100k_split, space, p)
        assert grounding_problems(p, set(space.fine_names), seen) == []
        assert not {e.cluster for e in p.explore} & seen  # explore never in the history
        assert p.summary.strip()
    q = evaluate_personas([store.get(u) for u in report.user_ids], ml100k_split, space)
    assert q.grounding_rate == 1.0 and q.explore_novelty_rate == 1.0
    # resumable: the same histories are not generated again
    again = generate_personas(ml100k_split, space, embedded, USERS, store, cfg, show_progress=False)
    assert again.skipped == 3 - report.fallbacks and again.attempts == 3 * report.fallbacks
    store.close()


def test_injection_in_titles_keeps_output_valid(ml100k_split, space, embedded):
    cfg = PersonasConfig(retries=0, prompt=PromptConfig(examples_top=2, max_title_chars=200))
    engine = PersonaEngine(ml100k_split, space, embedded, cfg)
    ctx = engine.context(0)
    titles = list(ctx.titles)
    for s in ctx.stats[:3]:
        for i in s.examples:
            titles[i] = INJECTION
    evil = PersonaContext(ctx.history, ctx.stats, ctx.candidates, titles, ctx.fine_names)
    prompt = engine.builder.persona(evil)
    assert "Ignore previous instructions" in prompt.text  # the title is there, as data
    draft = engine.writer.write(evil, embedded, temperature=0.0, seed=1, draft=Draft(payload={}))
    # the format did not change: a validated, grounded persona payload
    assert set(draft.payload) == {"summary", "interests", "explore"}
    assert {i["cluster"] for i in draft.payload["interests"]} <= evil.seen_names
    assert {e["cluster"] for e in draft.payload["explore"]} <= set(evil.candidate_names)


def test_teacher_with_hindsight(ml100k_split, space, embedded, tmp_path):
    store = open_store(str(tmp_path / "h.db"))
    cfg = PersonasConfig(mode="teacher", hindsight=True, retries=1)
    engine = PersonaEngine(ml100k_split, space, embedded, cfg)
    report = generate_personas(
        ml100k_split, space, embedded, USERS[:1], store, cfg, engine=engine, show_progress=False
    )
    assert report.generated == 1, [f.errors for f in report.failures]
    train = ml100k_split.history("train")
    for uid in report.user_ids:
        p = store.get(uid)
        u = ml100k_split.user_index()[uid]
        assert p.version == len(train[u])  # training events only
        assert p.provenance.hindsight
        if not p.provenance.fallback:
            assert p.provenance.writer == "teacher"
            assert p.provenance.input_tokens > 0
            seen = {space.fine_names[c] for c in space.fine[train[u]]}
            assert not {e.cluster for e in p.explore} & seen
    store.close()
