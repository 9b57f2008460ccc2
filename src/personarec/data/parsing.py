"""Column-wise reading of delimited and JSON-lines files with errors that name the file and line.

Fast path: polars parses the file straight into the requested types, so a 25M-row file never
becomes 25M Python objects and string columns are never materialised twice. Only when that
fails (a value that does not parse, a row with too many fields, a bad JSON line) do we take the
slow path, which scans the records in Python (quote aware: where each starts, how many fields
it has, whether its quoting is broken), reads every field as text (or every JSON line in
Python), locates the culprit rows and either raises :class:`DataError` with file and line or,
under ``--skip-bad-rows``, drops them and counts them in a :class:`ReadReport`.

Row ``r`` of a parsed frame is line ``r + 1 + header_lines`` of the file unless a quoted field
spans lines (then the scanned record starts are used). Polars keeps blank lines as all-null
rows; a row with no non-blank value is dropped silently as a blank line. Hostile input (any
bytes, BOMs, CRLF, stray quotes, huge numbers, ``nan``) ends in a :class:`DataError`, never in
a polars or decoding exception.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from personarec.errors import DataError

#: Stand-in byte for multi-character separators (MovieLens 1M's ``::``).
_UNIT_SEPARATOR = "\x1f"
_BOM = b"\xef\xbb\xbf"

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


def _is_float(dtype: DType) -> bool:
    return dtype in (pl.Float32, pl.Float64) or isinstance(dtype, (pl.Float32, pl.Float64))


def _open_gzip_error(path: Path, exc: BaseException) -> DataError:
    return DataError(f"not a readable gzip file ({type(exc).__name__}: {str(exc)[:80]})", path=str(path))


def read_bytes(path: Path) -> bytes:
    """The file's bytes (``.gz`` decompressed); a corrupt archive is a :class:`DataError`."""
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise _open_gzip_error(path, exc) from None
    return path.read_bytes()


def _strip_bom(data: bytes) -> bytes:
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def _source(path: Path, separator: str, encoding: str) -> tuple[Path | bytes, str]:
    """What polars should read, and the single-byte separator to use.

    Plain UTF-8 files that end with a newline are handed over by path (polars memory-maps them
    and drops a BOM). Other encodings, gzip, separators that are not one byte and a missing final
    newline go through one in-memory UTF-8 copy, without the BOM (a UTF-8 BOM decoded as latin-1
    would become part of the first id) and with the final newline (polars treats an unterminated
    last line more leniently than the others: a stray quote or a trailing separator passes).
    An empty file is a :class:`DataError`.
    """
    if not separator or "\n" in separator or "\r" in separator:
        raise DataError(f"invalid field separator {separator!r}", path=str(path))
    utf8 = encoding.lower().replace("_", "-") in ("utf8", "utf-8")
    single_byte = len(separator.encode("utf8")) == 1
    if path.suffix != ".gz" and path.stat().st_size == 0:
        raise DataError("file is empty", path=str(path))
    if utf8 and single_byte and path.suffix != ".gz" and _ends_with_newline(path):
        return path, separator
    data = _strip_bom(read_bytes(path))
    if not data:
        raise DataError("file is empty", path=str(path))
    if not utf8:
        try:
            data = data.decode(encoding).encode("utf8")
        except LookupError:
            raise DataError(f"unknown encoding {encoding!r}", path=str(path)) from None
        except UnicodeDecodeError as exc:
            raise DataError(
                f"not valid {encoding} text (byte {data[exc.start:exc.start + 1]!r} at offset {exc.start})",
                path=str(path),
                line=_line_of_offset(data, exc.start),
            ) from None
    if not single_byte:
        data = data.replace(separator.encode("utf8"), _UNIT_SEPARATOR.encode())
        separator = _UNIT_SEPARATOR
    if not data.endswith(b"\n"):
        data += b"\n"
    return data, separator


_NEWLINE = re.compile(r"\r\n|\r|\n")


def iter_lines(source: Path | bytes, encoding: str = "utf8"):
    """(1-based line number, text) for every line (``\\n``, ``\\r\\n`` or ``\\r`` ends one, as
    in a text-mode file), BOM dropped; undecodable bytes become U+FFFD."""
    if isinstance(source, bytes):
        pieces = _NEWLINE.split(_strip_bom(source).decode("utf8", errors="replace"))
        if pieces[-1] == "":
            pieces.pop()  # the newline that ends the last line
        yield from enumerate(pieces, start=1)
        return
    opener = gzip.open if source.suffix == ".gz" else open
    try:
        enc = "utf-8-sig" if encoding.lower() in ("utf8", "utf-8") else encoding
        with opener(source, "rt", encoding=enc, errors="replace") as fh:  # type: ignore[operator]
            for lineno, line in enumerate(fh, start=1):
                yield lineno, line.rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _open_gzip_error(source, exc) from None


# Record scanning: the error path's view of the file, one Python pass over its lines. It knows
# where every record starts (a quoted field may hold newlines), how many fields it has (quote
# aware) and whether its quoting is broken, so errors name the right line.
_START, _UNQUOTED, _QUOTED, _QUOTE_SEEN = range(4)


@dataclass
class _Scan:
    """Per record (the header included): first line, field count (0 = empty line), fields up to the
    last non-empty one (trailing separators do not count), broken quoting, byte range."""

    starts: np.ndarray
    fields: np.ndarray
    used: np.ndarray
    malformed: np.ndarray
    begins: np.ndarray
    ends: np.ndarray


def _physical_lines(data: bytes):
    pos, n = 0, len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        nxt = n if end < 0 else end + 1
        yield pos, data[pos : n if end < 0 else end]
        pos = nxt


def _scan_records(data: bytes, separator: str, quote: str | None) -> _Scan:
    """RFC 4180 records of ``data``: a quote opens a field only at its start, ``""`` is a quote
    inside one, a stray or unclosed quote makes the record malformed (polars rejects the file)."""
    sep = separator.encode("utf8")[0]
    q = quote.encode("utf8")[0] if quote else None
    qb = bytes([q]) if q is not None else None
    sepb = bytes([sep])
    starts, fields, used, begins = array("q"), array("q"), array("q"), array("q")
    malformed = array("b")
    inside = False  # a quoted field continues on the next line
    state, count, filled, broken = _START, 0, 0, False
    lineno = 0
    for lineno, (begin, line) in enumerate(_physical_lines(data), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not inside:
            starts.append(lineno)
            begins.append(begin)
            if qb is None or qb not in line:
                content = line.rstrip(sepb)
                fields.append(line.count(sep) + 1 if line else 0)
                used.append(content.count(sep) + 1 if content else 0)
                malformed.append(0)
                continue
            state, count, filled, broken = _START, 1, 0, False
        for ch in line:
            if ch != sep or state == _QUOTED:
                filled = count
            if state == _START:
                if ch == q:
                    state = _QUOTED
                elif ch == sep:
                    count += 1
                else:
                    state = _UNQUOTED
            elif state == _UNQUOTED:
                if ch == sep:
                    count, state = count + 1, _START
                elif ch == q:
                    broken = True
            elif state == _QUOTED:
                if ch == q:
                    state = _QUOTE_SEEN
            elif ch == q:  # _QUOTE_SEEN: an escaped quote
                state = _QUOTED
            elif ch == sep:
                count, state = count + 1, _START
            else:
                broken, state = True, _UNQUOTED
        inside = state == _QUOTED
        if not inside:
            fields.append(count)
            used.append(filled)
            malformed.append(int(broken))
            state = _START
    if inside:  # a quote opened and never closed
        fields.append(count)
        used.append(filled)
        malformed.append(1)
    begins_np = np.frombuffer(begins, dtype=np.int64) if len(begins) else np.zeros(0, np.int64)
    ends = np.append(begins_np[1:], len(data)).astype(np.int64)
    return _Scan(
        starts=np.frombuffer(starts, dtype=np.int64) if len(starts) else np.zeros(0, np.int64),
        fields=np.frombuffer(fields, dtype=np.int64) if len(fields) else np.zeros(0, np.int64),
        used=np.frombuffer(used, dtype=np.int64) if len(used) else np.zeros(0, np.int64),
        malformed=np.frombuffer(malformed, dtype=np.int8).astype(bool) if len(malformed) else np.zeros(0, bool),
        begins=begins_np,
        ends=ends,
    )


class _Lines:
    """Maps parsed rows to file lines, scanning the file only when asked (error path, ``_line``)."""

    def __init__(self, path: Path, source: Path | bytes, separator: str, quote: str | None) -> None:
        self.path, self.source, self.separator, self.quote = path, source, separator, quote
        self._data: bytes | None = None
        self._scan: _Scan | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = _strip_bom(self.source if isinstance(self.source, bytes) else read_bytes(self.path))
        return self._data

    def scan(self) -> _Scan:
        if self._scan is None:
            self._scan = _scan_records(self.data, self.separator, self.quote)
        return self._scan

    def of_rows(self, height: int, header_lines: int) -> np.ndarray:
        """Line of each of ``height`` parsed data rows: row ``r`` is line ``r + 1 + header_lines``
        unless a quoted field spans lines, then the scanned record starts."""
        naive = np.arange(height, dtype=np.int64) + 1 + header_lines
        if self.quote is None or self.quote.encode("utf8") not in self.data:
            return naive
        data = self.data
        physical = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        if physical == height + header_lines:
            return naive
        starts = self.scan().starts[header_lines:]
        return starts if len(starts) == height else naive


def _header(source: Path | bytes, kwargs: dict[str, Any]) -> list[str]:
    return pl.read_csv(source, n_rows=0, **kwargs).columns


def _cast(column: str, dtype: DType) -> pl.Expr:
    """Text -> ``dtype``; unparsable and non-finite values become null (then reported)."""
    if _is_text(dtype):
        return pl.col(column)
    expr = pl.col(column).str.strip_chars().cast(dtype, strict=False)
    if _is_float(dtype):
        expr = pl.when(expr.is_finite()).then(expr).otherwise(None)
    return expr.alias(column)


def _fast_read(
    source: Path | bytes, columns: dict[str, DType], has_header: bool, kwargs: dict[str, Any]
) -> pl.DataFrame | None:
    """Parse straight into the target types; ``None`` when the file needs the slow path."""
    overrides = {c: t for c, t in columns.items() if not _is_text(t)}
    try:
        if has_header:
            frame = pl.read_csv(source, columns=list(columns), schema_overrides=overrides, **kwargs)
        else:
            n = len(columns)
            width = len(_header(source, kwargs))
            if width < n:
                return None
            names = list(columns) + [f"_extra{i}" for i in range(width - n)]
            frame = pl.read_csv(source, new_columns=names, schema_overrides=overrides, **kwargs).select(list(columns))
    except pl.exceptions.PolarsError:
        return None
    floats = [c for c, t in columns.items() if _is_float(t)]
    if floats and frame.select(pl.any_horizontal([~pl.col(c).is_finite() for c in floats]).any()).item():
        return None  # nan / inf: the slow path names the value
    return frame


def _slow_read(
    path: Path,
    lines: _Lines,
    columns: dict[str, DType],
    has_header: bool,
    kwargs: dict[str, Any],
    skip_bad_rows: bool,
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, list[int]]:
    """Read every field as text after scanning the records.

    Returns (raw text frame, typed frame, line of each row, lines of the records dropped for
    too many fields or broken quoting). Header-less files get a synthetic header as wide as the
    columns (or the first line, whichever is wider), so a short or blank first line cannot fix
    the width of the file.
    """
    scan = lines.scan()
    sep = kwargs["separator"]
    first = 1 if has_header else 0
    if has_header and len(scan.malformed) and scan.malformed[0]:
        raise DataError("cannot parse the header (unbalanced quotes)", path=str(path), line=int(scan.starts[0]))
    width = max(len(columns) if not has_header else 0, int(scan.fields[0]) if len(scan.fields) else 0)
    too_many = scan.used > width  # extra empty trailing fields (a trailing separator) are ignored
    bad = scan.malformed | too_many
    bad[:first] = False
    dropped = [int(x) for x in scan.starts[bad]]
    if dropped and not skip_bad_rows:
        i = int(np.flatnonzero(bad)[0])
        what = (
            "unbalanced or stray quote character"
            if scan.malformed[i]
            else f"wrong number of fields: {int(scan.used[i])}, expected {width}"
            + (" (from the header)" if has_header else "")
        )
        raise DataError(f"{what}; use --skip-bad-rows to skip such rows", path=str(path), line=int(scan.starts[i]))
    data = lines.data
    if dropped:
        keep = np.flatnonzero(~bad)
        data = b"".join(data[int(scan.begins[i]) : int(scan.ends[i])] for i in keep)
    if not has_header:
        data = sep.join(f"_c{i}" for i in range(width)).encode("utf8") + b"\n" + data
    read_kwargs = dict(kwargs, has_header=True, encoding="utf8-lossy", truncate_ragged_lines=True)
    try:
        raw = pl.read_csv(data, **read_kwargs)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse: {str(exc).splitlines()[0][:200]}", path=str(path)) from None
    try:  # any polars refusal to select the mapped columns is reported against the file, never a traceback
        if has_header:
            raw = raw.select(list(columns))
        else:
            raw = raw.select(raw.columns[: len(columns)])
            raw.columns = list(columns)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot read columns {list(columns)}: {str(exc).splitlines()[0][:200]}", path=str(path)) from None
    starts = scan.starts[~bad][first:]
    row_lines = starts if len(starts) == raw.height else np.arange(raw.height, dtype=np.int64) + 1 + first
    typed = raw.select([_cast(c, t) for c, t in columns.items()])
    return raw, typed, row_lines, dropped


def show_value(value: Any, limit: int = 60) -> str:
    """A field value for a one-line message: control characters escaped, long values cut."""
    text = "" if value is None else str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _blank_text(value: Any) -> bool:
    return value is None or not str(value).strip()


def _describe(
    raw: pl.DataFrame | None, typed: pl.DataFrame, row: int, columns: dict[str, DType], required: list[str]
) -> str:
    """One line saying what is wrong with ``row`` and what was expected."""
    tail = "; use --skip-bad-rows to skip such rows"
    values = (raw if raw is not None else typed).row(row, named=True)
    shown = ", ".join(f"{c}={show_value(v, 40)}" for c, v in values.items())
    text = raw if raw is not None else typed.select([c for c, t in columns.items() if _is_text(t)])
    empty = [c for c in required if _blank_text(text[c][row] if c in text.columns else typed[c][row])]
    if empty:
        return f"empty or missing field(s) {empty} (row: {shown}){tail}"
    if raw is None:
        return f"bad value (row: {shown}){tail}"
    unparsed = [c for c in columns if typed[c][row] is None and not _blank_text(raw[c][row])]
    what = ", ".join(f"{c} '{show_value(raw[c][row])}' is not {columns[c]}" for c in unparsed)
    return f"{what} (row: {shown}){tail}"


def _without_line_boms(frame: pl.DataFrame, text_columns: list[str]) -> pl.DataFrame:
    """Text values without a leading U+FEFF: concatenated exports leave a BOM at the start of a
    line inside the file, which would otherwise become an invisible part of an id."""
    starts = frame.select([pl.col(c).str.starts_with("\ufeff").any().alias(c) for c in text_columns])
    hit = [c for c in text_columns if starts[c][0]]
    return frame.with_columns([pl.col(c).str.strip_chars_start("\ufeff") for c in hit]) if hit else frame


def _flags(
    raw: pl.DataFrame | None, typed: pl.DataFrame, columns: dict[str, DType], required: list[str]
) -> tuple[pl.Series, pl.Series]:
    """(bad, blank) per row in one parallel pass. Blank: no field holds a non-whitespace character
    (dropped as a blank line). Bad: a required field blank or unparsed, or an optional typed field
    whose text did not parse."""
    if raw is None:
        frame, text = typed, {c: pl.col(c) for c, t in columns.items() if _is_text(t)}
    else:  # the raw text next to the typed values
        frame = pl.concat([raw.rename({c: f"_raw{i}" for i, c in enumerate(columns)}), typed], how="horizontal")
        text = {c: pl.col(f"_raw{i}") for i, c in enumerate(columns)}
    exprs = [(~text[c].str.contains(r"\S")).fill_null(True) if c in text else pl.col(c).is_null() for c in columns]
    exprs += [pl.col(c).is_null() for c in columns]
    parts = frame.select([e.alias(f"_{k}") for k, e in enumerate(exprs)])  # each column computed once
    n = len(columns)
    blank = {c: pl.col(f"_{i}") for i, c in enumerate(columns)}
    null = {c: pl.col(f"_{n + i}") for i, c in enumerate(columns)}
    problems = [blank[c] | null[c] for c in required]
    problems += [null[c] & ~blank[c] for c, t in columns.items() if c not in required and not _is_text(t)]
    blank_row = pl.all_horizontal(list(blank.values()))
    flags = parts.select((pl.any_horizontal(problems) & ~blank_row).alias("bad"), blank_row.alias("blank"))
    return flags["bad"], flags["blank"]


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
    quote: str | None | Literal["auto"] = "auto",
) -> pl.DataFrame:
    """Read ``path`` into the given columns and types.

    ``columns`` maps output names to dtypes, in file order for header-less files (extra
    trailing fields are ignored); for files with a header they are looked up by name (a
    missing one lists the columns found). ``required`` columns (default: the first column plus
    every non-text one) must hold a non-blank value. ``separator`` may be several characters
    (``::``); ``quote`` defaults to ``"`` for commas and none otherwise. Floats must be finite.
    A malformed row raises :class:`DataError` with file and line, or is skipped and counted.
    A row without any non-blank value is a blank line and is dropped.
    A row may end with extra empty fields (a trailing separator); a non-empty field past the
    header (or, without one, past the columns and the first line) is an error.
    ``with_line`` adds a ``_line`` column (1-based line number) for later per-row checks.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    source, sep = _source(path, separator, encoding)
    if quote == "auto":
        quote = '"' if sep == "," else None
    kwargs: dict[str, Any] = dict(separator=sep, has_header=has_header, infer_schema=False, quote_char=quote)
    if isinstance(source, Path):
        kwargs["encoding"] = "utf8-lossy"
    lines = _Lines(path, source, sep, quote)
    header_lines = 1 if has_header else 0
    if has_header:
        try:
            found = _header(source, kwargs)
        except pl.exceptions.NoDataError:
            found = []
        except pl.exceptions.PolarsError:
            raise DataError("cannot parse the header", path=str(path), line=1) from None
        missing = [c for c in columns if c not in found]
        if missing:
            shown = [show_value(c) for c in found]
            raise DataError(f"missing column(s) {missing}; columns found: {shown}", path=str(path))
    if required is None:
        required = [next(iter(columns))] + [c for c, t in columns.items() if not _is_text(t)]

    typed = _fast_read(source, columns, has_header, kwargs)
    raw: pl.DataFrame | None = None
    row_lines: np.ndarray | None = None
    dropped: list[int] = []
    if typed is None:
        raw, typed, row_lines, dropped = _slow_read(path, lines, columns, has_header, kwargs, skip_bad_rows)
    typed = _without_line_boms(typed, [c for c, t in columns.items() if _is_text(t)])

    bad, blank_row = _flags(raw, typed, columns, required)
    bad_rows = bad.arg_true().to_list()
    if (bad_rows and (not skip_bad_rows or report is not None)) or with_line:
        if row_lines is None:
            row_lines = lines.of_rows(typed.height, header_lines)
    if bad_rows and not skip_bad_rows:
        row = bad_rows[0]
        raise DataError(_describe(raw, typed, row, columns, required), path=str(path), line=int(row_lines[row]))
    skipped = sorted(dropped + ([int(row_lines[r]) for r in bad_rows] if bad_rows and row_lines is not None else []))
    if skipped and report is not None:
        report.add(path, skipped)
    if with_line:
        typed = typed.with_columns(pl.Series("_line", row_lines, dtype=pl.Int64)).select(["_line", *columns])
    drop = bad | blank_row
    if drop.any():
        typed = typed.filter(~drop)
    return typed


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _coerce(value: Any, dtype: DType) -> Any:
    """Python-side type check for the JSON slow path (raises ValueError/TypeError).

    Integers must fit Int64, floats must be finite, text fields take JSON strings and numbers
    (never booleans, arrays or objects, which polars would silently turn into text)."""
    if value is None:
        return None
    if dtype in (pl.Int64, pl.Int32) or isinstance(dtype, (pl.Int64, pl.Int32)):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{type(value).__name__} is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not an integer")
        number = int(value)
        if not _INT64[0] <= number <= _INT64[1]:
            raise ValueError(f"{show_value(value, 30)} is out of the Int64 range")
        return number
    if _is_float(dtype):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{type(value).__name__} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{show_value(value, 30)} is not a finite number")
        return number
    if _is_text(dtype):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError(f"{type(value).__name__} is not a string")
        text = str(value)
        if not is_unicode(text):
            raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff escape)")
        return text
    return value


def is_unicode(text: str) -> bool:
    """Whether ``text`` is encodable (JSON and Python literals can spell lone surrogates, which
    no UTF-8 column can hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unicode_text(text: str) -> str:
    """``text`` with lone surrogates replaced (U+FFFD), for free text such as titles."""
    return text if is_unicode(text) else text.encode("utf-8", errors="replace").decode("utf-8")


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
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            if not skip_bad_rows:
                raise DataError(
                    f"bad JSON line ({type(exc).__name__}: {show_value(exc, 120)}); use --skip-bad-rows to skip it",
                    path=str(path),
                    line=lineno,
                ) from None
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
        frame = pl.read_ndjson(source if isinstance(source, Path) else io.BytesIO(source), schema=fields)
        if not _json_frame_ok(frame, fields, required) or _lone_surrogate(source):
            frame = None  # find the offending line below
    except (pl.exceptions.PolarsError, ValueError, RuntimeError):
        frame = None
    if frame is not None:
        return frame
    return _json_slow(path, fields, required, skip_bad_rows, report)


_ESCAPED_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"  # a high one not followed by a low one
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a low one alone
)


def _lone_surrogate(source: Path | bytes) -> bool:
    """Whether the JSON text escapes a lone surrogate (``"\\ud800"``): polars decodes one into
    other characters (``\\x00``) instead of failing, so such a file takes the checked path."""
    data = source if isinstance(source, bytes) else source.read_bytes()
    if b"\\ud" not in data and b"\\uD" not in data:
        return False
    return _ESCAPED_SURROGATE.search(data) is not None


def _json_frame_ok(frame: pl.DataFrame, fields: dict[str, DType], required: list[str]) -> bool:
    """Whether polars' typed reading can be trusted: required fields present and non-blank, floats
    finite, and no text field that polars made out of a boolean, array or object."""
    checks = [pl.col(c).is_null() for c in required]
    for c, t in fields.items():
        if _is_text(t):
            checks.append(pl.col(c).str.contains(r"^\s*[\[{]") | pl.col(c).is_in(["true", "false"]))
            if c in required:
                checks.append(pl.col(c).str.strip_chars() == "")
        elif _is_float(t):
            checks.append(~pl.col(c).is_finite())
    return not frame.select(pl.any_horizontal(checks).fill_null(False).any()).item()


def _json_slow(
    path: Path, fields: dict[str, DType], required: list[str], skip_bad_rows: bool, report: ReadReport | None
) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {c: [] for c in fields}
    bad: list[int] = []
    for lineno, obj in iter_json_lines(path, skip_bad_rows=skip_bad_rows, report=report):
        try:
            missing = [c for c in required if obj.get(c) is None or (isinstance(obj[c], str) and not obj[c].strip())]
            if missing:
                raise ValueError(f"missing or empty field(s) {missing}")
            values = {c: _coerce(obj.get(c), t) for c, t in fields.items()}
        except (ValueError, TypeError) as exc:
            if not skip_bad_rows:
                raise DataError(
                    f"bad record ({show_value(exc, 120)}); "
                    f"fields found: {[show_value(k, 40) for k in sorted(obj)][:20]}; "
                    "use --skip-bad-rows to skip it",
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
