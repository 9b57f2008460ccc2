"""The P5 Amazon splits (Beauty / Sports / Toys, 2014 5-core) as ``user_sequence.txt``.

One line per user: the reviewerID, then the item ASINs in chronological order, space-separated.
The files carry no timestamps and no item text, so the timestamp of an event is its position in
the user's line (0, 1, 2, ...) and an item's title is its ASIN. Line ``k`` is P5 user ``k``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from personarec.data.parsing import ReadReport, file_sha256, read_bytes
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import DataError

SEQUENCE_FILE = "user_sequence.txt"


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
    lines = read_bytes(path).decode("utf8", errors="replace").splitlines()
    frame = pl.DataFrame({"line": pl.Series(lines, dtype=pl.Utf8)}).with_row_index("lineno", offset=1)
    frame = frame.with_columns(pl.col("line").str.strip_chars().str.split(" ").list.filter(pl.element() != ""))
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


def load_p5(directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None, name: str = "p5") -> Dataset:
    directory = Path(directory)
    path = directory / SEQUENCE_FILE
    if not path.exists():
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise DataError(f"missing file {path}; files found in {directory}: {found}")
    events = read_user_sequences(path, skip_bad_rows=skip_bad_rows, report=report)
    catalogue = events.select("item_id").unique(maintain_order=True)  # title defaults to the ASIN
    return Dataset(
        name=name,
        interactions=Interactions.from_frame(events),
        catalogue=Catalogue.from_frame(catalogue),
        checksums={path.name: file_sha256(path)},
        source=str(directory),
    )
