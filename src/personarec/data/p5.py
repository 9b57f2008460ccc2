"""The P5 Amazon splits (Beauty / Sports / Toys, 2014 5-core) as ``user_sequence.txt``.

One line per user: the reviewerID, then the item ASINs in chronological order, space-separated.
The files carry no timestamps, so the timestamp of an event is its position in the user's line
(0, 1, 2, ...). Line ``k`` is P5 user ``k``. Item text comes from a RecBole atomic item file next
to it when there is one (``*.item``: ``item_id:token title:token ... categories:token_seq
brand:token``, keyed by ASIN, e.g. ``Amazon_Beauty.item``); without it an item's title is its ASIN.
"""

from __future__ import annotations

import ast
import html
from pathlib import Path

import polars as pl

from personarec.data.parsing import (
    ReadReport,
    file_sha256,
    iter_lines,
    read_bytes,
    read_delimited,
    show_value,
    unicode_text,
)
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import DataError

SEQUENCE_FILE = "user_sequence.txt"
#: what the items of each P5 category are, for prompts ("a beauty product customer")
DOMAINS = {"beauty": "beauty product", "sports": "sports and outdoors product", "toys": "toy and game product"}


def p5_domain(name: str) -> str | None:
    """``p5-beauty`` -> "beauty product"; None for a name without a known category."""
    return DOMAINS.get(name.removeprefix("p5-"))


def read_user_sequences(
    path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> pl.DataFrame:
    """Explode the per-user lines into (user_id, item_id, timestamp=position) events.

    A line with a user id but no items is malformed (it names the file and line); blank lines
    are ignored. One Python string per *user line*, never per event.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    lines = [line for _, line in iter_lines(read_bytes(path))]  # "\n"-separated, BOM dropped
    frame = pl.DataFrame({"line": pl.Series(lines, dtype=pl.Utf8)}).with_row_index("lineno", offset=1)
    frame = frame.with_columns(pl.col("line").str.replace_all("\ufeff", " ", literal=True).str.extract_all(r"\S+"))
    # ^ ids never hold whitespace, nor a BOM that concatenated files leave at a line start
    frame = frame.filter(pl.col("line").list.len() > 0)
    bad = frame.filter(pl.col("line").list.len() < 2)["lineno"].to_list()
    if bad:
        if not skip_bad_rows:
            raise DataError(
                "user line has no items (expected `user_id item_1 item_2 ...`; use --skip-bad-rows to skip it)",
                path=str(path),
                line=int(bad[0]),
            )
        if report is not None:
            report.add(path, [int(b) for b in bad])
        frame = frame.filter(pl.col("line").list.len() >= 2)
    return (
        frame.select(
            pl.col("line").list.first().alias("user_id"),
            pl.col("line").list.slice(1).alias("item_id"),
        )
        .with_columns(pl.int_ranges(0, pl.col("item_id").list.len(), dtype=pl.Int64).alias("timestamp"))
        .explode("item_id", "timestamp")
    )


def _token_seq(value: str | None) -> list[str]:
    """RecBole ``token_seq`` of quoted names (``'Beauty', 'Makeup', "Men's"``) -> the names."""
    if not value or not value.strip():
        return []
    text = value.strip()
    if text[0] in "'\"":
        parsed = ast.literal_eval("[" + text + "]")
        names = [x for x in parsed if isinstance(x, str)]
    else:  # RecBole's plain form: space-separated tokens
        names = text.split(" ")
    out: list[str] = []
    for name in names:
        name = unicode_text(html.unescape(name)).strip()
        if name and name not in out:
            out.append(name)
    return out


def read_recbole_items(
    path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> pl.DataFrame:
    """A RecBole atomic ``.item`` file -> catalogue columns (title, genres = category path, category,
    brand). Typed headers (``title:token``) are read by name; HTML entities are decoded. Fields are
    tab-separated and may be quoted (quoted titles may hold tabs or newlines)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=str(path))
    try:
        header = pl.read_csv(
            path, separator="\t", quote_char='"', n_rows=0, infer_schema=False, encoding="utf8-lossy"
        ).columns
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse the header ({str(exc).splitlines()[0][:120]})", path=str(path), line=1) from None
    names = [c.split(":", 1)[0] for c in header]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"duplicate column(s) {twice}; columns found: {header}", path=str(path), line=1)
    if "item_id" not in names:
        raise DataError(f"no item_id column; columns found: {header}", path=str(path), line=1)
    frame = read_delimited(
        path, {c: pl.Utf8 for c in header}, separator="\t", quote='"', required=[header[names.index("item_id")]],
        skip_bad_rows=skip_bad_rows, report=report, with_line=True,
    ).rename(dict(zip(header, names, strict=True)))  # fmt: skip
    cats: list[list[str]] = []
    bad: list[int] = []
    values = frame["categories"].to_list() if "categories" in frame.columns else [None] * frame.height
    for lineno, value in zip(frame["_line"].to_list(), values, strict=True):
        try:
            cats.append(_token_seq(value))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
            if not skip_bad_rows:
                why = f"{type(exc).__name__}: {show_value(exc, 120)}"
                raise DataError(
                    f"bad categories field ({why}); use --skip-bad-rows to skip it", path=str(path), line=lineno
                ) from None
            bad.append(lineno)
            cats.append([])
    if bad:
        if report is not None:
            report.add(path, bad)
        keep = ~frame["_line"].is_in(bad)
        frame = frame.filter(keep)
        cats = [c for c, k in zip(cats, keep.to_list(), strict=True) if k]

    def text(col: str) -> pl.Series:
        if col not in frame.columns:
            return pl.Series(col, [None] * frame.height, dtype=pl.Utf8)
        return pl.Series(col, [html.unescape(v).strip() or None if v else None for v in frame[col].to_list()], dtype=pl.Utf8)

    return pl.DataFrame({
        "item_id": frame["item_id"],
        "title": text("title"),
        "genres": pl.Series("genres", cats, dtype=pl.List(pl.Utf8)),
        "category": pl.Series("category", [" > ".join(c) if c else None for c in cats], dtype=pl.Utf8),
        "brand": text("brand"),
    }).unique(subset="item_id", keep="first", maintain_order=True)  # fmt: skip


def load_p5(directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None, name: str = "p5") -> Dataset:
    directory = Path(directory)
    path = directory / SEQUENCE_FILE
    if not path.exists():
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise DataError(f"missing file {path}; files found in {directory}: {found}")
    events = read_user_sequences(path, skip_bad_rows=skip_bad_rows, report=report)
    catalogue = events.select("item_id").unique(maintain_order=True)  # title defaults to the ASIN
    checksums = {path.name: file_sha256(path)}
    item_files = sorted(directory.glob("*.item"))
    if len(item_files) > 1:
        raise DataError(f"several RecBole item files in {directory}: {[p.name for p in item_files]}; keep one")
    if item_files:
        items = read_recbole_items(item_files[0], skip_bad_rows=skip_bad_rows, report=report)
        catalogue = catalogue.join(items, on="item_id", how="left", maintain_order="left")
        checksums[item_files[0].name] = file_sha256(item_files[0])
    return Dataset(
        name=name,
        interactions=Interactions.from_frame(events),
        catalogue=Catalogue.from_frame(catalogue),
        checksums=checksums,
        source=str(directory),
        domain=p5_domain(name),
    )
