"""Any CSV / Parquet event log plus an optional catalogue, described by a column mapping.

Configured under ``[data.tabular]`` with ``dataset = "tabular"``, e.g.::

    [data]
    dataset = "tabular"
    data_dir = "exports"            # relative paths below are resolved against it
    [data.tabular]
    paths = ["events-2024-*.parquet"]
    user_col = "customer"
    item_col = "sku"
    timestamp_col = "ts"            # integer seconds, a datetime column, or strings + timestamp_format
    rating_col = "stars"
    catalogue = "products.csv"
    catalogue_item_col = "sku"
    title_col = "name"
    text_cols = { category = "dept", brand = "maker", description = "blurb", genres = "labels" }
    domain = "garden product"       # what the items are (prompts say "a garden product customer")

``personarec data inspect FILE`` suggests such a mapping from a file's column names.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from personarec.data.parsing import ReadReport, file_sha256, read_delimited, show_value
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import ConfigError, DataError

CatalogueField = Literal["genres", "tags", "category", "brand", "description"]
_LIST_FIELDS = ("genres", "tags")
_RESERVED = {"_line", "_ts", "_rating"}  # columns the loader adds while it checks rows


def is_column_pattern(name: str) -> bool:
    """Names polars expands instead of selecting (``*``, ``^...$``): a column so named cannot be mapped."""
    return name == "*" or (len(name) > 1 and name.startswith("^") and name.endswith("$"))


class TabularConfig(BaseModel):
    """Column mapping for a generic event table (CSV or Parquet) and its item catalogue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("tabular", description="dataset name shown on the protocol card")
    domain: str | None = Field(
        None, description="what the items are, for prompts (\"book\", \"office product\"); None: unknown"
    )
    paths: list[str] = Field(description="event files or glob patterns (CSV or Parquet), read in this order")
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="auto = by file suffix")
    separator: str = Field(",", description="CSV field separator (may be several characters)")
    has_header: bool = True
    encoding: str = "utf8"
    user_col: str = "user_id"
    item_col: str = "item_id"
    timestamp_col: str | None = Field("timestamp", description="None: the row order is the time order")
    timestamp_format: str | None = Field(None, description="strptime format for text timestamps, e.g. %Y-%m-%d %H:%M:%S")
    rating_col: str | None = None
    catalogue: str | None = Field(None, description="item file (CSV or Parquet); None: titles are the item ids")
    catalogue_item_col: str = "item_id"
    title_col: str | None = "title"
    text_cols: dict[CatalogueField, str] = Field(default_factory=dict, description="catalogue field -> source column")
    list_separator: str = Field("|", description="splits text columns mapped to genres / tags")

    @field_validator("paths", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, (str, Path)) else value

    @field_validator("separator", "list_separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        if not value or any(ch in value for ch in "\r\n\""):
            raise ValueError(f"a separator must be non-empty, without newlines or quotes; got {value!r}")
        return value

    @field_validator("user_col", "item_col", "timestamp_col", "rating_col", "catalogue_item_col", "title_col")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        if value in _RESERVED:
            raise ValueError(f"column name {value!r} is reserved for the loader's own use")
        if value is not None and is_column_pattern(value):
            raise ValueError(f"column name {value!r} reads as a polars pattern (wildcard or ^regex$); rename the column")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


def _expand(patterns: list[str], base: Path) -> list[Path]:
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        p = p if p.is_absolute() else base / p
        if any(ch in p.name for ch in "*?["):
            matches = sorted(p.parent.glob(p.name))
            if not matches:
                raise DataError(f"no file matches {p}")
            out.extend(matches)
        else:
            if not p.exists():
                raise DataError("file not found", path=str(p))
            out.append(p)
    return out


def _is_parquet(path: Path, fmt: str) -> bool:
    return fmt == "parquet" or (fmt == "auto" and path.suffix.lower() in (".parquet", ".pq"))


def _read_parquet(path: Path, columns: list[str]) -> pl.DataFrame:
    """The columns of a Parquet file and a 1-based ``_line`` (row) number; a file polars cannot
    read is a :class:`DataError` naming it."""
    try:
        found = list(pl.read_parquet_schema(path))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({str(exc).splitlines()[0][:120]})", path=str(path)) from None
    missing = [c for c in columns if c not in found]
    if missing:
        raise DataError(f"missing column(s) {missing}; columns found: {found}", path=str(path))
    try:
        return pl.read_parquet(path, columns=columns).with_row_index("_line", offset=1)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"not a readable Parquet file ({str(exc).splitlines()[0][:120]})", path=str(path)) from None


def _is_id_type(dtype: pl.DataType) -> bool:
    return dtype.is_integer() or dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))


def _id_columns(frame: pl.DataFrame, cols: list[str], path: Path) -> pl.DataFrame:
    """Parquet id columns must be text or integers (a list or struct is no id); they become text."""
    for c in dict.fromkeys(cols):
        if not _is_id_type(frame.schema[c]):
            raise DataError(f"column {c!r} has type {frame.schema[c]}; ids must be text or integers", path=str(path))
    return frame.with_columns([pl.col(c).cast(pl.Utf8) for c in dict.fromkeys(cols)])


def _blank(col: str) -> pl.Expr:
    return pl.col(col).is_null() | (pl.col(col).str.strip_chars() == "")


def _epoch_expr(frame: pl.DataFrame, col: str, fmt: str | None, path: Path) -> pl.Expr:
    """Integers pass; datetimes/dates become Unix seconds; text is parsed with ``fmt``; a value
    that does not convert becomes null (reported by the caller)."""
    dtype = frame.schema[col]
    if dtype.is_integer():
        return pl.col(col).cast(pl.Int64, strict=False)
    if dtype.is_float():
        return pl.when(pl.col(col).is_finite()).then(pl.col(col)).cast(pl.Int64, strict=False)
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return pl.col(col).cast(pl.Datetime("us")).dt.epoch("s")
    if dtype == pl.String:
        if fmt is not None:
            return pl.col(col).str.strip_chars().str.to_datetime(fmt, strict=False).dt.epoch("s")
        return pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)
    raise DataError(f"timestamp column {col!r} has type {dtype}; expected integers, dates or text", path=str(path))


Check = tuple[pl.Expr, Callable[[dict[str, Any]], str]]  # (row is bad, what is wrong with a row)


def _drop_bad(
    frame: pl.DataFrame,
    checks: list[Check],
    path: Path,
    where: str,
    skip_bad_rows: bool,
    report: ReadReport | None,
) -> pl.DataFrame:
    """Rows failing a check raise (naming the line, or the row of a Parquet file) or are skipped and counted."""
    if not checks:
        return frame
    flags = frame.select([expr.fill_null(True).alias(f"_bad{i}") for i, (expr, _) in enumerate(checks)])
    bad = flags.select(pl.any_horizontal(pl.all()).alias("b"))["b"]
    if not bad.any():
        return frame
    lines = frame["_line"].filter(bad).to_list()
    if not skip_bad_rows:
        first = int(bad.arg_true()[0])
        i = next(i for i in range(len(checks)) if flags[f"_bad{i}"][first])
        reason = checks[i][1](frame.row(first, named=True))
        tail = " (use --skip-bad-rows to skip such rows)"
        if where == "row":  # Parquet: no lines, name the row
            raise DataError(f"row {lines[0]}: {reason}{tail}", path=str(path))
        raise DataError(reason + tail, path=str(path), line=int(lines[0]))
    if report is not None:
        report.add(path, [int(x) for x in lines])
    return frame.filter(~bad)


def read_events(cfg: TabularConfig, paths: list[Path], *, skip_bad_rows: bool, report: ReadReport | None) -> pl.DataFrame:
    names = {"user_id": cfg.user_col, "item_id": cfg.item_col}
    if cfg.timestamp_col:
        names["timestamp"] = cfg.timestamp_col
    if cfg.rating_col:
        names["rating"] = cfg.rating_col
    frames = []
    for path in paths:
        checks: list[Check] = []
        if _is_parquet(path, cfg.format):
            frame = _read_parquet(path, list(dict.fromkeys(names.values())))
            frame = _id_columns(frame, [cfg.user_col, cfg.item_col], path)
            checks.append((_blank(cfg.user_col) | _blank(cfg.item_col), lambda row: "empty user or item id"))
            if cfg.timestamp_col:
                checks.append((pl.col(cfg.timestamp_col).is_null(), lambda row: "empty timestamp"))
            if cfg.rating_col:
                r = cfg.rating_col
                if not (frame.schema[r].is_numeric() or frame.schema[r] == pl.String):
                    raise DataError(f"rating column {r!r} has type {frame.schema[r]}; expected numbers", path=str(path))
                value = pl.col(r).cast(pl.Utf8).str.strip_chars() if frame.schema[r] == pl.String else pl.col(r)
                rating = value.cast(pl.Float32, strict=False)
                frame = frame.with_columns(pl.when(rating.is_finite()).then(rating).alias("_rating"))
                checks.append((
                    pl.col(r).is_not_null() & pl.col("_rating").is_null(),
                    lambda row, r=r: f"rating '{show_value(row[r])}' is not a finite number",
                ))  # fmt: skip
            where = "row"
        else:
            columns: dict[str, pl.DataType | type[pl.DataType]] = {cfg.user_col: pl.Utf8, cfg.item_col: pl.Utf8}
            if cfg.timestamp_col:
                columns[cfg.timestamp_col] = pl.Int64 if cfg.timestamp_format is None else pl.Utf8
            if cfg.rating_col:
                columns[cfg.rating_col] = pl.Float32
            required = [cfg.user_col, cfg.item_col] + ([cfg.timestamp_col] if cfg.timestamp_col else [])
            frame = read_delimited(
                path, columns, separator=cfg.separator, has_header=cfg.has_header, encoding=cfg.encoding,
                required=required, skip_bad_rows=skip_bad_rows, report=report, with_line=True,
            )  # fmt: skip
            if cfg.rating_col:
                frame = frame.with_columns(pl.col(cfg.rating_col).alias("_rating"))
            where = "line"
        if cfg.timestamp_col:
            col = cfg.timestamp_col
            frame = frame.with_columns(_epoch_expr(frame, col, cfg.timestamp_format, path).alias("_ts"))
            hint = (
                f"format {cfg.timestamp_format!r}"
                if cfg.timestamp_format
                else "integer Unix seconds (set data.tabular.timestamp_format for text dates)"
            )
            checks.append((
                pl.col("_ts").is_null() & pl.col(col).is_not_null(),
                lambda row, col=col, hint=hint: f"timestamp '{show_value(row[col])}' is not {hint}",
            ))  # fmt: skip
        frame = _drop_bad(frame, checks, path, where, skip_bad_rows, report)
        if cfg.timestamp_col:
            frame = frame.with_columns(pl.col("_ts").alias(cfg.timestamp_col))
        if cfg.rating_col:
            frame = frame.with_columns(pl.col("_rating").alias(cfg.rating_col))
        frames.append(frame.select([pl.col(src).alias(dst) for dst, src in names.items()]))
    events = pl.concat(frames, how="vertical_relaxed")
    if not cfg.timestamp_col:
        events = events.with_columns(pl.int_range(0, events.height, dtype=pl.Int64).alias("timestamp"))
    return events


def _text_column(src: str, dtype: pl.DataType, as_list: bool, list_separator: str, path: Path) -> pl.Expr:
    """A catalogue source column as text (or a list of texts for genres / tags); nested lists,
    structs and binary data are refused by name."""
    col = pl.col(src)
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if inner is None or not (inner == pl.String or inner.is_numeric() or inner == pl.Boolean):
            raise DataError(f"column {src!r} has type {dtype}; expected text or a list of texts", path=str(path))
        col = col.list.eval(pl.element().cast(pl.Utf8))
        return col if as_list else col.list.join(" ")
    scalar = dtype == pl.String or dtype.is_numeric() or dtype == pl.Boolean
    if not (scalar or isinstance(dtype, (pl.Categorical, pl.Enum))):
        raise DataError(f"column {src!r} has type {dtype}; expected text or a list of texts", path=str(path))
    col = col.cast(pl.Utf8)
    if as_list:
        col = col.str.split(list_separator).list.eval(pl.element().str.strip_chars()).list.filter(pl.element() != "")
    return col


def read_catalogue(cfg: TabularConfig, path: Path, *, skip_bad_rows: bool, report: ReadReport | None) -> pl.DataFrame:
    source = {"item_id": cfg.catalogue_item_col}
    if cfg.title_col:
        source["title"] = cfg.title_col
    source.update(cfg.text_cols)
    if _is_parquet(path, cfg.format if cfg.format != "auto" else "auto"):
        frame = _read_parquet(path, list(dict.fromkeys(source.values())))
        frame = _id_columns(frame, [cfg.catalogue_item_col], path)
        no_id: Check = (_blank(cfg.catalogue_item_col), lambda row: "empty item id")
        frame = _drop_bad(frame, [no_id], path, "row", skip_bad_rows, report)
    else:
        frame = read_delimited(
            path, {c: pl.Utf8 for c in dict.fromkeys(source.values())}, separator=cfg.separator,
            has_header=cfg.has_header, encoding=cfg.encoding, required=[cfg.catalogue_item_col],
            skip_bad_rows=skip_bad_rows, report=report,
        )  # fmt: skip
    exprs = [
        _text_column(src, frame.schema[src], dst in _LIST_FIELDS, cfg.list_separator, path).alias(dst)
        for dst, src in source.items()
    ]
    return frame.select(exprs)


def load_tabular(
    directory: str | Path | None = None,
    *,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
    options: dict | TabularConfig | None = None,
) -> Dataset:
    """Load events (and a catalogue) described by ``options`` (a :class:`TabularConfig`)."""
    if options is None or (isinstance(options, dict) and not options):
        raise ConfigError("dataset 'tabular' needs a [data.tabular] section with at least `paths`")
    try:
        cfg = options if isinstance(options, TabularConfig) else TabularConfig.model_validate(options)
    except Exception as exc:  # pydantic.ValidationError
        raise ConfigError(f"config section [data.tabular]: {exc}") from None
    base = Path(directory) if directory is not None else Path.cwd()
    paths = _expand(cfg.paths, base)
    events = read_events(cfg, paths, skip_bad_rows=skip_bad_rows, report=report)
    checksums = {p.name: file_sha256(p) for p in paths}
    if cfg.catalogue:
        cat_path = _expand([cfg.catalogue], base)[0]
        catalogue = read_catalogue(cfg, cat_path, skip_bad_rows=skip_bad_rows, report=report)
        checksums[cat_path.name] = file_sha256(cat_path)
    else:
        catalogue = events.select("item_id").unique(maintain_order=True)
    return Dataset(
        name=cfg.name,
        interactions=Interactions.from_frame(events),
        catalogue=Catalogue.from_frame(catalogue),
        checksums=checksums,
        source=str(base),
        domain=cfg.domain,
    )
