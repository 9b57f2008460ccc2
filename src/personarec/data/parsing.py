"""Column-wise reading of delimited files with errors that name the file and line.

The fast path reads every field as text with polars and casts it vectorised; rows whose cast
fails (or whose required fields are empty) are located by row index, so a 25M-row file never
becomes 25M Python objects. Only when the parser itself rejects the file (a row with too many
fields) do we scan lines in Python to find the culprit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from personarec.errors import DataError


@dataclass
class ReadReport:
    """Rows skipped under ``--skip-bad-rows``, per file, with a few example line numbers."""

    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, path: Path, lines: list[int]) -> None:
        key = str(path)
        self.skipped[key] = self.skipped.get(key, 0) + len(lines)
        self.examples.setdefault(key, []).extend(lines[: 5 - len(self.examples.get(key, []))])

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _scan_field_counts(path: Path, separator: str, n_fields: int, has_header: bool, encoding: str) -> list[int]:
    """Error path only: 1-based line numbers whose field count is wrong (quote-unaware)."""
    bad = []
    with open(path, encoding=encoding, errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if has_header and lineno == 1:
                continue
            if line.strip() and line.rstrip("\r\n").count(separator) + 1 > n_fields:
                bad.append(lineno)
    return bad


def read_delimited(
    path: str | Path,
    columns: dict[str, type[pl.DataType] | pl.DataType],
    *,
    separator: str = ",",
    has_header: bool = True,
    encoding: str = "utf8",
    required: list[str] | None = None,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
) -> pl.DataFrame:
    """Read ``path`` into the given columns and types.

    ``columns`` maps output names to dtypes, in file order for header-less files; for files
    with a header they are looked up by name (a missing one lists the columns found).
    ``required`` columns (default: all non-Utf8 ones plus the first) must be non-empty.
    A malformed row raises :class:`DataError` with file and line, or is skipped and counted.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    pl_encoding = "utf8-lossy" if encoding.lower() in ("utf8", "utf-8") else "utf8"
    quote = '"' if separator == "," else None
    kwargs = dict(separator=separator, has_header=has_header, infer_schema=False, quote_char=quote)
    if encoding.lower() not in ("utf8", "utf-8"):
        source: Path | bytes = path.read_bytes().decode(encoding).encode("utf8")
    else:
        source = path
        kwargs["encoding"] = pl_encoding
    header_lines = 1 if has_header else 0
    ragged: list[int] = []
    try:
        raw = pl.read_csv(source, **kwargs)
    except pl.exceptions.ComputeError as exc:
        if "more fields" not in str(exc):
            raise DataError(f"cannot parse: {exc}", path=str(path)) from None
        n_fields = len(columns) if not has_header else len(pl.read_csv(source, n_rows=0, **kwargs).columns)
        ragged = _scan_field_counts(path, separator, n_fields, has_header, encoding)
        if ragged and not skip_bad_rows:
            raise DataError(
                f"row has more than {n_fields} fields (use --skip-bad-rows to skip such rows)",
                path=str(path),
                line=ragged[0],
            ) from None
        raw = pl.read_csv(source, truncate_ragged_lines=True, **kwargs)
    if has_header:
        missing = [c for c in columns if c not in raw.columns]
        if missing:
            raise DataError(f"missing column(s) {missing}; columns found: {raw.columns}", path=str(path))
        raw = raw.select(list(columns))
    else:
        if raw.width < len(columns):
            raise DataError(
                f"expected {len(columns)} fields per row, found {raw.width}", path=str(path), line=1
            )
        raw = raw.select(raw.columns[: len(columns)])
        raw.columns = list(columns)
    if required is None:
        required = [next(iter(columns))] + [c for c, t in columns.items() if t not in (pl.Utf8, pl.String)]
    typed = raw.select(
        [pl.col(c).str.strip_chars().cast(t, strict=False) if t not in (pl.Utf8, pl.String) else pl.col(c) for c, t in columns.items()]
    )
    bad_mask = pl.lit(False)
    for c, t in columns.items():
        if c in required:
            bad_mask = bad_mask | typed[c].is_null()
        elif t not in (pl.Utf8, pl.String):
            bad_mask = bad_mask | (raw[c].is_not_null() & (raw[c].str.strip_chars() != "") & typed[c].is_null())
    bad_rows = typed.with_row_index("_row").filter(bad_mask)["_row"].to_list()
    ragged_rows = {line - 1 - header_lines for line in ragged}
    if bad_rows and not skip_bad_rows:
        row = bad_rows[0]
        values = {c: raw[c][row] for c in columns}
        raise DataError(
            f"malformed row {values} (expected types {{{', '.join(f'{c}: {t}' for c, t in columns.items())}}}; "
            "use --skip-bad-rows to skip such rows)",
            path=str(path),
            line=row + 1 + header_lines,
        )
    drop = sorted(set(bad_rows) | ragged_rows)
    if drop:
        if report is not None:
            report.add(path, [r + 1 + header_lines for r in drop])
        keep = pl.Series(range(typed.height)).is_in(drop).not_()
        typed = typed.filter(keep)
    return typed
