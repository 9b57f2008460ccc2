"""``personarec data inspect FILE``: what is in an unknown event or item file, and a
``[data.tabular]`` mapping for it.

Reads only the head of the file (CSV/TSV, Parquet or JSON lines, gzip allowed), describes each
column (type, examples, share of nulls) and matches the column names against the names that
public datasets use (``userId``, ``reviewerID``, ``asin``, ``unixReviewTime``, ``overall`` ...) to
suggest the mapping as TOML. A role it cannot match is listed, so a new dataset's config starts
from the file rather than from a guess.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from personarec.data.parsing import show_value
from personarec.errors import DataError

#: role -> column names that public datasets use for it, best first (compared lower-case, without
#: ``_``, ``-``, spaces). ``parent_asin`` before ``asin``: Amazon 2023 metadata is keyed by it.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userid", "user", "reviewerid", "reviewer_id", "customer_id", "customerid", "customer",
             "uid", "visitor_id", "member_id", "account_id", "client_id", "buyer_id"),
    "item": ("item_id", "itemid", "item", "parent_asin", "asin", "movieid", "movie_id", "product_id", "productid",
             "sku", "iid", "article_id", "book_id", "isbn", "track_id", "song_id", "business_id", "recipe_id",
             "game_id", "anime_id", "video_id", "content_id"),
    "timestamp": ("timestamp", "unixreviewtime", "unix_time", "unixtime", "time", "ts", "event_time", "datetime",
                  "date", "created_at", "review_date", "reviewtime"),
    "rating": ("rating", "overall", "stars", "star_rating", "score", "review_score", "rating_value", "ratings"),
    "title": ("title", "name", "product_name", "item_name", "product_title", "movie_title", "book_title"),
    "category": ("category", "categories", "main_category", "main_cat", "category_name", "department", "dept"),
    "genres": ("genres", "genre"),
    "tags": ("tags", "tag", "keywords", "labels"),
    "brand": ("brand", "manufacturer", "maker", "store", "author", "publisher", "studio"),
    "description": ("description", "desc", "overview", "plot", "summary", "about", "features", "details"),
}  # fmt: skip
EVENT_ROLES = ("user", "item", "timestamp", "rating")
TEXT_ROLES = ("title", "category", "genres", "tags", "brand", "description")
#: roles worth a warning when missing; the other text fields are often simply absent
CORE_ROLES = ("user", "item", "timestamp", "rating", "title")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d", "%m %d, %Y",
                 "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y")  # fmt: skip
_HEAD_BYTES = 4 << 20


def _norm(name: str) -> str:
    """``User_ID`` / ``userId`` / ``user_id:token`` (RecBole's typed headers) -> ``userid``."""
    return re.sub(r"[\s_\-]", "", name.split(":", 1)[0].lower())


@dataclass
class Head:
    """The first rows of a file and how they were read."""

    path: Path
    frame: pl.DataFrame
    format: str  # "csv" | "parquet" | "jsonl"
    separator: str | None = None
    has_header: bool = True


def _base_suffix(path: Path) -> str:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    return Path(name).suffix


def _head_bytes(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read(_HEAD_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_HEAD_BYTES)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read ({exc})", path=str(path)) from None


def _complete_lines(data: bytes) -> list[str]:
    text = data.decode("utf8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if len(data) >= _HEAD_BYTES and lines:
        lines.pop()  # cut mid-line
    return lines


def _sniff_separator(lines: list[str], suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".dat" and lines and "::" in lines[0]:
        return "::"
    sample = [ln for ln in lines[:20] if ln.strip()]
    best, best_score = ",", 0
    for sep in ("\t", ",", ";", "|", "::"):
        counts = [ln.count(sep) for ln in sample]
        if counts and min(counts) > 0 and len(set(counts)) == 1 and counts[0] > best_score:
            best, best_score = sep, counts[0]
    if best_score == 0:  # ragged (quoted commas): the commonest separator on the first line
        first = sample[0] if sample else ""
        best = max(("\t", ",", ";", "|"), key=first.count)
    return best


def _looks_like_header(lines: list[str], separator: str) -> bool:
    """A header has no numeric field where the next rows have numbers (Amazon's ratings CSVs have none)."""
    if len(lines) < 2:
        return True
    if len(separator) == 1:
        try:
            return csv.Sniffer().has_header("\n".join(lines[:50]))
        except csv.Error:
            pass
    first = lines[0].split(separator)

    def numeric(x: str) -> bool:
        try:
            float(x)
        except ValueError:
            return False
        return True

    return not any(numeric(f.strip()) for f in first)


def _parse_json_line(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        obj = ast.literal_eval(line)  # the Amazon 2014 metadata is Python literals
    if not isinstance(obj, dict):
        raise TypeError("not an object")
    return obj


def read_head(path: str | Path, rows: int = 1000, separator: str | None = None) -> Head:
    """The first ``rows`` rows of a CSV/TSV, Parquet or JSON-lines file (``.gz`` allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    suffix = _base_suffix(path)
    if suffix in (".parquet", ".pq"):
        try:
            frame = pl.scan_parquet(path).head(rows).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({str(exc).splitlines()[0][:120]})", path=str(path)) from None
        return Head(path, frame, "parquet")
    lines = _complete_lines(_head_bytes(path))
    if not any(ln.strip() for ln in lines):
        raise DataError("file is empty", path=str(path))
    if suffix in (".json", ".jsonl", ".ndjson") or (separator is None and lines[0].lstrip().startswith("{")):
        records = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(_parse_json_line(line))
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                raise DataError(f"not a JSON object per line ({type(exc).__name__})", path=str(path), line=lineno) from None
            if len(records) >= rows:
                break
        try:
            frame = pl.DataFrame(records, infer_schema_length=None)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            frame = pl.DataFrame([{k: show_value(v, 200) for k, v in r.items()} for r in records])
        return Head(path, frame, "jsonl")
    sep = separator or _sniff_separator(lines, suffix)
    header = _looks_like_header(lines, sep)
    text = "\n".join(lines[: rows + (1 if header else 0)])
    source: str | bytes = text
    if len(sep) > 1:  # polars reads one-byte separators; '::' becomes a control byte
        source = text.replace(sep, "\x1f")
    try:
        frame = pl.read_csv(
            io.BytesIO(source.encode() if isinstance(source, str) else source),
            separator="\x1f" if len(sep) > 1 else sep,
            has_header=header,
            quote_char='"' if sep == "," else None,
            infer_schema_length=rows,
            truncate_ragged_lines=True,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse as delimited text ({str(exc).splitlines()[0][:120]})", path=str(path)) from None
    return Head(path, frame, "csv", sep, header)


@dataclass
class ColumnInfo:
    name: str
    dtype: str
    examples: list[str]
    null_share: float


def describe_columns(frame: pl.DataFrame, n_examples: int = 3) -> list[ColumnInfo]:
    """Per column: its type, the first distinct non-null values, and the share of nulls (or blanks)."""
    out = []
    for name in frame.columns:
        col = frame[name]
        nulls = col.null_count()
        if col.dtype == pl.String:
            nulls += int((col.str.strip_chars() == "").sum())
        values: list[str] = []
        for v in col.drop_nulls().head(200).to_list():
            shown = show_value(v, 40)
            if shown not in values:
                values.append(shown)
            if len(values) >= n_examples:
                break
        out.append(ColumnInfo(name, str(col.dtype), values, nulls / frame.height if frame.height else 0.0))
    return out


@dataclass
class Suggestion:
    """Role -> column, the roles left unmapped and notes for the TOML snippet."""

    roles: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)  # of CORE_ROLES
    absent: list[str] = field(default_factory=list)  # optional text fields without a column
    notes: list[str] = field(default_factory=list)
    timestamp_format: str | None = None


def _by_name(columns: list[str], role: str, taken: set[str]) -> str | None:
    by_norm = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
    for candidate in ROLE_NAMES[role]:
        c = by_norm.get(_norm(candidate))
        if c is not None and c not in taken:
            return c
    return None


def _is_epoch(col: pl.Series) -> bool:
    if not col.dtype.is_numeric() or col.dtype == pl.Boolean:
        return False
    v = col.drop_nulls()
    return len(v) > 0 and bool(((v >= 1e8) & (v < 1e13)).all())


def _is_rating(col: pl.Series) -> bool:
    if not col.dtype.is_numeric() or col.dtype == pl.Boolean:
        return False
    v = col.drop_nulls()
    return len(v) > 0 and bool(((v >= 0) & (v <= 10)).all()) and v.n_unique() <= 21


def _time_format(col: pl.Series) -> str | None:
    values = [str(v).strip() for v in col.drop_nulls().head(50).to_list() if str(v).strip()]
    for fmt in _TIME_FORMATS:
        try:
            for v in values:
                datetime.strptime(v, fmt)
        except ValueError:
            continue
        return fmt if values else None
    return None


def suggest_mapping(frame: pl.DataFrame) -> Suggestion:
    """Match column names to the loader's roles; timestamps and ratings also by their values."""
    cols = frame.columns
    s = Suggestion()
    taken: set[str] = set()
    for role in (*EVENT_ROLES, *TEXT_ROLES):
        c = _by_name(cols, role, taken)
        if c is None and role == "timestamp":
            # the rightmost: an id column of digits (ASINs such as 0205616461) can look like seconds too
            c = next((x for x in reversed(cols) if x not in taken and _is_epoch(frame[x])), None)
            if c is not None:
                s.notes.append(f"timestamp: {c!r} chosen by its values (Unix-time-like integers)")
        if c is None and role == "rating":
            c = next((x for x in cols if x not in taken and x not in s.roles.values() and _is_rating(frame[x])
                      and _norm(x) not in {_norm(n) for n in ROLE_NAMES["user"] + ROLE_NAMES["item"]}), None)  # fmt: skip
            if c is not None:
                s.notes.append(f"rating: {c!r} chosen by its values (few distinct numbers in 0..10)")
        if c is None:
            (s.unmapped if role in CORE_ROLES else s.absent).append(role)
            continue
        s.roles[role] = c
        taken.add(c)
    ts = s.roles.get("timestamp")
    if ts is not None:
        col = frame[ts]
        if col.dtype == pl.String:
            s.timestamp_format = _time_format(col)
            if s.timestamp_format is None:
                s.notes.append(f"timestamp: {ts!r} holds text in no format tried here; set timestamp_format (strptime)")
        elif col.dtype.is_numeric() and col.drop_nulls().len() and float(col.drop_nulls().max()) >= 1e11:
            s.notes.append(f"timestamp: {ts!r} looks like milliseconds; the loader expects seconds (divide by 1000)")
    for role in ("category", "genres", "tags", "brand", "description"):
        c = s.roles.get(role)
        if c is not None and isinstance(frame.schema[c], pl.List) and isinstance(frame.schema[c].inner, pl.List):
            s.notes.append(f"{role}: {c!r} holds nested lists (category paths); flatten it before loading")
    return s


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def render_toml(head: Head, suggestion: Suggestion) -> str:
    """The suggestion as a ``[data]`` / ``[data.tabular]`` snippet, ready to paste into a config."""
    r = suggestion.roles
    has_events = "user" in r and "item" in r
    text_cols = {role: r[role] for role in ("genres", "tags", "category", "brand", "description") if role in r}
    has_items = "item" in r and ("title" in r or bool(text_cols))
    lines = ["[data]", 'dataset = "tabular"', f"data_dir = {_toml_str(str(head.path.parent))}", "", "[data.tabular]"]
    if head.format == "jsonl":
        lines.insert(0, "# the tabular loader reads CSV or Parquet: convert this JSON-lines file first, e.g.")
        lines.insert(1, f"# polars.read_ndjson({_toml_str(head.path.name)}).write_parquet(...); Amazon review / meta "
                        'JSON files load as dataset = "amazon"')  # fmt: skip
    name = head.path.name if head.format != "jsonl" else head.path.with_suffix(".parquet").name
    if has_events or not has_items:
        lines.append(f"paths = [{_toml_str(name)}]")
    else:
        lines.append('# paths = ["..."]  # an item file: name the event file(s) here (inspect them too)')
    if head.format == "csv":
        if head.separator not in (None, ","):
            lines.append(f"separator = {_toml_str(head.separator)}")
        if not head.has_header:
            lines.insert(0, "# no header row found: the tabular loader reads a header-less file as user, item,")
            lines.insert(1, "# timestamp, rating in that order; add a header line naming the columns and inspect again")
    if has_events or not has_items:
        for role, key in (("user", "user_col"), ("item", "item_col")):
            lines.append(f"{key} = {_toml_str(r[role])}" if role in r else f"# {key} = ?  # not found: name the column")
        if "timestamp" in r:
            lines.append(f"timestamp_col = {_toml_str(r['timestamp'])}")
            if suggestion.timestamp_format:
                lines.append(f"timestamp_format = {_toml_str(suggestion.timestamp_format)}")
        else:
            lines.append('timestamp_col = ""  # none found: the row order is taken as the time order')
        if "rating" in r:
            lines.append(f"rating_col = {_toml_str(r['rating'])}")
    if has_items:
        lines.append(f"catalogue = {_toml_str(name)}  # the item text may also live in a separate item file")
        lines.append(f"catalogue_item_col = {_toml_str(r['item'])}")
        lines.append(f"title_col = {_toml_str(r['title'])}" if "title" in r else 'title_col = ""  # none found: titles are the ids')
        if text_cols:
            inner = ", ".join(f"{k} = {_toml_str(v)}" for k, v in text_cols.items())
            lines.append(f"text_cols = {{ {inner} }}")
    lines.append('# domain = "product"  # what the items are, in prompts ("book", "office product")')
    if suggestion.unmapped:
        lines.append(f"# could not map: {', '.join(suggestion.unmapped)}")
    if suggestion.absent:
        lines.append(f"# no column for the optional text fields: {', '.join(suggestion.absent)}")
    lines.extend(f"# note: {n}" for n in suggestion.notes)
    return "\n".join(lines) + "\n"
