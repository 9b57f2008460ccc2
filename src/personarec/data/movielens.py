"""MovieLens loaders in the official file formats (100K, 1M, latest-small, 20M/25M/32M).

Everything is read column-wise with polars; bad rows are found vectorised and reported with
their file and line number (see :mod:`personarec.data.parsing`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from personarec.data.parsing import ReadReport, file_sha256, read_delimited
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import DataError

DOMAIN = "movie"
#: an event needs all four (the item id too: a blank one is a malformed row, not a null id)
EVENT_FIELDS = ["user_id", "item_id", "rating", "timestamp"]
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]  # fmt: skip


def _require(directory: Path, *names: str) -> list[Path]:
    paths = [directory / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise DataError(f"missing file(s) {missing}; files found in {directory}: {found}")
    return paths


def load_ml100k(directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> Dataset:
    """MovieLens 100K: ``u.data`` (tab-separated) and ``u.item`` (``|``-separated, latin-1)."""
    directory = Path(directory)
    data_path, item_path = _require(directory, "u.data", "u.item")
    ratings = read_delimited(
        data_path,
        columns={"user_id": pl.Utf8, "item_id": pl.Utf8, "rating": pl.Float32, "timestamp": pl.Int64},
        separator="\t",
        has_header=False,
        required=EVENT_FIELDS,
        skip_bad_rows=skip_bad_rows,
        report=report,
    )
    item_columns: dict[str, type[pl.DataType] | pl.DataType] = {
        "item_id": pl.Utf8, "title": pl.Utf8, "release_date": pl.Utf8, "video_release_date": pl.Utf8,
        "imdb_url": pl.Utf8,
    }  # fmt: skip
    item_columns.update({f"g{i}": pl.Int8 for i in range(len(ML100K_GENRES))})
    items = read_delimited(
        item_path,
        columns=item_columns,
        separator="|",
        has_header=False,
        encoding="latin-1",
        skip_bad_rows=skip_bad_rows,
        report=report,
    )
    flags = pl.concat_list([pl.when(pl.col(f"g{i}") == 1).then(pl.lit(g)) for i, g in enumerate(ML100K_GENRES)])
    catalogue = items.select(
        "item_id", "title", flags.list.drop_nulls().alias("genres")
    )
    return Dataset(
        name="ml-100k",
        interactions=Interactions.from_frame(ratings),
        catalogue=Catalogue.from_frame(catalogue),
        checksums={p.name: file_sha256(p) for p in (data_path, item_path)},
        source=str(directory),
        domain=DOMAIN,
    )


def read_ml1m_ratings(
    path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> pl.DataFrame:
    """``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``, no header."""
    return read_delimited(
        path,
        columns={"user_id": pl.Utf8, "item_id": pl.Utf8, "rating": pl.Float32, "timestamp": pl.Int64},
        separator="::",
        has_header=False,
        encoding="latin-1",
        required=EVENT_FIELDS,
        skip_bad_rows=skip_bad_rows,
        report=report,
    )


def read_ml1m_movies(
    path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> pl.DataFrame:
    """``movies.dat``: ``MovieID::Title::Genres`` (genres ``|``-separated), latin-1."""
    movies = read_delimited(
        path,
        columns={"item_id": pl.Utf8, "title": pl.Utf8, "genres": pl.Utf8},
        separator="::",
        has_header=False,
        encoding="latin-1",
        required=["item_id", "title"],
        skip_bad_rows=skip_bad_rows,
        report=report,
    )
    return movies.with_columns(pl.col("genres").fill_null("").str.split("|").list.filter(pl.element() != ""))


def load_ml1m(directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> Dataset:
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat`` (``::``-separated, latin-1)."""
    directory = Path(directory)
    ratings_path, movies_path = _require(directory, "ratings.dat", "movies.dat")
    ratings = read_ml1m_ratings(ratings_path, skip_bad_rows=skip_bad_rows, report=report)
    movies = read_ml1m_movies(movies_path, skip_bad_rows=skip_bad_rows, report=report)
    return Dataset(
        name="ml-1m",
        interactions=Interactions.from_frame(ratings),
        catalogue=Catalogue.from_frame(movies),
        checksums={p.name: file_sha256(p) for p in (ratings_path, movies_path)},
        source=str(directory),
        domain=DOMAIN,
    )


def _load_csv_release(
    name: str, directory: Path, *, skip_bad_rows: bool, report: ReadReport | None, with_tags: bool = True
) -> Dataset:
    """The CSV releases (latest-small, 20M, 25M, 32M) share one format."""
    ratings_path, movies_path = _require(directory, "ratings.csv", "movies.csv")
    ratings = read_delimited(
        ratings_path,
        columns={"userId": pl.Utf8, "movieId": pl.Utf8, "rating": pl.Float32, "timestamp": pl.Int64},
        separator=",",
        has_header=True,
        required=["userId", "movieId", "rating", "timestamp"],
        skip_bad_rows=skip_bad_rows,
        report=report,
    ).rename({"userId": "user_id", "movieId": "item_id"})
    movies = read_delimited(
        movies_path,
        columns={"movieId": pl.Utf8, "title": pl.Utf8, "genres": pl.Utf8},
        separator=",",
        has_header=True,
        skip_bad_rows=skip_bad_rows,
        report=report,
    )
    catalogue = movies.select(
        pl.col("movieId").alias("item_id"),
        "title",
        pl.col("genres").str.split("|").list.filter(pl.element() != "(no genres listed)").alias("genres"),
    )
    checksums = {p.name: file_sha256(p) for p in (ratings_path, movies_path)}
    tags_path = directory / "tags.csv"
    if with_tags and tags_path.exists():
        tags = read_delimited(
            tags_path,
            columns={"userId": pl.Utf8, "movieId": pl.Utf8, "tag": pl.Utf8, "timestamp": pl.Int64},
            separator=",",
            has_header=True,
            required=["userId", "movieId", "timestamp"],
            skip_bad_rows=skip_bad_rows,
            report=report,
        )
        top_tags = (
            tags.with_columns(pl.col("tag").str.to_lowercase().str.strip_chars())
            .filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
            .group_by("movieId", "tag")
            .len()
            .sort(["movieId", "len", "tag"], descending=[False, True, False])
            .group_by("movieId", maintain_order=True)
            .agg(pl.col("tag").head(10).alias("tags"))
            .rename({"movieId": "item_id"})
        )
        catalogue = catalogue.join(top_tags, on="item_id", how="left")
        checksums[tags_path.name] = file_sha256(tags_path)
    return Dataset(
        name=name,
        interactions=Interactions.from_frame(ratings),
        catalogue=Catalogue.from_frame(catalogue),
        checksums=checksums,
        source=str(directory),
        domain=DOMAIN,
    )


def load_ml_latest_small(directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> Dataset:
    return _load_csv_release("ml-latest-small", Path(directory), skip_bad_rows=skip_bad_rows, report=report)


def load_ml_csv_release(
    name: str, directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> Dataset:
    """ML-20M / 25M / 32M: same CSV schema as latest-small, tags read only for their top 10 per movie."""
    return _load_csv_release(name, Path(directory), skip_bad_rows=skip_bad_rows, report=report)
