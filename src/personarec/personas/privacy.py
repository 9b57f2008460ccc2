"""Demographic words a persona must not add: the default lexicon, the check and the filter.

A persona describes *tastes*. A word such as "she", "retired" or "student" in its text is an
inference about *who the user is* unless the user's own input already said it (a history title
like "The Mother", a cluster name "Kids & Family"): a word the writer read is quoted, not inferred.
So a word is flagged only when it occurs in the persona's text AND does not occur in the user's
source text (:func:`source_text`: every title of the history and the names of the history, explore
candidate and hindsight clusters, a superset of what any prompt shows).

Matching is case-insensitive and on word boundaries ("Batman" is not "man"); a trailing plural
``s`` matches too ("mothers"), irregular plurals are listed; the words of a phrase may be split by
spaces or hyphens ("years-old"). The engine applies :func:`screen` to every LLM-written persona
before it is stored (``personas.demographic_filter``); see
:meth:`personarec.personas.generate.PersonaEngine._screened` for the actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from personarec.personas.history import PersonaContext

#: The default lexicon by group (lower case). Occupations are the generic ones of MovieLens'
#: ``u.occupation`` list without the words that are not occupations ("other", "none") or are
#: genres as much as jobs ("entertainment", "marketing").
DEFAULT_LEXICON: dict[str, tuple[str, ...]] = {
    "gender": (
        "he", "she", "him", "his", "her", "hers", "himself", "herself", "man", "men", "woman", "women",
        "male", "female", "boy", "girl", "guy", "gal", "lady", "ladies", "gentleman", "gentlemen",
        "masculine", "feminine", "mr", "mrs", "ms",
    ),
    "family": (
        "husband", "wife", "wives", "mother", "father", "mom", "mum", "dad", "son", "daughter",
        "brother", "sister", "grandmother", "grandfather", "grandparent", "grandma", "grandpa",
        "parent", "boyfriend", "girlfriend", "spouse", "widow", "widower",
    ),
    "age": (
        "young", "younger", "youth", "old", "older", "elderly", "teen", "teenage", "teenager",
        "adolescent", "senior", "retired", "retiree", "pensioner", "kid", "child", "children",
        "baby", "toddler", "years old", "year old", "aged", "middle aged", "millennial", "boomer",
        "gen z", "student", "college student",
    ),
    "occupation": (
        "administrator", "artist", "doctor", "educator", "teacher", "engineer", "executive",
        "healthcare worker", "nurse", "homemaker", "housewife", "lawyer", "librarian", "programmer",
        "salesman", "saleswoman", "scientist", "technician", "writer",
    ),
}  # fmt: skip


def default_words(groups: Iterable[str] | None = None) -> list[str]:
    """The default lexicon's words (every group, or those of ``groups``), sorted, distinct."""
    chosen = DEFAULT_LEXICON if groups is None else {g: DEFAULT_LEXICON[g] for g in groups}
    return sorted({w for words in chosen.values() for w in words})


def normalise(word: str) -> str:
    """A lexicon entry as it is matched and reported: lower case, single spaces."""
    return " ".join(word.lower().replace("-", " ").split())


class Lexicon:
    """Compiled word-boundary matcher for a list of words or phrases."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = sorted({n for w in words if (n := normalise(w))})
        # longest first, so "college student" is reported whole, not as "student"
        alternatives = [
            r"[\s\-]+".join(re.escape(part) for part in w.split()) + "s?"
            for w in sorted(self.words, key=len, reverse=True)
        ]
        body = "|".join(alternatives)
        self._pattern = re.compile(r"(?<!\w)(" + body + r")(?!\w)", re.IGNORECASE) if alternatives else None
        self._entry = {w.replace(" ", ""): w for w in self.words}

    def find(self, text: str) -> set[str]:
        """The lexicon entries that occur in ``text``."""
        if self._pattern is None or not text:
            return set()
        found = set()
        for m in self._pattern.finditer(text):
            key = re.sub(r"[\s\-]+", "", m.group(1).lower())
            entry = self._entry.get(key) or self._entry.get(key[:-1])  # plural s
            if entry is not None:
                found.add(entry)
        return found

    def unsupported(self, text: str, source: str) -> list[str]:
        """Entries in ``text`` that ``source`` (what the writer read) does not contain, sorted."""
        found = self.find(text)
        return sorted(found - self.find(source)) if found else []


@lru_cache(maxsize=8)
def _cached(words: tuple[str, ...]) -> Lexicon:
    return Lexicon(words)


def lexicon(words: Sequence[str] | None) -> Lexicon:
    """The lexicon of a config value: ``None`` = every default group (compiled once per process)."""
    return _cached(tuple(default_words() if words is None else words))


def source_text(ctx: PersonaContext) -> str:
    """The user's own input: every title of the history and the names of its clusters, of the
    explore candidates and of the hindsight clusters; one line each."""
    lines = [ctx.titles[int(i)] for i in ctx.history.items if 0 <= int(i) < len(ctx.titles)]
    lines += [s.name for s in ctx.stats]
    lines += ctx.candidate_names
    if ctx.hindsight:
        lines += [s.name for s in ctx.hindsight]
    return "\n".join(lines)


def persona_texts(summary: str, reasons: Sequence[str]) -> dict[str, str]:
    """The free-text fields of a persona by name (``summary``, ``reason:<i>``): what is screened.
    Cluster names are catalogue text from the user's context and are not screened."""
    return {"summary": summary, **{f"reason:{i}": r for i, r in enumerate(reasons)}}


@dataclass(frozen=True)
class Finding:
    """Words of one persona that its input does not support, by field."""

    fields: dict[str, list[str]]

    @property
    def words(self) -> list[str]:
        return sorted({w for ws in self.fields.values() for w in ws})

    def __bool__(self) -> bool:
        return bool(self.fields)

    def detail(self) -> str:
        """What the engine's error line says (after ``demographic:``, the error kind)."""
        return f"words not in the user's input: {self.words} in {sorted(self.fields)}"


def screen(summary: str, reasons: Sequence[str], source: str, words: Lexicon) -> Finding:
    """Which free-text fields carry lexicon words that ``source`` does not contain."""
    fields = {}
    for name, text in persona_texts(summary, reasons).items():
        bad = words.unsupported(text, source)
        if bad:
            fields[name] = bad
    return Finding(fields)
