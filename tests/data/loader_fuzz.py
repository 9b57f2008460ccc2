"""Hostile input for every data loader: hypothesis strategies and the property they must hold.

The property (issue 12, part 5): a loader either returns a well-formed dataset or raises
:class:`~personarec.errors.DataError` whose one-line message names the file (and, for a row, the
line). Well-formed: the interaction columns have their declared types, ids are non-blank strings
(no BOM), timestamps are non-null integers, ratings are finite or null, the catalogue has unique
non-null ids. Any other exception is a loader bug.

Two kinds of cases per loader:

- *structured*: a valid file built from drawn rows (odd unicode, separators and quotes inside
  quoted fields, CRLF, BOM, blank lines, no final newline), optionally with exactly ONE malformed
  row injected at a known line. The loader must return exactly the drawn events; with the bad
  row, it must name that file and line, or under ``skip_bad_rows`` return the other events and
  count that line in the report. So no row is dropped silently and every line number is right.
- *hostile*: a valid file mutated byte-wise (NULs, stray quotes, BOMs, truncation, huge numbers)
  or plain random bytes. No oracle for the content: only the property above.

Shared by ``tests/data/test_fuzz_loaders.py`` (pytest) and ``benchmarks/trust_fuzz.py`` (counts).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hypothesis import strategies as st

from personarec.data.amazon import load_amazon
from personarec.data.movielens import load_ml1m, load_ml100k, load_ml_latest_small
from personarec.data.p5 import load_p5
from personarec.data.parsing import ReadReport
from personarec.data.records import CATALOGUE_SCHEMA, INTERACTION_SCHEMA, Dataset
from personarec.data.tabular import is_column_pattern, load_tabular
from personarec.errors import ConfigError, DataError

Event = tuple[str, str, int, float | None]  # user, item, timestamp, rating


@dataclass
class Case:
    """Files to write into an empty folder, how to load them and what the loader must do."""

    files: dict[str, bytes]
    skip: bool = False
    options: dict[str, Any] | None = None  # tabular: the [data.tabular] mapping
    events: list[Event] | None = None  # exactly these (in order) when it loads: valid file or bad row skipped
    bad: tuple[str, int] | None = None  # (file, line) of the one malformed row; line 0 = a Parquet row
    bad_row: int | None = None  # Parquet: the 1-based row named as "row N"
    config_error: bool = False  # the options themselves are invalid: ConfigError


# -- the property --------------------------------------------------------------------------------
LOADERS: dict[str, Callable[[Path, Case, ReadReport], Dataset]] = {
    "ml-100k": lambda d, c, r: load_ml100k(d, skip_bad_rows=c.skip, report=r),
    "ml-1m": lambda d, c, r: load_ml1m(d, skip_bad_rows=c.skip, report=r),
    "ml-csv": lambda d, c, r: load_ml_latest_small(d, skip_bad_rows=c.skip, report=r),
    "amazon": lambda d, c, r: load_amazon(d, skip_bad_rows=c.skip, report=r),
    "p5": lambda d, c, r: load_p5(d, skip_bad_rows=c.skip, report=r),
    "tabular": lambda d, c, r: load_tabular(d, skip_bad_rows=c.skip, report=r, options=c.options),
}


def check(loader: str, case: Case) -> str:
    """Run ``loader`` on ``case``; ``"ok"`` or ``"clear_error"``, AssertionError when the property
    fails, and any other exception (a loader bug) propagates."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, data in case.files.items():
            (d / name).write_bytes(data)
        report = ReadReport()
        try:
            ds = LOADERS[loader](d, case, report)
        except ConfigError as exc:
            assert case.config_error, f"unexpected ConfigError: {exc}"
            return "clear_error"
        except DataError as exc:
            _check_error(exc, d, case)
            return "clear_error"
        assert not case.config_error, "invalid options were accepted"
        _check_dataset(ds)
        _check_expected(ds, case, report, d)
        return "ok"


def _check_error(exc: DataError, d: Path, case: Case) -> None:
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
    named = [n for n in case.files if str(d / n) in msg]
    assert named or str(d) in msg, f"message names no file: {msg}"
    if exc.path is not None:
        assert Path(exc.path).name in case.files, msg
    if exc.line is not None:
        assert exc.path is not None and f"{exc.path}, line {exc.line}:" in msg, msg
        data = case.files[Path(exc.path).name]
        if Path(exc.path).suffix == ".gz":  # what a (possibly broken) stream yields before it breaks
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        lines = len(re.split(rb"\r\n|\r|\n", data))  # text-mode readers also end a line at a lone \r
        assert 1 <= exc.line <= lines, f"line {exc.line} is past the end: {msg}"
    if case.config_error:
        return
    if case.bad is None:
        assert case.events is None, f"a valid file was refused: {msg}"
        return
    assert not case.skip, f"skip_bad_rows raised for a skippable row: {msg}"
    name, line = case.bad
    if case.bad_row is not None:
        assert f"{name}: row {case.bad_row}:" in msg, f"expected {name} row {case.bad_row}: {msg}"
    else:
        assert (Path(exc.path or "").name, exc.line) == (name, line), f"expected {name} line {line}: {msg}"


def _check_dataset(ds: Dataset) -> None:
    f = ds.interactions.frame
    assert dict(f.schema) == INTERACTION_SCHEMA, f.schema
    assert f.select(pl.col("user_id", "item_id", "timestamp", "seq").null_count()).row(0) == (0, 0, 0, 0)
    for col in ("user_id", "item_id"):
        ids = f[col]
        assert not (ids.str.strip_chars() == "").any(), f"blank {col}"
        assert not ids.str.starts_with("\ufeff").any() and not ids.str.starts_with("ï»¿").any(), f"BOM in {col}"
    ratings = f["rating"].drop_nulls()
    assert ratings.is_finite().all(), "non-finite rating"
    assert f["seq"].n_unique() == f.height
    c = ds.catalogue.frame
    assert dict(c.schema) == CATALOGUE_SCHEMA, c.schema
    assert c["item_id"].null_count() == 0 and c["item_id"].n_unique() == c.height
    assert c["title"].null_count() == 0 and c["genres"].null_count() == 0
    assert c.select(pl.col("genres").list.eval(pl.element().is_null()).list.any().any()).item() is False


def _check_expected(ds: Dataset, case: Case, report: ReadReport, d: Path) -> None:
    if case.bad is not None:
        assert case.skip, f"the malformed row {case.bad} was accepted"
        name, line = case.bad
        key = str(d / name)
        assert report.skipped == {key: 1}, report.skipped
        if case.bad_row is None:
            assert report.examples[key] == [line], report.examples
        else:
            assert report.examples[key] == [case.bad_row], report.examples
    elif not case.skip:
        assert report.total == 0
    if case.events is None:
        return
    f = ds.interactions.frame
    got = list(zip(f["user_id"].to_list(), f["item_id"].to_list(), f["timestamp"].to_list(), strict=True))
    assert got == [e[:3] for e in case.events], (got[:5], case.events[:5])
    for value, (*_, want) in zip(f["rating"].to_list(), case.events, strict=True):
        if want is None:
            assert value is None
        else:
            assert value is not None and math.isclose(value, float(np.float32(want)), rel_tol=1e-6, abs_tol=1e-6)


# -- values ------------------------------------------------------------------------------------
#: characters of ids: letters, digits, marks, symbols, CJK, RTL, emoji, zero-width joiners; never
#: control characters, spaces, line separators or the BOM
_ID_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Co", "Cn"), exclude_characters="\ufeff\ufffe\uffff"
)
HOSTILE_SNIPPETS = [
    b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b'"', b'""', b"\r", b"\n", b"\r\n", b"\t", b"::", b"|", b",", b";",
    b"\\", "\u202e".encode(), "\u200b".encode(), "\u2028".encode(), b"\x85", b"\x1f", b"\xc3", b"\xed\xa0\x80",
    b"99999999999999999999999", b"-1e400", b"nan", b"inf", b"{", b"}", b"[" * 40, b"'", b"1.5",
    b'{"a": ', b"</s><|im_start|>system", "\U0001f600".encode(), b" " * 20,
]  # fmt: skip


def ids(exclude: str = "", latin1: bool = False, max_size: int = 8) -> st.SearchStrategy[str]:
    chars = st.characters(codec="latin-1", exclude_categories=("Cc", "Zs")) if latin1 else _ID_CHARS
    return st.text(chars.filter(lambda ch: ch not in exclude), min_size=1, max_size=max_size).filter(
        lambda s: s.strip() and not s.startswith("\ufeff")
    )


TIMESTAMPS = st.integers(-(2**63), 2**63 - 1)
RATINGS = st.one_of(st.integers(-5, 10).map(float), st.floats(-1e6, 1e6, allow_nan=False, width=32))
BAD_TIMESTAMPS = st.sampled_from(
    ["yesterday", "1.5", "1e3", "0x10", "１２", "99999999999999999999", "-99999999999999999999", "nan", "--1", "1 2"]
)
BAD_RATINGS = st.sampled_from(["nan", "inf", "-inf", "1e400", "abc", "NaN", "∞", "½", "--1"])


def _rating_text(x: float) -> str:
    return repr(float(x))


@st.composite
def layout(draw, records: list[str], *, header: bool, blank_ok: bool = True) -> tuple[str, list[int]]:
    """The file text of ``records`` (a record may hold newlines inside quotes) with drawn line
    endings, blank or whitespace-only lines in between and an optional final newline; returns the
    text and the first line of every record."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    blanks = ["", "   ", " \t "] if blank_ok else [""]
    parts: list[str] = []
    starts: list[int] = []
    line = 1
    for i, rec in enumerate(records):
        if blank_ok and (i > 0 or not header) and draw(st.integers(0, 9)) == 0:
            for _ in range(draw(st.integers(1, 2))):
                parts.append(draw(st.sampled_from(blanks)) + eol)
                line += 1
        starts.append(line)
        parts.append(rec + eol)
        line += 1 + rec.count("\n")
    text = "".join(parts)
    if records and draw(st.booleans()):
        text = text[: -len(eol)]  # no final newline
    return text, starts


def encode(draw, text: str, encoding: str = "utf8", bom_ok: bool = True) -> bytes:
    data = text.encode(encoding, errors="replace")  # a bad row may hold "∞" in a latin-1 file
    if bom_ok and encoding in ("utf8", "latin-1") and draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with a few byte-level edits: insertions of hostile snippets, deletions,
    replacements, truncation, duplicated chunks."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "dup"]))
        at = draw(st.integers(0, len(data)))
        snippet = draw(st.one_of(st.sampled_from(HOSTILE_SNIPPETS), st.binary(min_size=1, max_size=6)))
        if op == "insert":
            data[at:at] = snippet
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "replace":
            data[at : at + len(snippet)] = snippet
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 30))]
    return bytes(data)


def hostile(base: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A mutated valid file, random bytes, or one of the classic degenerate files."""
    degenerate = st.sampled_from([b"", b"\xef\xbb\xbf", b"\n", b"\r\n\r\n", b"\x00" * 8, b'"', b"\xff" * 5])
    return st.one_of(base.flatmap(mutated), st.binary(max_size=200), degenerate)


# -- delimited tables ----------------------------------------------------------------------------
def csv_field(value: str, sep: str) -> str:
    """RFC 4180: quote a field holding the separator, a quote or a newline."""
    if sep in value or '"' in value or "\n" in value or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass
class Bad:
    """One malformed row: its fields (None = drop the field) and whether it only breaks later lines."""

    fields: list[str]
    raw: str | None = None  # the rendered record, when the damage is in the quoting itself
    last_only: bool = False  # only valid as the last record (an unclosed quote swallows the rest)
    not_first: bool = False  # header-less files take their width from the first line


@st.composite
def bad_row(
    draw, good: list[str], *, ts: int, rating: int | None, user: int, item: int, quoting: bool, empty_rating_ok: bool
) -> Bad:
    """One malformed version of the ``good`` fields: a field too few or too many, a timestamp or
    rating that does not parse, a blank user or item id, or (CSV) broken quoting."""
    kinds = ["few", "many", "ts", "user", "item"] + (["rating"] if rating is not None else [])
    kinds += ["quote", "unclosed"] if quoting else []
    kind = draw(st.sampled_from(kinds))
    fields = list(good)
    if kind == "few":
        keep = ts if empty_rating_ok or rating is None else min(ts, rating)
        return Bad(fields[: draw(st.integers(1, keep))] if keep >= 1 else fields[:1])
    if kind == "many":
        return Bad(fields + [draw(st.sampled_from(["x", " ", "1"]))], not_first=True)  # an empty one is ignored
    if kind == "ts":
        fields[ts] = draw(BAD_TIMESTAMPS | st.sampled_from(["", "   "]))
        return Bad(fields)
    if kind == "rating":
        assert rating is not None
        fields[rating] = draw(BAD_RATINGS)
        return Bad(fields)
    if kind in ("user", "item"):
        fields[user if kind == "user" else item] = draw(st.sampled_from(["", "  "]))
        return Bad(fields)
    if kind == "quote":  # a quote inside an unquoted (or after a closed) field
        return Bad(fields, raw=",".join([csv_field(fields[0], ",") + 'x"y'] + [csv_field(f, ",") for f in fields[1:]]))
    return Bad(fields, raw='"open' + ",1" * (len(fields) - 1), last_only=True)  # never closed


@st.composite
def table(
    draw,
    rows: list[list[str]],
    *,
    sep: str,
    header: list[str] | None,
    quoting: bool,
    bad: Bad | None,
    blank_ok: bool = True,
) -> tuple[str, list[int], int | None]:
    """Rendered rows (+ header, + the bad row at a drawn position): (text, line per good row, bad line)."""
    render = (lambda fs: sep.join(csv_field(f, sep) for f in fs)) if quoting else sep.join
    records = [render(r) for r in rows]
    if sep != "\x1e":  # real tables: a trailing separator (an empty extra field) is ignored; not on
        # the first line of a header-less file, whose width it would set (the loader's documented rule)
        records = [r + sep if (k > 0 or header is not None) and draw(st.integers(0, 7)) == 0 else r for k, r in enumerate(records)]
    bad_at = None
    if bad is not None:
        lo = 1 if bad.not_first else 0
        bad_at = len(records) if bad.last_only else draw(st.integers(min(lo, len(records)), len(records)))
        if bad.not_first and bad_at == 0:
            bad_at = None  # nothing to put it after: leave the file valid
        else:
            records.insert(bad_at, bad.raw if bad.raw is not None else render(bad.fields))
    all_records = ([render(header)] if header is not None else []) + records
    text, starts = draw(layout(all_records, header=header is not None, blank_ok=blank_ok))
    starts = starts[1:] if header is not None else starts
    bad_line = None
    if bad_at is not None:
        bad_line = starts.pop(bad_at)
    return text, starts, bad_line


def _events(rows: list[list[str]], u: int, i: int, t: int, r: int | None) -> list[Event]:
    return [(row[u], row[i], int(row[t]), float(row[r]) if r is not None and row[r] != "" else None) for row in rows]


@st.composite
def event_rows(draw, id_strategy: st.SearchStrategy[str], *, min_size: int = 1) -> list[tuple[str, str, int, float]]:
    return draw(st.lists(st.tuples(id_strategy, id_strategy, TIMESTAMPS, RATINGS), min_size=min_size, max_size=12))


# -- MovieLens ------------------------------------------------------------------------------------
ML100K_ITEM = "1|A (1990)|01-Jan-1990||http://x|" + "|".join("1" if g == 8 else "0" for g in range(19))


@st.composite
def ml100k_structured(draw) -> Case:
    rows = [[u, i, _rating_text(r), str(t)] for u, i, t, r in draw(event_rows(ids("\t|")))]
    inject = draw(st.booleans())
    bad = draw(bad_row(rows[0], ts=3, rating=2, user=0, item=1, quoting=False, empty_rating_ok=False)) if inject else None
    text, _, bad_line = draw(table(rows, sep="\t", header=None, quoting=False, bad=bad))
    skip = draw(st.booleans())
    files = {"u.data": encode(draw, text), "u.item": (ML100K_ITEM + "\n").encode("latin-1")}
    events = [(u, i, int(t), float(r)) for u, i, r, t in rows]
    return Case(files, skip=skip, events=events if bad_line is None or skip else None, bad=("u.data", bad_line) if bad_line else None)


@st.composite
def ml100k_items_structured(draw) -> Case:
    """u.item: latin-1, 24 ``|`` fields, genre flags; one malformed item row."""
    items = draw(st.lists(ids("|", latin1=True), min_size=1, max_size=8, unique=True))
    title = st.text(st.characters(codec="latin-1", exclude_characters="|\n\r"), max_size=30)
    rows = [[i, draw(title), "01-Jan-1990", "", "http://x"] + [draw(st.sampled_from("01")) for _ in range(19)] for i in items]
    kind = draw(st.sampled_from(["none", "flag", "few", "id"]))
    bad = None
    if kind == "flag":
        fields = list(rows[0])
        fields[5 + draw(st.integers(0, 18))] = draw(st.sampled_from(["x", "999", "1.0", ""]))
        bad = Bad(fields)
    elif kind == "few":
        bad = Bad(rows[0][: draw(st.integers(1, 20))])
    elif kind == "id":
        bad = Bad(["  "] + rows[0][1:])
    text, _, bad_line = draw(table(rows, sep="|", header=None, quoting=False, bad=bad))
    skip = draw(st.booleans())
    data = "1\t" + items[0] + "\t4\t100\n"
    files = {"u.data": data.encode("utf8"), "u.item": encode(draw, text, "latin-1")}
    events = [("1", items[0], 100, 4.0)] if bad_line is None or skip else None
    return Case(files, skip=skip, events=events, bad=("u.item", bad_line) if bad_line else None)


@st.composite
def ml1m_structured(draw) -> Case:
    rows = [[u, i, _rating_text(r), str(t)] for u, i, t, r in draw(event_rows(ids(":", latin1=True)))]
    target = draw(st.sampled_from(["ratings", "movies", "none"]))
    bad = None
    if target == "ratings":
        bad = draw(bad_row(rows[0], ts=3, rating=2, user=0, item=1, quoting=False, empty_rating_ok=False))
    text, _, bad_line = draw(table(rows, sep="::", header=None, quoting=False, bad=bad))
    movie_rows = [[i, f"Title {k} (1990)", "Drama|Comedy"] for k, i in enumerate(dict.fromkeys(r[1] for r in rows))]
    mbad = Bad(["  ", "T", "Drama"]) if target == "movies" else None
    mtext, _, mbad_line = draw(table(movie_rows, sep="::", header=None, quoting=False, bad=mbad))
    skip = draw(st.booleans())
    files = {"ratings.dat": encode(draw, text, "latin-1"), "movies.dat": encode(draw, mtext, "latin-1")}
    where = ("ratings.dat", bad_line) if bad_line else ("movies.dat", mbad_line) if mbad_line else None
    events = [(u, i, int(t), float(r)) for u, i, r, t in rows]
    return Case(files, skip=skip, events=events if where is None or skip else None, bad=where)


@st.composite
def mlcsv_structured(draw) -> Case:
    """ratings.csv / movies.csv / tags.csv with quoted fields (commas, quotes, newlines inside)."""
    csv_ids = ids(max_size=6) | st.text(st.sampled_from('ab,"\n '), min_size=1, max_size=5).filter(lambda s: s.strip())
    rows = [[u, i, _rating_text(r), str(t)] for u, i, t, r in draw(event_rows(csv_ids))]
    target = draw(st.sampled_from(["ratings", "movies", "tags", "none"]))
    bad = draw(bad_row(rows[0], ts=3, rating=2, user=0, item=1, quoting=True, empty_rating_ok=False)) if target == "ratings" else None
    text, _, bad_line = draw(table(rows, sep=",", header=["userId", "movieId", "rating", "timestamp"], quoting=True, bad=bad))
    titles = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
    movie_rows = [[i, draw(titles), draw(st.sampled_from(["Drama|Comedy", "(no genres listed)", ""]))] for i in dict.fromkeys(r[1] for r in rows)]
    mbad = Bad(["  ", "T", "Drama"]) if target == "movies" else None
    mtext, _, mbad_line = draw(table(movie_rows, sep=",", header=["movieId", "title", "genres"], quoting=True, bad=mbad))
    files = {"ratings.csv": encode(draw, text), "movies.csv": encode(draw, mtext)}
    tbad_line = None
    if target == "tags" or draw(st.booleans()):
        tag_rows = [[r[0], r[1], draw(st.text(max_size=8)), str(draw(TIMESTAMPS))] for r in rows[:4]]
        tbad = Bad([rows[0][0], rows[0][1], "t", draw(BAD_TIMESTAMPS)]) if target == "tags" else None
        ttext, _, tbad_line = draw(table(tag_rows, sep=",", header=["userId", "movieId", "tag", "timestamp"], quoting=True, bad=tbad))
        files["tags.csv"] = encode(draw, ttext)
    skip = draw(st.booleans())
    where = next(((n, ln) for n, ln in (("ratings.csv", bad_line), ("movies.csv", mbad_line), ("tags.csv", tbad_line)) if ln), None)
    events = [(u, i, int(t), float(r)) for u, i, r, t in rows]
    return Case(files, skip=skip, events=events if where is None or skip else None, bad=where)


@st.composite
def ml100k_hostile(draw) -> Case:
    case = draw(st.one_of(ml100k_structured(), ml100k_items_structured()))
    name = draw(st.sampled_from(sorted(case.files)))
    files = dict(case.files)
    files[name] = draw(hostile(st.just(files[name])))
    return Case(files, skip=draw(st.booleans()))


@st.composite
def ml1m_hostile(draw) -> Case:
    case = draw(ml1m_structured())
    name = draw(st.sampled_from(["ratings.dat", "movies.dat"]))
    files = dict(case.files)
    files[name] = draw(hostile(st.just(files[name])))
    return Case(files, skip=draw(st.booleans()))


@st.composite
def mlcsv_hostile(draw) -> Case:
    case = draw(mlcsv_structured())
    name = draw(st.sampled_from(sorted(case.files)))
    files = dict(case.files)
    files[name] = draw(hostile(st.just(files[name])))
    return Case(files, skip=draw(st.booleans()))


# -- Amazon --------------------------------------------------------------------------------------
def _review(u: str, i: str, t: int, r: float | None, extra: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"reviewerID": u, "asin": i, "unixReviewTime": t, **extra}
    if r is not None:
        obj["overall"] = r
    return obj


BAD_JSON_LINES = st.sampled_from([
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1',  # truncated
    "[1, 2]", '"text"', "null", "{]", "nan", "\x00", "[" * 3000,
    '{"reviewerID": "A", "asin": ["B"], "unixReviewTime": 1}',
    '{"reviewerID": {"a": 1}, "asin": "B", "unixReviewTime": 1}',
    '{"reviewerID": true, "asin": "B", "unixReviewTime": 1}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": true}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1.5}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": 100000000000000000000000}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": "soon"}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1, "overall": NaN}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1, "overall": Infinity}',
    '{"reviewerID": "A", "asin": "B", "unixReviewTime": 1, "overall": "x"}',
    '{"reviewerID": "  ", "asin": "B", "unixReviewTime": 1}',
    '{"reviewerID": "A", "asin": "", "unixReviewTime": 1}',
    '{"asin": "B", "unixReviewTime": 1}',
    '{"reviewerID": "A", "asin": "B"}',
])  # fmt: skip
BAD_META_LINES = st.sampled_from([
    '{"title": "no asin"}', "[1]", "{'asin': 'B', 'title': }", '{"asin": ["B"]}', '{"asin": "  "}',
    "{[1]: 2}", "__import__('os')", "\x00", "{" * 500, "'" + "x" * 20, '{"asin": 5}',
])  # fmt: skip


#: unknown review fields (ignored by the loader, odd keys and values included)
EXTRA_FIELDS = st.dictionaries(
    st.text(max_size=5).filter(lambda k: k not in ("reviewerID", "asin", "unixReviewTime", "overall")),
    st.one_of(st.text(max_size=10), st.integers(), st.none()),
    max_size=2,
)
#: metadata categories: a 2018 flat list, 2014 paths, or junk (a number, nothing)
CATEGORIES = st.one_of(
    st.lists(st.text(max_size=5), max_size=2), st.lists(st.lists(st.text(max_size=4), max_size=2), max_size=2),
    st.integers(), st.none(),
)  # fmt: skip


@st.composite
def amazon_structured(draw) -> Case:
    """Reviews as JSON lines (or a header-less CSV), optional metadata (JSON or 2014 Python literals),
    optionally gzipped; one malformed line in one of them."""
    events = [(u, i, t, draw(st.one_of(st.none(), RATINGS))) for u, i, t, _ in draw(event_rows(ids()))]
    events = [(u, i, int(t), None if r is None else float(r)) for u, i, t, r in events]
    as_csv = draw(st.booleans())
    target = draw(st.sampled_from(["events", "meta", "none"]))
    gz = draw(st.booleans())
    files: dict[str, bytes] = {}
    bad_where = None
    if as_csv:
        rows = [[i, u, "" if r is None else _rating_text(r), str(t)] for u, i, t, r in events]
        bad = draw(bad_row(rows[0], ts=3, rating=2, user=1, item=0, quoting=True, empty_rating_ok=True)) if target == "events" else None
        text, _, bad_line = draw(table(rows, sep=",", header=None, quoting=True, bad=bad))
        name = "Beauty.csv" + (".gz" if gz else "")
    else:
        lines = [json.dumps(_review(u, i, t, r, draw(EXTRA_FIELDS)), ensure_ascii=draw(st.booleans())) for u, i, t, r in events]
        bad = Bad([], raw=draw(BAD_JSON_LINES)) if target == "events" else None
        text, _, bad_line = draw(table([[x] for x in lines], sep="\x1e", header=None, quoting=False, bad=bad))
        name = "Beauty_5.json" + (".gz" if gz else "")
    data = encode(draw, text, bom_ok=not as_csv)
    files[name] = gzip.compress(data, mtime=0) if gz else data
    if bad_line:
        bad_where = (name, bad_line)
    meta_bad_line = None
    if target == "meta" or draw(st.booleans()):
        items = list(dict.fromkeys(e[1] for e in events))
        meta_lines = []
        for k, i in enumerate(items):
            obj = {"asin": i, "title": draw(st.text(max_size=15)), "category": draw(CATEGORIES)}
            meta_lines.append(repr(obj) if draw(st.booleans()) else json.dumps(obj))
        mbad = Bad([], raw=draw(BAD_META_LINES)) if target == "meta" else None
        mtext, _, meta_bad_line = draw(table([[x] for x in meta_lines], sep="\x1e", header=None, quoting=False, bad=mbad))
        mname = "meta_Beauty.json" + (".gz" if gz else "")
        files[mname] = gzip.compress(mtext.encode(), mtime=0) if gz else mtext.encode()
        if meta_bad_line:
            bad_where = (mname, meta_bad_line)
    skip = draw(st.booleans())
    return Case(files, skip=skip, events=events if bad_where is None or skip else None, bad=bad_where)


@st.composite
def amazon_hostile(draw) -> Case:
    case = draw(amazon_structured())
    name = draw(st.sampled_from(sorted(case.files)))
    files = dict(case.files)
    data = files[name]
    if name.endswith(".gz") and draw(st.booleans()):
        files[name] = gzip.compress(draw(hostile(st.just(gzip.decompress(data)))), mtime=0)
    else:
        files[name] = draw(hostile(st.just(data)))  # a broken gzip stream, too
    return Case(files, skip=draw(st.booleans()))


# -- P5 ------------------------------------------------------------------------------------------
@st.composite
def p5_structured(draw) -> Case:
    """user_sequence.txt (space-separated, timestamps = positions) and a RecBole .item file whose
    quoted titles may hold tabs and newlines; one malformed line in one of them."""
    p5_ids = ids(max_size=6)
    users = draw(st.lists(st.tuples(p5_ids, st.lists(p5_ids, min_size=1, max_size=5)), min_size=1, max_size=8))
    sep = draw(st.sampled_from([" ", "  ", "\t"]))
    target = draw(st.sampled_from(["sequences", "items", "none"]))
    records = [sep.join([u, *items]) for u, items in users]
    bad = Bad([], raw=users[0][0]) if target == "sequences" else None
    text, _, bad_line = draw(table([[r] for r in records], sep="\x1e", header=None, quoting=False, bad=bad))
    files = {"user_sequence.txt": encode(draw, text)}
    events = [(u, i, k, None) for u, items in users for k, i in enumerate(items)]
    ibad_line = None
    if target == "items" or draw(st.booleans()):
        item_ids = list(dict.fromkeys(e[1] for e in events))
        title = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"), max_size=12)
        rows = [[i, draw(title), "'Beauty', 'Makeup'", "Brand"] for i in item_ids]
        kind = draw(st.sampled_from(["many", "quote", "id", "cats"]))
        ibad = None
        if target == "items":
            ibad = {
                "many": Bad(rows[0] + ["extra"]),
                "quote": Bad([], raw="\t".join([rows[0][0] + 'x"y', *(csv_field(f, "\t") for f in rows[0][1:])])),
                "id": Bad(["  ", "T", "", ""]),
                "cats": Bad([rows[0][0], "T", draw(st.sampled_from(["'a", "'a', __import__('os')", "'a', {[1]: 2}", "'" + "[" * 200]))]),
            }[kind]
        itext, _, ibad_line = draw(
            table(rows, sep="\t", header=["item_id:token", "title:token", "categories:token_seq", "brand:token"], quoting=True, bad=ibad)
        )
        files["Amazon_Beauty.item"] = encode(draw, itext)
    skip = draw(st.booleans())
    where = ("user_sequence.txt", bad_line) if bad_line else ("Amazon_Beauty.item", ibad_line) if ibad_line else None
    return Case(files, skip=skip, events=events if where is None or skip else None, bad=where)


@st.composite
def p5_hostile(draw) -> Case:
    case = draw(p5_structured())
    name = draw(st.sampled_from(sorted(case.files)))
    files = dict(case.files)
    files[name] = draw(hostile(st.just(files[name])))
    return Case(files, skip=draw(st.booleans()))


# -- tabular -------------------------------------------------------------------------------------
SEPARATORS = [",", ";", "\t", "|", "::", "§", "||"]
ENCODINGS = ["utf8", "latin-1", "utf-16"]
_RESERVED = {"_line", "_ts", "_rating"}
# a name polars reads as a pattern (`*`, `^...$`) is refused by TabularConfig (tests/data/test_tabular.py)
COLUMN_NAMES = st.text(_ID_CHARS.filter(lambda ch: ch not in ',;|§:"'), min_size=1, max_size=6).filter(
    lambda s: s not in _RESERVED and not is_column_pattern(s)
)
latin1_names = st.text(st.characters(codec="latin-1", exclude_categories=("Cc", "Zs"), exclude_characters=',;|§:"'), min_size=1, max_size=6).filter(
    lambda s: not is_column_pattern(s)
)


@st.composite
def tabular_csv_structured(draw) -> Case:
    """Events in a CSV described by a drawn column mapping (separator, encoding, header or not,
    text dates, ratings), plus a catalogue; one malformed row."""
    sep = draw(st.sampled_from(SEPARATORS))
    encoding = draw(st.sampled_from(ENCODINGS))
    latin1 = encoding == "latin-1"
    has_header = draw(st.booleans())
    quoting = sep == ","
    names = ["c0", "c1", "c2", "c3"]
    if has_header:
        names = draw(st.lists(latin1_names if latin1 else COLUMN_NAMES, min_size=4, max_size=4, unique=True))
    user_col, item_col, ts_col, rating_col = names
    with_rating = draw(st.booleans())
    text_dates = draw(st.booleans())
    id_strategy = ids(sep + ":" + '"', latin1=latin1) if not quoting else ids(latin1=latin1)
    raw = draw(event_rows(id_strategy))
    fmt = "%Y-%m-%d %H:%M:%S"
    if text_dates:  # 1938 .. 2065
        raw = [(u, i, t % 4_000_000_000 - 1_000_000_000, r) for u, i, t, r in raw]

    def ts_text(t: int) -> str:
        return np.datetime64(t, "s").astype(object).strftime(fmt) if text_dates else str(t)

    rows = [[u, i, ts_text(t)] + ([_rating_text(r)] if with_rating else []) for u, i, t, r in raw]
    inject = draw(st.booleans())
    bad = None
    if inject:
        bad = draw(bad_row(rows[0], ts=2, rating=3 if with_rating else None, user=0, item=1, quoting=quoting, empty_rating_ok=True))
    header = names[: len(rows[0])] if has_header else None
    text, _, bad_line = draw(table(rows, sep=sep, header=header, quoting=quoting, bad=bad))
    data = text.encode(encoding)
    if encoding == "utf8" and draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    files = {"events.csv": data}
    options: dict[str, Any] = {
        "paths": "events.csv", "separator": sep, "encoding": encoding, "has_header": has_header,
        "user_col": user_col, "item_col": item_col, "timestamp_col": ts_col,
        "timestamp_format": fmt if text_dates else None, "rating_col": rating_col if with_rating else None,
    }  # fmt: skip
    if not has_header:
        options.update(user_col="c0", item_col="c1", timestamp_col="c2", rating_col="c3" if with_rating else None)
    if draw(st.booleans()):
        title = st.text(st.characters(codec="latin-1" if latin1 else "utf-8", exclude_categories=("Cc", "Cs")), max_size=10)
        title = title.filter(lambda s: not any(ch in s for ch in sep + '"/'))
        cat_rows = [[i, draw(title), "a/b"] for i in dict.fromkeys(r[1] for r in rows)]
        ctext, _, _ = draw(table(cat_rows, sep=sep, header=["item", "name", "labels"] if has_header else None, quoting=quoting, bad=None))
        files["items.csv"] = ctext.encode(encoding)
        options.update(catalogue="items.csv", catalogue_item_col="item" if has_header else "c0", list_separator="/",
                       title_col="name" if has_header else "c1", text_cols={"genres": "labels" if has_header else "c2"})  # fmt: skip
    skip = draw(st.booleans())
    events = [(u, i, int(t), float(r) if with_rating else None) for u, i, t, r in raw]
    return Case(files, skip=skip, options=options, events=events if bad_line is None or skip else None,
                bad=("events.csv", bad_line) if bad_line else None)  # fmt: skip


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


@st.composite
def tabular_parquet_structured(draw) -> Case:
    """Parquet events with drawn column types (text / integer / categorical ids; integer, float,
    datetime or text timestamps) and at most one bad row (null or blank id, null or unparsable
    timestamp, non-numeric or non-finite rating), or a column of a type no id can have."""
    raw = draw(event_rows(ids(max_size=5), min_size=1))
    int_ids = draw(st.booleans())
    users = list(range(len(raw))) if int_ids else [u for u, *_ in raw]
    items = [i for _, i, _, _ in raw]
    ts_kind = draw(st.sampled_from(["int", "float", "datetime", "text"]))
    stamps = [t % 4_000_000_000 - 1_000_000_000 for _, _, t, _ in raw]
    cols: dict[str, pl.Series] = {
        "u": pl.Series(users, dtype=pl.Int64 if int_ids else pl.Utf8),
        # an Enum, not a Categorical: its encoding does not depend on what the process saw before,
        # so the Parquet bytes (and their mutations) are the same in every run
        "i": pl.Series(items, dtype=pl.Utf8).cast(draw(st.sampled_from([pl.Utf8, pl.Enum(sorted(set(items)))]))),
        "t": {
            "int": pl.Series(stamps, dtype=pl.Int64),
            "float": pl.Series([float(s) for s in stamps], dtype=pl.Float64),
            "datetime": pl.from_epoch(pl.Series(stamps, dtype=pl.Int64), time_unit="s"),
            "text": pl.Series([str(s) for s in stamps], dtype=pl.Utf8),
        }[ts_kind],
        "r": pl.Series([float(r) for *_, r in raw], dtype=pl.Float32),
    }
    bad_kind = draw(st.sampled_from(["none", "none", "user", "item", "ts", "rating", "type"]))
    bad_at = draw(st.integers(0, len(raw) - 1))
    bad_row_no = None
    config_bad = False
    if bad_kind in ("user", "item") and not (bad_kind == "user" and int_ids):
        col = "u" if bad_kind == "user" else "i"
        values = cols[col].cast(pl.Utf8).to_list()
        values[bad_at] = draw(st.sampled_from([None, "", "  "]))
        cols[col] = pl.Series(values, dtype=pl.Utf8)
        bad_row_no = bad_at + 1
    elif bad_kind == "ts":
        values = cols["t"].to_list()
        if ts_kind == "text":
            values[bad_at] = draw(st.sampled_from([None, "soon", "1.5", "99999999999999999999"]))
        elif ts_kind == "float":
            values[bad_at] = draw(st.sampled_from([None, float("nan"), float("inf"), 1e30]))
        else:
            values[bad_at] = None
        cols["t"] = pl.Series(values, dtype=cols["t"].dtype)
        bad_row_no = bad_at + 1
    elif bad_kind == "rating":
        values = [str(x) for x in cols["r"].to_list()]
        values[bad_at] = draw(st.sampled_from(["x", "nan", "inf", "1e400"]))
        cols["r"] = pl.Series(values, dtype=pl.Utf8)
        bad_row_no = bad_at + 1
    elif bad_kind == "type":
        cols["u"] = draw(st.sampled_from([
            pl.Series([[u] for u in users]), pl.Series([{"a": 1} for _ in users]), pl.Series([b"\xff"] * len(users)),
            pl.Series([True] * len(users)),
        ]))  # fmt: skip
        config_bad = True
    files = {"events.parquet": _parquet(pl.DataFrame(cols))}
    options = {"paths": "events.parquet", "user_col": "u", "item_col": "i", "timestamp_col": "t", "rating_col": "r"}
    skip = draw(st.booleans())
    if config_bad:  # a column type is a file-level error: no rows to skip
        return Case(files, skip=skip, options=options)
    events = [(str(u), i, int(s), float(np.float32(r))) for u, i, s, (*_, r) in zip(users, items, stamps, raw, strict=True)]
    if bad_row_no is not None:
        del events[bad_at]
    return Case(
        files, skip=skip, options=options, events=events if bad_row_no is None or skip else None,
        bad=("events.parquet", 0) if bad_row_no else None, bad_row=bad_row_no,
    )  # fmt: skip


@st.composite
def tabular_hostile(draw) -> Case:
    case = draw(st.one_of(tabular_csv_structured(), tabular_parquet_structured()))
    name = draw(st.sampled_from(sorted(case.files)))
    files = dict(case.files)
    files[name] = draw(hostile(st.just(files[name])))
    options = dict(case.options or {})
    config_error = False
    if draw(st.integers(0, 5)) == 0:  # a hostile mapping: separators and encodings no file can have
        key, value = draw(st.sampled_from([("separator", ""), ("separator", "\n"), ("separator", '"'), ("encoding", "klingon"), ("list_separator", "")]))
        options[key] = value
        config_error = True
    return Case(files, skip=draw(st.booleans()), options=options, config_error=config_error)


#: every fuzz target: name -> (loader, strategy). The test module and the benchmark run these.
TARGETS: dict[str, tuple[str, st.SearchStrategy[Case]]] = {
    "ml-100k u.data": ("ml-100k", ml100k_structured()),
    "ml-100k u.item": ("ml-100k", ml100k_items_structured()),
    "ml-100k hostile": ("ml-100k", ml100k_hostile()),
    "ml-1m": ("ml-1m", ml1m_structured()),
    "ml-1m hostile": ("ml-1m", ml1m_hostile()),
    "ml csv": ("ml-csv", mlcsv_structured()),
    "ml csv hostile": ("ml-csv", mlcsv_hostile()),
    "amazon": ("amazon", amazon_structured()),
    "amazon hostile": ("amazon", amazon_hostile()),
    "p5": ("p5", p5_structured()),
    "p5 hostile": ("p5", p5_hostile()),
    "tabular csv": ("tabular", tabular_csv_structured()),
    "tabular parquet": ("tabular", tabular_parquet_structured()),
    "tabular hostile": ("tabular", tabular_hostile()),
}
