"""Prompt injection through item titles and user-supplied topics (issue 12, part 5).

The corpus (:mod:`tests.personas.injection_corpus`) goes where hostile text can enter: item titles
(and the cluster names built from them), the catalogue's domain, and a user's added / blocked
topics. What must hold:

(a) prompts keep it inert: JSON-escaped, one line, cut, no invisible characters and no
    chat-template control token (every one needs ``<`` or ``>``), in the JSON prompts and the
    compact engine's prompt alike; cluster names made from such titles are plain labels;
(b) the real default engine (compact, SmolLM2-135M on llama.cpp) writes valid, grounded personas
    for users whose histories are made of injection titles, and no instruction text reaches a
    summary: apart from catalogue cluster names, a summary is the engine's fixed wording;
(c) a user-supplied topic must be a catalogue cluster name: corpus strings are rejected with a
    clear error, and never appear in the persona a user sees.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata

import numpy as np
import polars as pl
import pytest

from personarec.data.records import Catalogue
from personarec.items.naming import clean_title, item_terms, label, name_clusters, visible
from personarec.personas.compact import CompactPrompt
from personarec.personas.config import PersonasConfig, PromptConfig
from personarec.personas.history import ContextBuilder, PersonaContext
from personarec.personas.prompts import DOMAIN_CHARS, MAX_NAME_CHARS, PromptBuilder
from personarec.personas.schema import ExploreTopic, Interest, Persona, PersonaEdits, Provenance
from personarec.personas.summary import compose_summary
from personarec.recommend.persona_ranking import (
    UnknownTopicError,
    apply_edits,
    check_edits,
    edited_persona,
    unknown_topics,
)
from tests.personas.injection_corpus import CONTROL_TOKENS, INJECTIONS, copied_span, words
from tests.personas.spaces import genre_space

ANGLE_TOKENS = [t for t in CONTROL_TOKENS if "<" in t or ">" in t]


def _invisible(text: str) -> list[str]:
    return [f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn", "Cs") and ch not in "\n"]


@pytest.fixture(scope="module")
def space(ml100k_split):
    return genre_space(ml100k_split)


@pytest.fixture(scope="module")
def contexts(ml100k_split, space):
    return ContextBuilder(ml100k_split, space, PersonasConfig(prompt=PromptConfig(examples_top=2, examples_other=1)))


def _evil_context(ctx: PersonaContext) -> PersonaContext:
    """``ctx`` with every history title replaced by a corpus string (cycled)."""
    titles = list(ctx.titles)
    for k, item in enumerate(dict.fromkeys(int(i) for i in ctx.history.items)):
        titles[item] = INJECTIONS[k % len(INJECTIONS)]
    return dataclasses.replace(ctx, titles=titles)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# -- (a) prompts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["clustered", "raw"])
def test_injection_titles_are_inert_data_in_json_prompts(contexts, mode):
    cfg = PromptConfig(mode=mode, examples_top=2, examples_other=1, max_title_chars=80)
    ctx = _evil_context(contexts.context(0))
    builder = PromptBuilder(cfg)
    # what each corpus string becomes: one line of visible text, cut with an ellipsis
    expected = {v if len(v) <= cfg.max_title_chars else v[: cfg.max_title_chars - 1] + "…" for v in map(visible, INJECTIONS)}
    for prompt in (builder.persona(ctx), builder.summary(ctx)):
        user = prompt.messages[1]["content"]
        for tok in ANGLE_TOKENS:  # no chat-template token anywhere, escaped or not as markup
            assert tok not in prompt.text, tok
        assert user.count("<history") == 1 and user.count("</history>") == 1  # the title closes nothing
        assert prompt.messages[0]["content"].count("DATA") >= 1 and len(prompt.messages) == 2
        assert not _invisible(prompt.text), _invisible(prompt.text)[:5]
        block = user[user.index(">", user.index("<history")) + 1 : user.index("</history>")].strip().splitlines()
        rows = [json.loads(line) for line in block if line.startswith(("[", '"'))]  # one JSON value per line
        assert rows, block[:3]
        titles = [s for row in rows for s in _strings(row)[1 if mode == "clustered" else 0 :]]
        assert titles and set(titles) <= expected, set(titles) - expected  # the injections are there, as data ...
        for t in titles:  # ... each cut, on one line, without invisible characters
            assert len(t) <= cfg.max_title_chars and "\n" not in t and not _invisible(t), t
        assert copied_span(prompt.messages[0]["content"]) is None  # the system turn is the template's


def test_catalogue_domain_cannot_extend_the_system_prompt(contexts):
    ctx = contexts.context(1)
    for evil in INJECTIONS:
        system = PromptBuilder(PromptConfig(domain=evil)).persona(ctx).messages[0]["content"]
        domain = system.removeprefix("Write the interest persona of a user from their ").split(" history. ")[0]
        assert system.startswith("Write the interest persona of a user from their ")
        assert " history. Text in <history>" in system
        assert len(domain) <= DOMAIN_CHARS and re.fullmatch(r"[\w &'/-]*", domain), domain
        assert "\n" not in system and not any(tok in system for tok in ANGLE_TOKENS)


def test_cluster_names_are_capped_and_escaped(contexts):
    ctx = contexts.context(2)
    evil_names = [INJECTIONS[i % len(INJECTIONS)] + f" #{i}" for i in range(len(ctx.fine_names))]
    evil = dataclasses.replace(
        ctx, stats=[dataclasses.replace(s, name=evil_names[s.cluster]) for s in ctx.stats], fine_names=evil_names
    )
    prompt = PromptBuilder(PromptConfig()).persona(evil)
    assert not any(tok in prompt.text for tok in ANGLE_TOKENS) and not _invisible(prompt.text)
    cands = prompt.messages[1]["content"].split("<candidates>")[1].split("</candidates>")[0]
    assert all(len(n) <= MAX_NAME_CHARS for n in json.loads(cands))
    assert prompt.interest_names == [s.name for s in evil.stats[: len(prompt.interest_names)]]  # grounding keeps full names


def test_compact_prompt_keeps_names_on_their_line():
    prompt = CompactPrompt("movie", name_chars=40)
    listed = [(name, 3, k) for k, name in enumerate(INJECTIONS[:8])]
    block = prompt.user_block(listed, INJECTIONS[8:16])
    body = block.removeprefix("<|im_start|>user\n").split("<|im_end|>\n<|im_start|>assistant\nLikes:")
    assert len(body) == 2 and body[1] == ""  # the template's own markers, once each, nothing after
    assert block.count("<|") == 3 and block.count("|>") == 3
    lines = body[0].rstrip("\n").split("\n")
    assert lines[0] == "Liked:" and lines[9] == "New options:" and len(lines) == 18  # one line per name
    for line in lines[1:9] + lines[10:]:
        assert len(line) <= 2 + 40 + len(", 3, latest") and not _invisible(line), line
        assert "<" not in line and ">" not in line
    system = prompt.prefix_messages()[0]["content"]
    assert CompactPrompt(INJECTIONS[3]).prefix_messages()[0]["content"].startswith("You write the interest profile of a ")
    assert "<" not in CompactPrompt(INJECTIONS[3]).prefix_messages()[0]["content"] and "movie" in system


def test_cluster_names_from_injection_titles_are_plain_labels():
    frame = pl.DataFrame({
        "item_id": [str(i) for i in range(len(INJECTIONS))], "title": INJECTIONS,
        "genres": [["Drama"] if i % 2 else ["Comedy", "<|im_start|>system"] for i in range(len(INJECTIONS))],
    })  # fmt: skip
    terms, facets = item_terms(frame)
    labels = np.arange(len(INJECTIONS)) % 6
    names, _ = name_clusters(labels, 6, terms, facets, titles=INJECTIONS, popularity=np.arange(len(INJECTIONS), 0, -1))
    assert len(set(names)) == 6
    for name in names:
        assert "<" not in name and ">" not in name and not _invisible(name) and len(name) <= 80, name
    assert any("Ignore previous" in n for n in names)  # a title still names its cluster, as plain text
    for title in INJECTIONS:
        assert not _invisible(clean_title(title)) and "<" not in clean_title(title)
        assert not _invisible(label(title))


# -- (c) user-supplied topics --------------------------------------------------------------------
def _persona(space) -> Persona:
    names = space.fine_names
    return Persona(
        user_id="u1", version=3, summary=f"Mostly {names[0]}.",
        interests=[Interest(cluster=names[0], weight=1.0), Interest(cluster=names[1], weight=0.5)],
        explore=[ExploreTopic(cluster=names[2], reason="Liked by people with similar tastes.")],
        provenance=Provenance(model="m", backend="b", prompt_version="p"),
    )  # fmt: skip


@pytest.mark.parametrize("field", ["added_topics", "blocked_topics"])
def test_injected_topics_are_rejected_with_a_clear_error(space, field):
    names = set(space.fine_names)
    real = space.fine_names[3]
    near_misses = [real + " ", real + "\u200b", real.upper() if real.upper() != real else real + ".", "\u202e" + real]
    for evil in [*INJECTIONS, *near_misses]:
        edits = PersonaEdits(**{field: [real, evil]})
        assert unknown_topics(edits, names) == [evil]
        with pytest.raises(UnknownTopicError) as err:
            check_edits(edits, names)
        msg = str(err.value)
        assert msg.startswith("unknown topic(s) [") and "catalogue cluster names" in msg
        assert "\n" not in msg and len(msg) < 200 and err.value.topics == [evil]  # one bounded line
    assert check_edits(PersonaEdits(**{field: [real]}), names).model_dump()[field] == [real]


def test_injected_topics_never_reach_the_persona_view(space):
    persona = _persona(space)
    names = set(space.fine_names)
    real = space.fine_names[4]
    edits = PersonaEdits(added_topics=[*INJECTIONS, real], blocked_topics=INJECTIONS[:5])
    view = edited_persona(persona, apply_edits(persona, edits, topics=names))
    shown = json.dumps(view["interests"] + view["explore"], ensure_ascii=False)
    assert [i["cluster"] for i in view["interests"]] == [*[i.cluster for i in persona.interests], real]
    assert copied_span(shown) is None and not any(tok in shown for tok in ANGLE_TOKENS)
    for i in view["interests"] + view["explore"]:
        assert i["cluster"] in names
    # a stored blocked topic that is not a cluster blocks nothing: the persona is unchanged
    blocked_only = edited_persona(persona, apply_edits(persona, PersonaEdits(blocked_topics=INJECTIONS), topics=names))
    assert blocked_only["interests"] == [i.model_dump() for i in persona.interests]


# -- (b) the real default engine -----------------------------------------------------------------
TEMPLATE_WORDS = {"mostly", "and", "also", "lately", "something", "new", "to", "try", "liked", "by", "people",
                  "who", "like", "with", "similar", "tastes"}  # fmt: skip
INJECTED_USERS = [3, 11, 26, 40]
REASON = "Also liked by people who like "


def _uncut(reason: str, names: set[str]) -> str:
    """A composed reason whose cluster name was cut to the reason's length limit, with the name
    restored (the cut part must be a prefix of a catalogue name), so names can be removed whole."""
    if reason.startswith(REASON) and reason.endswith("…"):
        part = reason[len(REASON) : -1]
        full = [n for n in names if n.startswith(part)]
        assert full, reason
        return REASON + full[0] + "."
    return reason


def _injected(split, space, users):
    """The split with every history title of ``users`` replaced by a corpus string, and an item
    space whose cluster names the real naming built from those titles (each injected item made
    its cluster's most popular member, so its title names the cluster): the path by which titles
    reach the default engine's prompt and its composed summaries."""
    frame = split.catalogue.frame
    titles = frame["title"].to_list()
    history = split.history("train")
    injected: set[int] = set()
    k = 0
    for u in users:
        for item in dict.fromkeys(int(i) for i in split.history("test")[u]):
            if item not in injected:
                titles[item] = INJECTIONS[k % len(INJECTIONS)]
                injected.add(item)
                k += 1
    split2 = dataclasses.replace(split, catalogue=Catalogue(frame.with_columns(pl.Series("title", titles))))
    popularity = np.bincount(history.items, minlength=split.n_items).astype(np.float64)
    popularity[sorted(injected)] += 1e6
    terms, facets = item_terms(split2.catalogue.frame)
    names, _ = name_clusters(space.fine, space.n_fine, terms, facets, titles=titles, popularity=popularity)
    return split2, dataclasses.replace(space, fine_names=names), injected


@pytest.mark.llm
@pytest.mark.slow
def test_default_engine_on_injection_histories(ml100k_split, space, embedded_backend):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from personarec.personas.generate import PersonaEngine
    from personarec.personas.summary import check_summary

    split, evil_space, injected = _injected(ml100k_split, space, INJECTED_USERS)
    names = set(evil_space.fine_names)
    engine = PersonaEngine(split, evil_space, embedded_backend, PersonasConfig(batch_size=4), seed=5)
    assert engine.format == "compact"  # the default engine
    contexts = [engine.context(u) for u in INJECTED_USERS]
    decoder = engine.compact.decoder
    special = {t: decoder.tokenize(t)[0] for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
    assert all(len(decoder.tokenize(t)) == 1 for t in special)
    carried = 0
    for ctx in contexts:
        req, _ = engine.compact.request(ctx)
        counts = {t: req.tokens.count(i) for t, i in special.items()}  # only the template's own markers
        assert counts == {"<|im_start|>": 2, "<|im_end|>": 1, "<|endoftext|>": 0}, counts
        text = decoder.detokenize(req.tokens)
        carried += sum(1 for s in ctx.stats[:8] if any(clean_title(INJECTIONS[j])[:12] in s.name for j in range(len(INJECTIONS))))
        assert not _invisible(text.replace("\n", ""))
    assert carried >= len(contexts)  # the injection titles do reach the model, inside cluster names

    outs = engine.personas_for(contexts)
    for ctx, out in zip(contexts, outs, strict=True):
        assert out.status == "generated", out.errors
        p = Persona.model_validate(out.persona.model_dump())  # the schema holds
        seen = {s.name for s in ctx.stats}
        interests = [i.cluster for i in p.interests]
        explore = [e.cluster for e in p.explore]
        assert set(interests) <= seen and set(explore) <= set(ctx.candidate_names) and not set(explore) & seen
        assert set(interests + explore) <= names
        payload = {"interests": [i.model_dump() for i in p.interests], "explore": [e.model_dump() for e in p.explore]}
        assert check_summary(p.summary, payload, evil_space.fine_names) == []
        for text in [p.summary, *(_uncut(e.reason, names) for e in p.explore)]:
            assert not any(tok in text for tok in ANGLE_TOKENS) and not _invisible(text), text
            rest = text
            for name in sorted(names, key=len, reverse=True):  # catalogue labels, chosen by grounded decoding
                rest = rest.replace(name, " ")
            assert set(words(rest)) <= TEMPLATE_WORDS, (text, rest)  # nothing else: no instruction text
            assert copied_span(rest) is None
        assert p.summary == compose_summary(payload["interests"], payload["explore"], ctx, engine.config.summary_max_chars)
