"""Batch generation without a model: the fallback path (unreachable server), resumability, export,
and output validation of model answers (parse, schema, grounding)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from personarec.personas.backends.base import build_backend
from personarec.personas.config import PersonasConfig
from personarec.personas.fallback import fallback_payload
from personarec.personas.generate import PersonaEngine, export_personas, generate_personas
from personarec.personas.history import ContextBuilder
from personarec.personas.quality import grounding_problems
from personarec.personas.schema import Persona
from personarec.personas.teacher import OutputError, parse_json_object, validate_payload
from personarec.personas.store.base import open_store
from tests.personas.spaces import genre_space

USERS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def space(ml100k_split):
    return genre_space(ml100k_split)


@pytest.fixture()
def dead_backend():
    """The real OpenAI-compatible client pointed at a port nothing listens on (discard, 9)."""
    backend = build_backend(
        "openai",
        {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0, "timeout_s": 2, "connect_timeout_s": 1},
    )
    yield backend
    backend.close()


def _history_names(ml100k_split, space, persona: Persona) -> set[str]:
    u = ml100k_split.user_index()[persona.user_id]
    items = ml100k_split.history("test")[u][: persona.version]
    return {space.fine_names[c] for c in space.fine[items]}


def test_unreachable_server_falls_back_and_batch_completes(ml100k_split, space, dead_backend, tmp_path):
    store = open_store(str(tmp_path / "p.db"))
    config = PersonasConfig(backend="openai", retries=1, concurrency=2)
    report = generate_personas(ml100k_split, space, dead_backend, USERS, store, config, show_progress=False)
    assert report.requested == 4 and report.fallbacks == 4 and report.generated == 0
    assert report.attempts == 8 and report.outputs == 0
    assert report.error_counts == {"llm_error": 8}
    assert sorted(f.user_id for f in report.failures) == sorted(ml100k_split.user_ids[USERS].tolist())
    assert all(f.fallback and len(f.errors) == 2 and "127.0.0.1:9" in f.errors[0] for f in report.failures)
    train = ml100k_split.history("train")
    valid = ml100k_split.targets("valid")
    for u in USERS:
        p = store.get(str(ml100k_split.user_ids[u]))
        assert p is not None and p.provenance.fallback and p.provenance.attempts == 2
        assert p.version == len(train[u]) + len(valid[u])  # history stage "test": train + valid
        assert grounding_problems(p, set(space.fine_names), _history_names(ml100k_split, space, p)) == []
    store.close()


def test_resumable_skips_done_users(ml100k_split, space, dead_backend, tmp_path):
    store = open_store(str(tmp_path / "p.db"))
    config = PersonasConfig(retries=0, retry_fallbacks=False)
    first = generate_personas(
        ml100k_split, space, dead_backend, USERS[:2], store, config, show_progress=False
    )
    assert first.fallbacks == 2
    again = generate_personas(ml100k_split, space, dead_backend, USERS, store, config, show_progress=False)
    assert (
        again.skipped == 2
        and again.fallbacks == 2
        and sorted(again.user_ids) == sorted(ml100k_split.user_ids[USERS[2:]].tolist())
    )
    # fallbacks are placeholders: with retry_fallbacks they are attempted again
    retry = generate_personas(
        ml100k_split,
        space,
        dead_backend,
        USERS,
        store,
        config.model_copy(update={"retry_fallbacks": True}),
        show_progress=False,
    )
    assert retry.skipped == 0 and retry.attempts == 4
    store.close()


def test_fallback_is_deterministic_grounded_and_novel(ml100k_split, space):
    cb = ContextBuilder(ml100k_split, space, PersonasConfig())
    for u in (0, 10, 100):
        ctx = cb.context(u)
        a, b = fallback_payload(ctx), fallback_payload(ctx)
        assert a == b
        assert [i["cluster"] for i in a["interests"]] == [s.name for s in ctx.stats[:5]]
        assert abs(sum(i["weight"] for i in a["interests"]) - 1) < 1e-3
        assert [e["cluster"] for e in a["explore"]] == ctx.candidate_names[:3]
        assert not {e["cluster"] for e in a["explore"]} & ctx.seen_names


def test_export_jsonl_and_parquet(ml100k_split, space, dead_backend, tmp_path):
    store = open_store(str(tmp_path / "p.db"))
    generate_personas(
        ml100k_split, space, dead_backend, USERS, store, PersonasConfig(retries=0), show_progress=False
    )
    n = export_personas(store, tmp_path / "p.jsonl", "jsonl")
    rows = [Persona.model_validate_json(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert n == 4 and {r.user_id for r in rows} == set(ml100k_split.user_ids[USERS].tolist())
    export_personas(store, tmp_path / "p.parquet", "parquet")
    frame = pl.read_parquet(tmp_path / "p.parquet")
    assert frame.height == 4 and {"user_id", "summary", "interests", "explore", "provenance"} <= set(
        frame.columns
    )
    assert frame["provenance"].struct.field("fallback").all()
    store.close()


# -- validation of model answers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx(ml100k_split, space):
    return ContextBuilder(ml100k_split, space, PersonasConfig()).context(0)


def _answer(ctx, **over):
    data = {
        "summary": "Likes dramas.",
        "interests": [{"cluster": ctx.stats[0].name, "weight": 0.8}],
        "explore": [{"cluster": ctx.candidate_names[0], "reason": "adjacent"}],
    }
    data.update(over)
    return data


def test_parse_and_validate_good_answer(ctx, space):
    text = "```json\n" + json.dumps(_answer(ctx)) + "\n```"
    out = validate_payload(parse_json_object(text), ctx, set(space.fine_names))
    assert out["interests"][0]["cluster"] == ctx.stats[0].name


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("I'm sorry, but I can't help with that.", "refusal"),
        ('{"summary": "x", "interests": [', "invalid_json"),
        ("[1, 2]", "invalid_json"),
    ],
)
def test_unparseable_answers(text, kind):
    with pytest.raises(OutputError) as err:
        parse_json_object(text)
    assert err.value.kind == kind


def test_ungrounded_and_invalid_answers(ctx, space):
    names = set(space.fine_names)
    seen = ctx.stats[0].name
    cand = ctx.candidate_names
    bad = {
        "ungrounded": [
            _answer(ctx, explore=[{"cluster": "Made-up cluster", "reason": "r"}]),
            _answer(ctx, explore=[{"cluster": seen, "reason": "already seen"}]),
            _answer(ctx, explore=[{"cluster": cand[0], "reason": "a"}, {"cluster": cand[0], "reason": "b"}]),
            _answer(ctx, interests=[{"cluster": cand[1], "weight": 0.5}]),  # not in the history
        ],
        "schema": [
            _answer(ctx, interests=[{"cluster": seen, "weight": 3}]),
            _answer(ctx, summary=""),
            _answer(ctx, explore=[]),
        ],
    }
    for kind, answers in bad.items():
        for a in answers:
            with pytest.raises(OutputError) as err:
                validate_payload(a, ctx, names)
            assert err.value.kind == kind, a


def test_engine_rejects_mismatched_space(ml100k_split, space, dead_backend):
    from dataclasses import replace

    from personarec.errors import DataError

    small = replace(space, item_ids=space.item_ids[:10])
    with pytest.raises(DataError):
        PersonaEngine(ml100k_split, small, dead_backend)


def test_repeated_topics_are_removed_not_fatal(ctx, space):
    from personarec.personas.teacher import dedupe_topics

    first, second = ctx.stats[0].name, ctx.stats[1].name
    data = _answer(
        ctx,
        interests=[
            {"cluster": first, "weight": 0.9},
            {"cluster": first, "weight": 0.2},
            {"cluster": second, "weight": 0.5},
        ],
    )
    clean, removed = dedupe_topics(data)
    assert removed == 1 and [i["cluster"] for i in clean["interests"]] == [first, second]
    assert validate_payload(clean, ctx, set(space.fine_names))["interests"][0]["weight"] == 0.9


def test_output_schema_bounds_weights_by_enum(ml100k_split, space, ctx):
    from personarec.personas.prompts import PromptBuilder
    from personarec.personas.teacher import WEIGHT_LEVELS, SingleCallWriter

    writer = SingleCallWriter(PromptBuilder(), PersonasConfig(), space.fine_names)
    schema = writer._schema(PromptBuilder().persona(ctx))
    weight = schema["properties"]["interests"]["items"]["properties"]["weight"]
    assert weight["enum"] == WEIGHT_LEVELS and min(WEIGHT_LEVELS) > 0 and max(WEIGHT_LEVELS) == 1.0
    assert schema["properties"]["explore"]["items"]["properties"]["cluster"]["enum"] == ctx.candidate_names


def test_personas_for_keeps_the_order_of_its_users_with_concurrent_calls(ml100k_split, space, dead_backend):
    """What a Ray actor runs for a remote backend: a batch's calls overlap (``concurrency``), the
    outcomes stay in the batch's order, each user exactly once."""
    engine = PersonaEngine(ml100k_split, space, dead_backend, PersonasConfig(backend="openai", retries=0, concurrency=4))
    contexts = [engine.context(u) for u in range(8)]
    outs = engine.personas_for(contexts)
    assert [o.persona.user_id for o in outs] == [c.user_id for c in contexts]
    assert all(o.status == "fallback" and o.attempts == 1 for o in outs)
