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
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from personarec.data.parsing import ReadReport, file_sha256, read_delimited
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import ConfigError, DataError

CatalogueField = Literal["genres", "tags", "category", "brand", "description"]
_LIST_FIELDS = ("genres", "tags")


class TabularConfig(BaseModel):
    """Column mapping for a generic event table (CSV or Parquet) and its item catalogue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("tabular", description="dataset name shown on the protocol card")
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
    found = list(pl.read_parquet_schema(path))
    missing = [c for c in columns if c not in found]
    if missing:
        raise DataError(f"missing column(s) {missing}; columns found: {found}", path=str(path))
    return pl.read_parquet(path, columns=columns).with_row_index("_line", offset=1)


def _to_epoch_seconds(frame: pl.DataFrame, col: str, fmt: str | None, path: Path, where: str) -> pl.DataFrame:
    """Integers pass; datetimes/dates become Unix seconds; text is parsed with ``fmt``."""
    dtype = frame.schema[col]
    if dtype.is_integer():
        expr = pl.col(col).cast(pl.Int64)
    elif dtype.is_float():
        expr = pl.col(col).cast(pl.Int64, strict=False)
    elif dtype == pl.Date or isinstance(dtype, pl.Datetime):
        expr = pl.col(col).cast(pl.Datetime("us")).dt.epoch("s")
    elif fmt is not None:
        expr = pl.col(col).str.strip_chars().str.to_datetime(fmt, strict=False).dt.epoch("s")
    else:
        expr = pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)
    out = frame.with_columns(expr.alias("_ts"))
    bad = out.filter(pl.col("_ts").is_null() & pl.col(col).is_not_null())
    if bad.height:
        row = bad.row(0, named=True)
        hint = f"format {fmt!r}" if fmt else "integer Unix seconds (set data.tabular.timestamp_format for text dates)"
        if where == "row":  # Parquet: no lines, name the row
            raise DataError(f"row {row['_line']}: timestamp {row[col]!r} is not {hint}", path=str(path))
        raise DataError(f"timestamp {row[col]!r} is not {hint}", path=str(path), line=row["_line"])
    return out.with_columns(pl.col("_ts").alias(col)).drop("_ts")


def read_events(cfg: TabularConfig, paths: list[Path], *, skip_bad_rows: bool, report: ReadReport | None) -> pl.DataFrame:
    names = {"user_id": cfg.user_col, "item_id": cfg.item_col}
    if cfg.timestamp_col:
        names["timestamp"] = cfg.timestamp_col
    if cfg.rating_col:
        names["rating"] = cfg.rating_col
    frames = []
    for path in paths:
        if _is_parquet(path, cfg.format):
            frame = _read_parquet(path, list(dict.fromkeys(names.values())))
            frame = frame.with_columns(pl.col(cfg.user_col).cast(pl.Utf8), pl.col(cfg.item_col).cast(pl.Utf8))
            empty = frame.filter(pl.col(cfg.user_col).is_null() | pl.col(cfg.item_col).is_null())
            if empty.height:
                if not skip_bad_rows:
                    raise DataError(
                        f"row {empty['_line'][0]}: empty user or item id (use --skip-bad-rows to skip such rows)",
                        path=str(path),
                    )
                if report is not None:
                    report.add(path, empty["_line"].to_list())
                frame = frame.filter(pl.col(cfg.user_col).is_not_null() & pl.col(cfg.item_col).is_not_null())
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
            where = "line"
        if cfg.timestamp_col:
            frame = _to_epoch_seconds(frame, cfg.timestamp_col, cfg.timestamp_format, path, where)
        frames.append(frame.select([pl.col(src).alias(dst) for dst, src in names.items()]))
    events = pl.concat(frames, how="vertical_relaxed")
    if not cfg.timestamp_col:
        events = events.with_columns(pl.int_range(0, events.height, dtype=pl.Int64).alias("timestamp"))
    return events


def read_catalogue(cfg: TabularConfig, path: Path, *, skip_bad_rows: bool, report: ReadReport | None) -> pl.DataFrame:
    source = {"item_id": cfg.catalogue_item_col}
    if cfg.title_col:
        source["title"] = cfg.title_col
    source.update(cfg.text_cols)
    if _is_parquet(path, cfg.format if cfg.format != "auto" else "auto"):
        frame = _read_parquet(path, list(dict.fromkeys(source.values())))
    else:
        frame = read_delimited(
            path, {c: pl.Utf8 for c in dict.fromkeys(source.values())}, separator=cfg.separator,
            has_header=cfg.has_header, encoding=cfg.encoding, required=[cfg.catalogue_item_col],
            skip_bad_rows=skip_bad_rows, report=report,
        )  # fmt: skip
    exprs = []
    for dst, src in source.items():
        col = pl.col(src)
        dtype = frame.schema[src]
        if dst in _LIST_FIELDS:
            if isinstance(dtype, pl.List):
                col = col.cast(pl.List(pl.Utf8))
            else:
                col = col.cast(pl.Utf8).str.split(cfg.list_separator).list.eval(pl.element().str.strip_chars()).list.filter(pl.element() != "")
        else:
            col = col.list.join(" ").cast(pl.Utf8) if isinstance(dtype, pl.List) else col.cast(pl.Utf8)
        exprs.append(col.alias(dst))
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
    )
