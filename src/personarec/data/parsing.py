"""Column-wise reading of delimited and JSON-lines files with errors that name the file and line.

Fast path: polars parses the file straight into the requested types, so a 25M-row file never
becomes 25M Python objects and string columns are never materialised twice. Only when that
fails (a value that does not parse, a row with too many fields, a bad JSON line) do we take the
slow path, which reads every field as text (or every JSON line in Python), locates the culprit
rows and either raises :class:`DataError` with file and line or, under ``--skip-bad-rows``,
drops them and counts them in a :class:`ReadReport`.

Row ``r`` of a parsed frame is line ``r + 1 + header_lines`` of the file: polars keeps blank
lines as all-null rows, which we drop silently after using them for the line count.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from personarec.errors import DataError

#: Stand-in byte for multi-character separators (MovieLens 1M's ``::``).
_UNIT_SEPARATOR = "\x1f"

DType = type[pl.DataType] | pl.DataType


@dataclass
class ReadReport:
    """Rows skipped under ``--skip-bad-rows``, per file, with a few example line numbers."""

    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, path: Path, lines: list[int]) -> None:
        key = str(path)
        self.skipped[key] = self.skipped.get(key, 0) + len(lines)
        have = self.examples.setdefault(key, [])
        have.extend(lines[: max(0, 5 - len(have))])

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_text(dtype: DType) -> bool:
    return dtype in (pl.Utf8, pl.String) or isinstance(dtype, (pl.Utf8, pl.String))


def read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _source(path: Path, separator: str, encoding: str) -> tuple[Path | bytes, str]:
    """What polars should read, and the single-byte separator to use.

    Plain UTF-8 files are handed over by path (polars memory-maps them); latin-1, gzip and
    multi-character separators go through one in-memory byte copy.
    """
    utf8 = encoding.lower() in ("utf8", "utf-8")
    if utf8 and len(separator) == 1 and path.suffix != ".gz":
        return path, separator
    data = read_bytes(path)
    if not utf8:
        data = data.decode(encoding).encode("utf8")
    if len(separator) > 1:
        data = data.replace(separator.encode("utf8"), _UNIT_SEPARATOR.encode())
        separator = _UNIT_SEPARATOR
    return data, separator


def iter_lines(source: Path | bytes, encoding: str = "utf8"):
    """(1-based line number, text) for every line: the slow path only."""
    if isinstance(source, bytes):
        for lineno, line in enumerate(source.decode("utf8", errors="replace").splitlines(), start=1):
            yield lineno, line
        return
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding=encoding, errors="replace") as fh:  # type: ignore[operator]
        for lineno, line in enumerate(fh, start=1):
            yield lineno, line.rstrip("\r\n")


def _scan_field_counts(source: Path | bytes, separator: str, n_fields: int, has_header: bool) -> list[int]:
    """Error path only: 1-based line numbers with more fields than expected (quote-unaware)."""
    bad = []
    for lineno, line in iter_lines(source):
        if has_header and lineno == 1:
            continue
        if line.strip() and line.count(separator) + 1 > n_fields:
            bad.append(lineno)
    return bad


def _header(source: Path | bytes, kwargs: dict[str, Any]) -> list[str]:
    return pl.read_csv(source, n_rows=0, **kwargs).columns


def _fast_read(
    source: Path | bytes, columns: dict[str, DType], has_header: bool, kwargs: dict[str, Any]
) -> pl.DataFrame | None:
    """Parse straight into the target types; ``None`` when the file needs the slow path."""
    overrides = {c: t for c, t in columns.items() if not _is_text(t)}
    try:
        if has_header:
            return pl.read_csv(source, columns=list(columns), schema_overrides=overrides, **kwargs)
        n = len(columns)
        width = len(_header(source, kwargs))
        if width < n:
            return None
        names = list(columns) + [f"_extra{i}" for i in range(width - n)]
        frame = pl.read_csv(source, new_columns=names, schema_overrides=overrides, **kwargs)
        return frame.select(list(columns))
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.ShapeError):
        return None


def _slow_read(
    path: Path,
    source: Path | bytes,
    columns: dict[str, DType],
    has_header: bool,
    kwargs: dict[str, Any],
    skip_bad_rows: bool,
) -> tuple[pl.DataFrame, pl.DataFrame, set[int]]:
    """Read every field as text; returns (raw text frame, typed frame, ragged row indices)."""
    header_lines = 1 if has_header else 0
    ragged_lines: list[int] = []
    try:
        raw = pl.read_csv(source, **kwargs)
    except pl.exceptions.ComputeError as exc:
        if "more fields" not in str(exc):
            raise DataError(f"cannot parse: {exc}", path=str(path)) from None
        n_fields = len(_header(source, kwargs)) if has_header else len(columns)
        ragged_lines = _scan_field_counts(source, kwargs["separator"], n_fields, has_header)
        if ragged_lines and not skip_bad_rows:
            raise DataError(
                f"wrong number of fields: more than {n_fields} (use --skip-bad-rows to skip such rows)",
                path=str(path),
                line=ragged_lines[0],
            ) from None
        raw = pl.read_csv(source, truncate_ragged_lines=True, **kwargs)
    if has_header:
        raw = raw.select(list(columns))
    else:
        raw = raw.select(raw.columns[: len(columns)])
        raw.columns = list(columns)
    typed = raw.select(
        [pl.col(c) if _is_text(t) else pl.col(c).str.strip_chars().cast(t, strict=False) for c, t in columns.items()]
    )
    return raw, typed, {line - 1 - header_lines for line in ragged_lines}


def _describe(
    ragged: bool, raw: pl.DataFrame | None, typed: pl.DataFrame, row: int, columns: dict[str, DType], required: list[str]
) -> str:
    """One line saying what is wrong with ``row`` and what was expected."""
    tail = "; use --skip-bad-rows to skip such rows"
    if ragged:
        return f"wrong number of fields: more than {len(columns)}{tail}"
    values = (raw if raw is not None else typed).row(row, named=True)
    shown = ", ".join(f"{c}={'' if v is None else v}" for c, v in values.items())
    empty = [c for c in required if typed[c][row] is None and (raw is None or not (raw[c][row] or "").strip())]
    if empty:
        return f"empty or missing field(s) {empty} (row: {shown}){tail}"
    unparsed = [c for c in columns if typed[c][row] is None and raw is not None and (raw[c][row] or "").strip()]
    what = ", ".join(f"{c} {raw[c][row]!r} is not {columns[c]}" for c in unparsed) if raw is not None else "bad value"
    return f"{what} (row: {shown}){tail}"


def read_delimited(
    path: str | Path,
    columns: dict[str, DType],
    *,
    separator: str = ",",
    has_header: bool = True,
    encoding: str = "utf8",
    required: list[str] | None = None,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
    with_line: bool = False,
) -> pl.DataFrame:
    """Read ``path`` into the given columns and types.

    ``columns`` maps output names to dtypes, in file order for header-less files (extra
    trailing fields are ignored); for files with a header they are looked up by name (a
    missing one lists the columns found). ``required`` columns (default: the first column plus
    every non-text one) must be non-empty. ``separator`` may be several characters (``::``).
    A malformed row raises :class:`DataError` with file and line, or is skipped and counted.
    ``with_line`` adds a ``_line`` column (1-based line number) for later per-row checks.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    source, sep = _source(path, separator, encoding)
    if (len(source) if isinstance(source, bytes) else path.stat().st_size) == 0:
        raise DataError("file is empty", path=str(path))
    quote = '"' if sep == "," else None
    kwargs: dict[str, Any] = dict(separator=sep, has_header=has_header, infer_schema=False, quote_char=quote)
    if isinstance(source, Path):
        kwargs["encoding"] = "utf8-lossy"
    header_lines = 1 if has_header else 0
    if has_header:
        try:
            found = _header(source, kwargs)
        except pl.exceptions.NoDataError:
            found = []
        missing = [c for c in columns if c not in found]
        if missing:
            raise DataError(f"missing column(s) {missing}; columns found: {found}", path=str(path))
    if required is None:
        required = [next(iter(columns))] + [c for c, t in columns.items() if not _is_text(t)]

    typed = _fast_read(source, columns, has_header, kwargs)
    raw: pl.DataFrame | None = None
    ragged: set[int] = set()
    if typed is None:
        raw, typed, ragged = _slow_read(path, source, columns, has_header, kwargs, skip_bad_rows)
    if typed.width < len(columns):
        raise DataError(f"expected {len(columns)} fields per row, found {typed.width}", path=str(path), line=1)

    blank = pl.all_horizontal([pl.col(c).is_null() for c in columns])
    bad = pl.any_horizontal([pl.col(c).is_null() for c in required]) & ~blank
    if raw is not None:  # a non-empty text value that did not parse
        for c, t in columns.items():
            if c not in required and not _is_text(t):
                bad = bad | (raw[c].is_not_null() & (raw[c].str.strip_chars() != "") & typed[c].is_null())
    flags = typed.select(bad.alias("bad"), blank.alias("blank"))
    bad_rows = flags["bad"].arg_true().to_list()
    blank_rows = flags["blank"].arg_true().to_list()
    bad_all = sorted(set(bad_rows) | ragged)
    if bad_all and not skip_bad_rows:
        row = bad_all[0]
        raise DataError(_describe(row in ragged, raw, typed, row, columns, required), path=str(path), line=row + 1 + header_lines)
    if bad_all and report is not None:
        report.add(path, [r + 1 + header_lines for r in bad_all])
    if with_line:
        typed = typed.with_row_index("_line", offset=1 + header_lines).with_columns(pl.col("_line").cast(pl.Int64))
    drop = set(bad_all) | set(blank_rows)
    if drop:
        keep = ~pl.int_range(0, typed.height, eager=True).is_in(sorted(drop))
        typed = typed.filter(keep)
    return typed


def _coerce(value: Any, dtype: DType) -> Any:
    """Python-side type check for the JSON slow path (raises ValueError/TypeError)."""
    if value is None:
        return None
    if dtype in (pl.Int64, pl.Int32) or isinstance(dtype, (pl.Int64, pl.Int32)):
        if isinstance(value, bool):
            raise TypeError("bool")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if dtype in (pl.Float32, pl.Float64) or isinstance(dtype, (pl.Float32, pl.Float64)):
        return float(value)
    if _is_text(dtype):
        if isinstance(value, (dict, list)):
            raise TypeError("not a string")
        return str(value)
    return value


def iter_json_lines(
    path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
):
    """Yield (line number, object) for each JSON line; a bad line raises or is skipped and counted."""
    path = Path(path)
    bad: list[int] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if not skip_bad_rows:
                raise DataError(f"bad JSON line ({exc}); use --skip-bad-rows to skip it", path=str(path), line=lineno) from None
            bad.append(lineno)
            continue
        yield lineno, obj
    if bad and report is not None:
        report.add(path, bad)


def read_json_lines(
    path: str | Path,
    fields: dict[str, DType],
    *,
    required: list[str] | None = None,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
) -> pl.DataFrame:
    """Read the given top-level fields of a JSON-lines file (``.gz`` allowed) into typed columns.

    Fast path: polars' NDJSON reader with the target schema (other fields are ignored). When it
    rejects the file, every line is checked in Python so the error names the bad line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    required = list(fields) if required is None else required
    source: Path | bytes = path if path.suffix != ".gz" else read_bytes(path)
    try:
        import io

        frame = pl.read_ndjson(source if isinstance(source, Path) else io.BytesIO(source), schema=fields)
        if frame.select(pl.any_horizontal([pl.col(c).is_null() for c in required]).any()).item():
            frame = None  # a missing field: find its line below
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, ValueError, RuntimeError):
        frame = None
    if frame is not None:
        return frame
    return _json_slow(path, fields, required, skip_bad_rows, report)


def _json_slow(
    path: Path, fields: dict[str, DType], required: list[str], skip_bad_rows: bool, report: ReadReport | None
) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {c: [] for c in fields}
    bad: list[int] = []
    for lineno, obj in iter_json_lines(path, skip_bad_rows=skip_bad_rows, report=report):
        try:
            missing = [c for c in required if obj.get(c) in (None, "")]
            if missing:
                raise ValueError(f"missing or empty field(s) {missing}")
            values = {c: _coerce(obj.get(c), t) for c, t in fields.items()}
        except (ValueError, TypeError) as exc:
            if not skip_bad_rows:
                raise DataError(
                    f"bad record ({exc}); fields found: {sorted(obj)}; use --skip-bad-rows to skip it",
                    path=str(path),
                    line=lineno,
                ) from None
            bad.append(lineno)
            continue
        for c, v in values.items():
            cols[c].append(v)
    if bad and report is not None:
        report.add(path, bad)
    return pl.DataFrame(cols, schema=fields)
