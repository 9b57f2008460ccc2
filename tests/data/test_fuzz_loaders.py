"""Property-based fuzzing of every data loader (issue 12, part 5: hostile input).

Each target of :mod:`tests.data.loader_fuzz` runs ``MAX_EXAMPLES[target]`` drawn cases (derandomized,
so CI sees the same cases every run) plus the ``@example`` regressions below, one per bug the
fuzzing found: :data:`FUZZ_CASES` in all, :data:`CASES_TRIED` counts what actually ran
(``benchmarks/trust_fuzz.py`` reports the same strategies outside pytest). The property is
:func:`tests.data.loader_fuzz.check`.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import polars as pl
from hypothesis import HealthCheck, example, given, settings

from tests.data.loader_fuzz import ML100K_ITEM, TARGETS, Case, _parquet, check

#: drawn examples per target (the regression examples come on top)
MAX_EXAMPLES: dict[str, int] = {
    "ml-100k u.data": 80, "ml-100k u.item": 40, "ml-100k hostile": 80, "ml-1m": 60, "ml-1m hostile": 60,
    "ml csv": 80, "ml csv hostile": 80, "amazon": 80, "amazon hostile": 80, "p5": 60, "p5 hostile": 60,
    "tabular csv": 80, "tabular parquet": 60, "tabular hostile": 80,
}  # fmt: skip
#: cases run per target in this session (drawn + regression examples)
CASES_TRIED: Counter[str] = Counter()


def fuzz_settings(target: str) -> settings:
    return settings(
        max_examples=MAX_EXAMPLES[target], deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )  # fmt: skip


def _run(target: str, case: Case) -> None:
    CASES_TRIED[target] += 1
    check(TARGETS[target][0], case)


ITEM = (ML100K_ITEM + "\n").encode("latin-1")
R = lambda **k: json.dumps({"reviewerID": "A", "asin": "B", "overall": 5.0, "unixReviewTime": 100, **k})  # noqa: E731
P5_HEADER = b"item_id:token\ttitle:token\n"


# Regression examples: each is an input that made a loader raise something other than DataError,
# silently drop or corrupt a row, or name the wrong line, before the fix in src/personarec/data.
@fuzz_settings("ml-100k hostile")
@given(case=TARGETS["ml-100k hostile"][1])
@example(case=Case({"u.data": b"\xff\xfe\x00\x01\t\x80\n", "u.item": ITEM}))  # short first line: ShapeError
@example(case=Case({"u.data": b"   \n\n", "u.item": ITEM}))  # whitespace first line: ShapeError
@example(case=Case({"u.data": b"1\t1\t5\t100\n", "u.item": b"1|A\n"}))  # short u.item line: ShapeError
@example(case=Case({"u.data": b"1\t1\t5\t100\n", "u.item": b"\xef\xbb\xbf" + ITEM}))  # latin-1 BOM became the id "ï»¿1"
def test_ml100k_hostile(case: Case) -> None:
    _run("ml-100k hostile", case)


@fuzz_settings("ml-100k u.data")
@given(case=TARGETS["ml-100k u.data"][1])
@example(case=Case({"u.data": b"1\t1\tnan\t100\n", "u.item": ITEM}, bad=("u.data", 1)))  # NaN rating accepted
@example(case=Case({"u.data": b"1\t1\t1e400\t100\n", "u.item": ITEM}, bad=("u.data", 1)))  # inf rating accepted
@example(case=Case({"u.data": b" \t1\t5\t100\n", "u.item": ITEM}, bad=("u.data", 1)))  # blank user id accepted
@example(case=Case({"u.data": b"1\t\t5\t100\n", "u.item": ITEM}, bad=("u.data", 1)))  # empty item id: a null item_id event
def test_ml100k_ratings(case: Case) -> None:
    _run("ml-100k u.data", case)


@fuzz_settings("ml-100k u.item")
@given(case=TARGETS["ml-100k u.item"][1])
def test_ml100k_items(case: Case) -> None:
    _run("ml-100k u.item", case)


@fuzz_settings("ml-1m")
@given(case=TARGETS["ml-1m"][1])
@example(case=Case({"ratings.dat": b"1::1\n", "movies.dat": b"1::A::Drama\n"}, bad=("ratings.dat", 1)))  # ShapeError
@example(case=Case({"ratings.dat": b"1::::5::100\n", "movies.dat": b"1::A::Drama\n"}, bad=("ratings.dat", 1)))  # null item_id event
@example(case=Case({"ratings.dat": b"\xef\xbb\xbf1::1::5::100\n", "movies.dat": b"1::A::Drama\n"}, events=[("1", "1", 100, 5.0)]))  # id "ï»¿1"
def test_ml1m(case: Case) -> None:
    _run("ml-1m", case)


@fuzz_settings("ml-1m hostile")
@given(case=TARGETS["ml-1m hostile"][1])
@example(case=Case({"ratings.dat": b"1::1::5::100\n", "movies.dat": b"1\n"}))  # ShapeError
def test_ml1m_hostile(case: Case) -> None:
    _run("ml-1m hostile", case)


HEADER = b"userId,movieId,rating,timestamp\n"
MOVIES = b"movieId,title,genres\n1,A,Drama\n"


@fuzz_settings("ml csv")
@given(case=TARGETS["ml csv"][1])
@example(case=Case({"ratings.csv": HEADER + b'1,"1\n2",5,100\n3,1,5,x\n', "movies.csv": MOVIES}, bad=("ratings.csv", 4)))  # said line 3
@example(case=Case({"ratings.csv": HEADER + b'1,"1,5,100\n', "movies.csv": MOVIES}, bad=("ratings.csv", 2)))  # no line number
@example(case=Case({"ratings.csv": HEADER + b'1,a"b,5,100\n', "movies.csv": MOVIES}, bad=("ratings.csv", 2)))  # no line number
@example(case=Case({"ratings.csv": HEADER + b'1,"a,b",5,100\n2,1,5,100,9\n', "movies.csv": MOVIES}, bad=("ratings.csv", 3)))  # quote-unaware count
@example(case=Case({"ratings.csv": HEADER + b"1,,5,100\n", "movies.csv": MOVIES}, bad=("ratings.csv", 2)))  # null item_id event
@example(case=Case({"ratings.csv": HEADER + b",,,\n", "movies.csv": MOVIES}, events=[]))  # a row of separators only is a blank line
@example(case=Case({"ratings.csv": HEADER + b"1,1,5,100,\n2,1,5,100,", "movies.csv": MOVIES}, events=[("1", "1", 100, 5.0), ("2", "1", 100, 5.0)]))
# ^ a trailing separator: "wrong number of fields" on line 2 but accepted on an unterminated last line
def test_ml_csv(case: Case) -> None:
    _run("ml csv", case)


@fuzz_settings("ml csv hostile")
@given(case=TARGETS["ml csv hostile"][1])
@example(case=Case({"ratings.csv": HEADER + b"1,1,5,100\n", "movies.csv": MOVIES, "tags.csv": b"userId,movieId,tag,timestamp\n1,1,\"\n"}))
def test_ml_csv_hostile(case: Case) -> None:
    _run("ml csv hostile", case)


@fuzz_settings("amazon")
@given(case=TARGETS["amazon"][1])
@example(case=Case({"r.json": R(unixReviewTime=10**30).encode()}, bad=("r.json", 1)))  # TypeError from polars
@example(case=Case({"r.json": b"[" * 100000}, bad=("r.json", 1)))  # RecursionError
@example(case=Case({"r.json": R(asin=["x"]).encode()}, bad=("r.json", 1)))  # list became the id '["x"]'
@example(case=Case({"r.json": R(reviewerID={"a": 1}).encode()}, bad=("r.json", 1)))  # object became an id
@example(case=Case({"r.json": R(asin=True).encode()}, bad=("r.json", 1)))  # true became the id "true"
@example(case=Case({"r.json": b'{"reviewerID":"A","asin":"B","overall":NaN,"unixReviewTime":1}'}, bad=("r.json", 1)))  # NaN rating
@example(case=Case({"r.json": R(asin="  ").encode()}, bad=("r.json", 1)))  # blank id
@example(case=Case({"r.json": b"\xef\xbb\xbf" + R().encode()}, events=[("A", "B", 100, 5.0)]))  # BOM: "bad JSON line"
@example(case=Case({"r.csv": b"B,A,5\n"}, bad=("r.csv", 1)))  # ShapeError
@example(case=Case({"r.json": R().encode(), "meta_r.json": b'{"asin": "B", "category": 5}\n'}, events=[("A", "B", 100, 5.0)]))  # TypeError
@example(case=Case({"r.json": R().encode(), "meta_r.json": b"{[1]: 2}\n"}, bad=("meta_r.json", 1)))  # TypeError from literal_eval
@example(case=Case({"r.json": R(asin="\ud800").encode()}, bad=("r.json", 1)))  # lone surrogate: UnicodeEncodeError from polars
@example(case=Case({"r.json": R().encode(), "meta_r.json": b'{"asin": "B", "title": "\\udc00x"}\n'}, events=[("A", "B", 100, 5.0)]))  # same, in a title
def test_amazon(case: Case) -> None:
    _run("amazon", case)


@fuzz_settings("amazon hostile")
@given(case=TARGETS["amazon hostile"][1])
@example(case=Case({"r.json.gz": b"\x1f\x8b\x08\x00garbage"}))  # BadGzipFile
@example(case=Case({"r.json.gz": gzip.compress(R().encode())[:-6]}))  # EOFError: truncated gzip stream
def test_amazon_hostile(case: Case) -> None:
    _run("amazon hostile", case)


@fuzz_settings("p5")
@given(case=TARGETS["p5"][1])
@example(case=Case({"user_sequence.txt": b"\xef\xbb\xbfu1 i1\n"}, events=[("u1", "i1", 0, None)]))  # user id "\ufeffu1"
@example(case=Case({"user_sequence.txt": b"u1 i1\n", "a.item": P5_HEADER + b"i1\tT\tX\n"}, bad=("a.item", 2)))  # ComputeError
@example(case=Case({"user_sequence.txt": b"u1 i1\n", "a.item": P5_HEADER + b'i1\t"T\n'}, bad=("a.item", 2)))  # ComputeError
@example(case=Case({"user_sequence.txt": b"u1 i1\n", "a.item": b""}))  # NoDataError
@example(case=Case({"user_sequence.txt": b"u1 i1\n", "a.item": b"item_id:token\titem_id:float\ni1\t1\n"}))  # DuplicateError
@example(case=Case({"user_sequence.txt": b"u1 i1\n", "a.item": b"item_id:token\tcategories:token_seq\ni1\t'a', {[1]: 2}\n"}, bad=("a.item", 2)))
@example(case=Case({"user_sequence.txt": b"u1 i1\n", "a.item": P5_HEADER + b'i1\tT\nRx"y\tz'}, bad=("a.item", 3)))  # polars accepts a stray quote on an unterminated last line
@example(case=Case({"user_sequence.txt": b"u1\ti1  i2\n"}, events=[("u1", "i1", 0, None), ("u1", "i2", 1, None)]))  # a tab: "user line has no items"
@example(case=Case({"user_sequence.txt": b"u0 i0\n\xef\xbb\xbfu1 i1\n"}, events=[("u0", "i0", 0, None), ("u1", "i1", 0, None)]))  # user "\ufeffu1"
def test_p5(case: Case) -> None:
    _run("p5", case)


@fuzz_settings("p5 hostile")
@given(case=TARGETS["p5 hostile"][1])
def test_p5_hostile(case: Case) -> None:
    _run("p5 hostile", case)


TAB = {"paths": "e.csv", "user_col": "u", "item_col": "i", "timestamp_col": "t"}
TABQ = dict(TAB, paths="e.parquet")


@fuzz_settings("tabular csv")
@given(case=TARGETS["tabular csv"][1])
@example(case=Case({"e.csv": b"u,i,t\n\xff,x,1\n"}, options=dict(TAB, encoding="ascii"), bad=("e.csv", 2)))  # UnicodeDecodeError
@example(case=Case({"e.csv": b"u,i,t\na,x,2024-13-45\n"}, options=dict(TAB, timestamp_format="%Y-%m-%d"), skip=True, events=[]))  # raised under skip
@example(case=Case({"e.csv": "u§i§t\na§x§1\n".encode()}, options=dict(TAB, separator="§"), events=[("a", "x", 1, None)]))  # ValueError: 2-byte separator
@example(case=Case({"e.csv": b"u,i,t\n\xef\xbb\xbf\xef\xbb\xbfa,x,1\n"}, options=TAB, events=[("a", "x", 1, None)]))  # BOMs of concatenated files: id "\ufeffa"
@example(case=Case({"e.csv": "u,i,t\n".encode("utf-16") + "a,x,1\n".encode("utf-16")}, options=dict(TAB, encoding="utf-16"), events=[("a", "x", 1, None)]))
def test_tabular_csv(case: Case) -> None:
    _run("tabular csv", case)


@fuzz_settings("tabular parquet")
@given(case=TARGETS["tabular parquet"][1])
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": [["a"]], "i": ["x"], "t": [1]}))}, options=TABQ))  # InvalidOperationError
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": [b"\xff"], "i": ["x"], "t": [1]}))}, options=TABQ))  # ComputeError
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": ["a"], "i": ["x"], "t": [True]}))}, options=TABQ))  # SchemaError
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": ["a"], "i": ["x"], "t": pl.Series([2**64 - 1], dtype=pl.UInt64)}))}, options=TABQ, bad=("e.parquet", 0), bad_row=1))
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": ["a"], "i": ["x"], "t": pl.Series([None], dtype=pl.Int64)}))}, options=TABQ, bad=("e.parquet", 0), bad_row=1))  # null timestamp kept
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": ["a"], "i": ["x"], "t": [1], "r": ["x"]}))}, options=dict(TABQ, rating_col="r"), bad=("e.parquet", 0), bad_row=1))
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": [" "], "i": ["x"], "t": [1]}))}, options=TABQ, bad=("e.parquet", 0), bad_row=1))  # blank id kept
@example(case=Case({"e.parquet": _parquet(pl.DataFrame({"u": ["a"], "i": ["x"], "t": [1]})), "c.parquet": _parquet(pl.DataFrame({"item_id": ["x"], "g": [[[1]]]}))},
                   options=dict(TABQ, catalogue="c.parquet", title_col=None, text_cols={"genres": "g"})))  # InvalidOperationError
def test_tabular_parquet(case: Case) -> None:
    _run("tabular parquet", case)


@fuzz_settings("tabular hostile")
@given(case=TARGETS["tabular hostile"][1])
@example(case=Case({"e.parquet": b"PAR1garbagePAR1"}, options=TABQ))  # ComputeError
@example(case=Case({"e.parquet": b""}, options=TABQ))  # ComputeError
@example(case=Case({"e.csv": b"u,i,t\na,x,1\n"}, options=dict(TAB, separator=""), config_error=True))  # ValueError from polars
@example(case=Case({"e.csv": b"u,i,t\na,x,1\n"}, options=dict(TAB, encoding="nope"), config_error=True))  # LookupError
def test_tabular_hostile(case: Case) -> None:
    _run("tabular hostile", case)


#: regression examples per test (one per bug found), run on top of the drawn cases
REGRESSION_EXAMPLES: dict[str, int] = {
    name: len(fn.hypothesis_explicit_examples)
    for name, fn in sorted(globals().items())
    if name.startswith("test_") and hasattr(fn, "hypothesis_explicit_examples")
}
#: what one run of this file tries: drawn cases plus regression examples (the "fuzz cases tried" in CI)
FUZZ_CASES = sum(MAX_EXAMPLES.values()) + sum(REGRESSION_EXAMPLES.values())
