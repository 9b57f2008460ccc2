"""Amazon review data (McAuley Lab), 2018 release and the 2014 files it grew from.

Interactions come from one of:

* a ratings CSV without header, ``item,user,rating,timestamp`` (the "ratings only" and 5-core
  CSV files, e.g. ``Beauty.csv``);
* a JSON-lines review file (``Beauty_5.json`` / ``.json.gz``) with ``reviewerID``, ``asin``,
  ``overall``, ``unixReviewTime``.

The item catalogue comes from the metadata JSON-lines file (``meta_Beauty.json[.gz]``) with
``asin``, ``title``, ``category`` (list), ``brand``, ``description`` (list or string). The 2014
metadata is written as Python literals rather than JSON; both are accepted. Without metadata
the title is the ASIN.
"""

from __future__ import annotations

import ast
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from personarec.data.parsing import (
    ReadReport,
    file_sha256,
    is_unicode,
    iter_lines,
    read_delimited,
    read_json_lines,
    show_value,
    unicode_text,
)
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import DataError

REVIEW_FIELDS = {"reviewerID": pl.Utf8, "asin": pl.Utf8, "overall": pl.Float32, "unixReviewTime": pl.Int64}
_CSV_SUFFIXES = (".csv", ".csv.gz")
_JSON_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return any(path.name.endswith(s) for s in suffixes)


def find_files(directory: str | Path) -> tuple[Path, Path | None]:
    """The interactions file and the (optional) metadata file in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"not a directory: {directory}")
    files = sorted(p for p in directory.iterdir() if p.is_file())
    meta = [p for p in files if p.name.startswith("meta_") and _has_suffix(p, _JSON_SUFFIXES)]
    events = [
        p for p in files if not p.name.startswith("meta_") and _has_suffix(p, _CSV_SUFFIXES + _JSON_SUFFIXES)
    ]
    if len(events) != 1:
        raise DataError(
            "expected exactly one Amazon interactions file (ratings CSV `item,user,rating,timestamp` "
            f"or reviews JSON lines) in {directory}; found {[p.name for p in events] or 'none'} "
            f"(all files: {[p.name for p in files]})"
        )
    if len(meta) > 1:
        raise DataError(f"more than one metadata file in {directory}: {[p.name for p in meta]}")
    return events[0], (meta[0] if meta else None)


def read_ratings_csv(path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> pl.DataFrame:
    """Header-less ``item,user,rating,timestamp`` CSV."""
    return read_delimited(
        path,
        columns={"item_id": pl.Utf8, "user_id": pl.Utf8, "rating": pl.Float32, "timestamp": pl.Int64},
        separator=",",
        has_header=False,
        required=["item_id", "user_id", "timestamp"],
        skip_bad_rows=skip_bad_rows,
        report=report,
    ).select("user_id", "item_id", "timestamp", "rating")


def read_reviews_json(path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> pl.DataFrame:
    """JSON-lines reviews: ``reviewerID, asin, overall, unixReviewTime`` (other fields ignored)."""
    frame = read_json_lines(
        path, REVIEW_FIELDS, required=["reviewerID", "asin", "unixReviewTime"],
        skip_bad_rows=skip_bad_rows, report=report,
    )  # fmt: skip
    return frame.select(
        pl.col("reviewerID").alias("user_id"),
        pl.col("asin").alias("item_id"),
        pl.col("unixReviewTime").alias("timestamp"),
        pl.col("overall").alias("rating"),
    )


def _text(value: Any) -> str | None:
    """Metadata text fields are a string or a list of strings; HTML entities are unescaped."""
    if value is None:
        return None
    if isinstance(value, list):
        value = " ".join(str(v).strip() for v in value if str(v).strip())
    text = unicode_text(html.unescape(str(value))).strip()
    return text or None


def _parse_meta_line(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        obj = ast.literal_eval(line)  # the 2014 metadata is Python literals
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return obj


def _categories(value: Any) -> list[str]:
    """2018: a flat list; 2014: a list of category paths (lists). Anything else that is not text
    (a number, an object, deeper nesting) names no category."""
    if not value:
        return []
    if not isinstance(value, list):
        value = [value]
    flat: list[str] = []
    for entry in value:
        for name in entry if isinstance(entry, list) else [entry]:
            if not isinstance(name, str):
                continue
            name = unicode_text(html.unescape(name)).strip()
            if name and name not in flat:
                flat.append(name)
    return flat


def read_metadata(path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> pl.DataFrame:
    """Metadata JSON lines -> catalogue columns. One Python dict per *item* (not per event)."""
    path = Path(path)
    rows: dict[str, list[Any]] = {k: [] for k in ("item_id", "title", "genres", "category", "brand", "description")}
    bad: list[int] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = _parse_meta_line(line)
            asin = obj.get("asin")
            if not isinstance(asin, str) or not asin.strip():
                found = [show_value(k, 40) for k in sorted(obj, key=str)][:20]
                raise ValueError(f"missing or empty 'asin'; fields found: {found}")
            if not is_unicode(asin):
                raise ValueError("'asin' holds a lone surrogate")
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:  # TypeError: {[1]: 2}
            if not skip_bad_rows:
                raise DataError(
                    f"bad metadata line ({type(exc).__name__}: {show_value(exc, 120)}); use --skip-bad-rows to skip it",
                    path=str(path),
                    line=lineno,
                ) from None
            bad.append(lineno)
            continue
        cats = _categories(obj.get("category", obj.get("categories")))
        rows["item_id"].append(asin)
        rows["title"].append(_text(obj.get("title")))
        rows["genres"].append(cats)
        rows["category"].append(" > ".join(cats) if cats else None)
        rows["brand"].append(_text(obj.get("brand")))
        rows["description"].append(_text(obj.get("description")))
    if bad and report is not None:
        report.add(path, bad)
    return pl.DataFrame(
        rows,
        schema={"item_id": pl.Utf8, "title": pl.Utf8, "genres": pl.List(pl.Utf8), "category": pl.Utf8,
                "brand": pl.Utf8, "description": pl.Utf8},
    )  # fmt: skip


def product_domain(category_paths: list[list[str]]) -> str | None:
    """The domain word of an Amazon catalogue: its commonest top-level category as a product
    kind ("Office Products" -> "office product", "Beauty" -> "beauty product"); None without one."""
    tops = Counter(path[0].strip() for path in category_paths if path and path[0].strip())
    if not tops:
        return None
    top = " ".join(tops.most_common(1)[0][0].lower().split())
    if top.endswith(" products"):
        return top[: -len("s")]
    return top if top.endswith("product") else f"{top} product"


def load_amazon(
    directory: str | Path,
    *,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
    name: str = "amazon",
) -> Dataset:
    """Amazon reviews from a folder holding one interactions file and optionally ``meta_*.json``."""
    events_path, meta_path = find_files(directory)
    if _has_suffix(events_path, _CSV_SUFFIXES):
        events = read_ratings_csv(events_path, skip_bad_rows=skip_bad_rows, report=report)
    else:
        events = read_reviews_json(events_path, skip_bad_rows=skip_bad_rows, report=report)
    domain = None
    if meta_path is not None:
        catalogue = read_metadata(meta_path, skip_bad_rows=skip_bad_rows, report=report)
        domain = product_domain(catalogue["genres"].to_list())
    else:
        catalogue = events.select("item_id").unique(maintain_order=True)
    checksums = {events_path.name: file_sha256(events_path)}
    if meta_path is not None:
        checksums[meta_path.name] = file_sha256(meta_path)
    return Dataset(
        name=name,
        interactions=Interactions.from_frame(events),
        catalogue=Catalogue.from_frame(catalogue),
        checksums=checksums,
        source=str(directory),
        domain=domain,
    )
