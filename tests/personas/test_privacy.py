"""The demographic filter: lexicon matching, what counts as the user's input, and the engine applying
it (replace / reject / off) on the generation path with a scripted backend (no LLM)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from personarec.config import load_config
from personarec.personas.backends.base import Generation, LLMBackend
from personarec.personas.config import PersonasConfig
from personarec.personas.generate import PersonaEngine, generate_personas
from personarec.personas.privacy import DEFAULT_LEXICON, Lexicon, default_words, lexicon, screen, source_text
from personarec.personas.ray_runner import outcome_from_row, outcome_row
from personarec.personas.store.base import open_store
from tests.personas.spaces import genre_space


# -- the lexicon ---------------------------------------------------------------------------------
def test_lexicon_matches_whole_words_case_insensitively_with_plurals_and_phrases():
    words = lexicon(None)
    text = "SHE likes Batman and Superman; her Mothers' picks. A 30 years-old college student, Retired."
    assert words.find(text) == {"she", "her", "mother", "years old", "college student", "retired"}
    assert words.find("Batman, Superman, Manhattan, shepherd, oldies, history") == set()


def test_planted_word_is_flagged_but_a_word_of_the_input_is_not():
    words = lexicon(None)
    source = "The Mother (1996)\nDrama · Family (Kids in the Hall)"
    assert words.unsupported("A film fan; she loves dramas.", source) == ["she"]
    assert words.unsupported("Loves films about mothers and kids.", source) == []  # both are in the input
    finding = screen("Mostly dramas.", ["Because he liked The Mother."], source, words)
    assert finding.fields == {"reason:0": ["he"]} and finding.words == ["he"]
    assert not screen("Mostly The Mother and Kids in the Hall.", [], source, words)


def test_custom_lexicon_and_default_groups():
    assert set(default_words(["gender"])) == set(DEFAULT_LEXICON["gender"])
    assert {"she", "retired", "student", "mother", "programmer"} <= set(default_words())
    custom = Lexicon(["Night Owl", ""])
    assert custom.words == ["night owl"] and custom.find("a night-owl viewer") == {"night owl"}
    assert Lexicon([]).find("she") == set()


def test_config_round_trip_and_validation():
    cfg = PersonasConfig(demographic_filter="reject", demographic_words=["Night Owl", "she"])
    assert PersonasConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg
    default = PersonasConfig()
    assert default.demographic_filter == "replace" and default.demographic_words is None
    run = load_config(sets=["personas.demographic_filter=off", 'personas.demographic_words=["vegan"]'])
    assert run.personas.demographic_filter == "off" and run.personas.demographic_words == ["vegan"]
    with pytest.raises(ValueError):
        PersonasConfig(demographic_filter="redact")
    with pytest.raises(ValueError):
        PersonasConfig(demographic_words=["she", "  "])


# -- the engine applies it -----------------------------------------------------------------------
class ScriptedBackend(LLMBackend):
    """Answers every persona call with a valid JSON persona of the user in the prompt, whose summary
    and first reason are the given texts (``{top}`` = the user's strongest cluster)."""

    name = "scripted"

    def __init__(self, answers: dict[str, dict[str, Any]], summary: str, reason: str) -> None:
        super().__init__()
        self.answers, self.summary, self.reason = answers, summary, reason
        self.calls = 0

    @property
    def model_name(self) -> str:
        return "scripted"

    def generate(self, messages, *, json_schema=None, max_tokens=256, temperature=0.0, seed=None) -> Generation:
        self.calls += 1
        user = next(u for u in self.answers if self.answers[u]["marker"] in messages[-1]["content"])
        a = self.answers[user]
        payload = {
            "summary": self.summary.format(top=a["top"]),
            "interests": [{"cluster": a["top"], "weight": 1.0}],
            "explore": [{"cluster": a["explore"], "reason": self.reason}],
        }
        return Generation(json.dumps(payload), 10, 10, 0.0, "scripted")


@pytest.fixture(scope="module")
def space(ml100k_split):
    return genre_space(ml100k_split)


def _engine(split, space, summary: str, reason: str = "Adjacent.", **config: Any) -> PersonaEngine:
    cfg = PersonasConfig(backend="scripted", format="json", **config)
    backend = ScriptedBackend({}, summary, reason)
    engine = PersonaEngine(split, space, backend, cfg, seed=1)
    ctx = engine.context(0)
    # the prompt lists the strongest cluster's name: enough to tell which user is asked about
    backend.answers[ctx.user_id] = {"marker": ctx.stats[0].name, "top": ctx.stats[0].name, "explore": ctx.candidate_names[0]}
    return engine


def _run(split, space, engine: PersonaEngine, tmp_path):
    store = open_store(str(tmp_path / "p.db"))
    report = generate_personas(split, space, engine.backend, [0], store, engine.config, engine=engine, show_progress=False)
    persona = store.get(str(split.user_ids[0]))
    store.close()
    return report, persona


def test_replace_swaps_the_flagged_texts_for_composed_ones_and_counts(ml100k_split, space, tmp_path):
    engine = _engine(ml100k_split, space, "{top}; she would enjoy more.", reason="Her husband liked it.")
    report, persona = _run(ml100k_split, space, engine, tmp_path)
    assert report.generated == 1 and report.fallbacks == 0 and report.demographic_filtered == 1
    assert report.error_counts == {"demographic": 1}
    assert persona is not None and not persona.provenance.fallback
    assert persona.provenance.demographic_filtered and persona.provenance.summary_source == "composed"
    ctx = engine.context(0)
    assert not screen(persona.summary, [e.reason for e in persona.explore], source_text(ctx), lexicon(None))
    assert persona.summary.startswith("Mostly ") and persona.explore[0].reason.startswith(("Also liked", "Liked by"))
    assert persona.interests[0].cluster == ctx.stats[0].name  # the model's fields are kept


def test_reject_runs_the_retries_then_the_fallback(ml100k_split, space, tmp_path):
    engine = _engine(ml100k_split, space, "{top}; a film for a retired wife.", demographic_filter="reject", retries=1)
    report, persona = _run(ml100k_split, space, engine, tmp_path)
    assert engine.backend.calls == 2  # type: ignore[attr-defined]
    assert report.generated == 0 and report.fallbacks == 1 and report.demographic_filtered == 1
    assert report.error_counts == {"demographic": 2} and report.valid_outputs == 0 and report.outputs == 2
    assert "['retired', 'wife']" in report.failures[0].errors[0]
    assert persona is not None and persona.provenance.fallback and persona.provenance.demographic_filtered


def test_words_of_the_users_input_pass_and_off_does_not_check(ml100k_split, space, tmp_path):
    probe = _engine(ml100k_split, space, "x")
    ctx = probe.context(0)
    present = sorted(lexicon(None).find(source_text(ctx)))
    assert present, "user 0's titles hold no lexicon word; pick another user for this test"
    engine = _engine(ml100k_split, space, "{top}; " + f"more like {present[0]}.")
    report, persona = _run(ml100k_split, space, engine, tmp_path)
    assert report.demographic_filtered == 0 and persona is not None and present[0] in persona.summary.lower()
    assert not persona.provenance.demographic_filtered

    off = _engine(ml100k_split, space, "{top}; she would enjoy more.", demographic_filter="off")
    report, persona = _run(ml100k_split, space, off, tmp_path / "off")
    assert report.demographic_filtered == 0 and persona is not None and "she" in persona.summary


def test_replacement_holding_a_custom_word_is_rejected(ml100k_split, space, tmp_path):
    """A custom lexicon listing a word of the fixed wording: the composed text cannot help, so the
    persona is rejected (the fallback, not screened, is statistics in fixed wording)."""
    engine = _engine(ml100k_split, space, "Mostly {top}.", demographic_words=["mostly"], retries=0)
    report, persona = _run(ml100k_split, space, engine, tmp_path)
    assert report.fallbacks == 1 and report.demographic_filtered == 1 and report.error_counts == {"demographic": 1}
    assert persona is not None and persona.provenance.fallback and persona.provenance.demographic_filtered


def test_ray_outcome_rows_carry_the_count(ml100k_split, space):
    engine = _engine(ml100k_split, space, "{top}; she would enjoy more.")
    out = engine.persona_for(engine.context(0))
    assert out.demographic_filtered == 1
    back = outcome_from_row(json.loads(outcome_row(out.persona.user_id, out, engine)))
    assert back.demographic_filtered == 1 and back.persona.provenance.demographic_filtered
