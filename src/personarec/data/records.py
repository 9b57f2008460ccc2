"""The two record types every stage shares: interactions and the item catalogue.

Both are columnar (polars) so that a 25M-row history never becomes 25M Python objects.
External ids are strings everywhere (MovieLens ints and Amazon ASINs alike); models work on
contiguous integer indices that :mod:`personarec.data.splits` assigns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from pydantic import BaseModel, Field

from personarec.errors import DataError

#: Columns of an interactions frame. ``seq`` is the original line order, the documented
#: tie-break when two events of a user share a timestamp (see the protocol card).
INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(),
    "item_id": pl.Utf8(),
    "timestamp": pl.Int64(),
    "rating": pl.Float32(),
    "seq": pl.Int64(),
}

#: Columns of a catalogue frame. List columns hold genres / tags; the rest may be null.
CATALOGUE_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.Utf8(),
    "title": pl.Utf8(),
    "genres": pl.List(pl.Utf8()),
    "tags": pl.List(pl.Utf8()),
    "category": pl.Utf8(),
    "brand": pl.Utf8(),
    "description": pl.Utf8(),
}


class Event(BaseModel):
    """One interaction as it arrives over the API or from a single row."""

    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    timestamp: int = Field(ge=0, description="Unix seconds")
    rating: float | None = None


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    missing = [c for c in schema if c not in frame.columns and c in ("user_id", "item_id", "timestamp")]
    if what == "catalogue" and "item_id" not in frame.columns:
        missing = ["item_id"]
    if missing:
        raise DataError(f"{what}: missing column(s) {missing}; columns found: {frame.columns}")
    exprs = []
    for name, dtype in schema.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


@dataclass(frozen=True)
class Interactions:
    """A columnar table of (user, item, timestamp, rating, seq) events."""

    frame: pl.DataFrame

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> Interactions:
        frame = _conform(frame, INTERACTION_SCHEMA, "interactions")
        if frame["seq"].null_count() == frame.height:
            frame = frame.with_columns(pl.int_range(0, frame.height, dtype=pl.Int64).alias("seq"))
        return cls(frame)

    def __len__(self) -> int:
        return self.frame.height

    @property
    def n_users(self) -> int:
        return self.frame["user_id"].n_unique()

    @property
    def n_items(self) -> int:
        return self.frame["item_id"].n_unique()


@dataclass(frozen=True)
class Catalogue:
    """Item metadata: one row per item, text fields used for embeddings and prompts."""

    frame: pl.DataFrame

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> Catalogue:
        frame = _conform(frame, CATALOGUE_SCHEMA, "catalogue")
        frame = frame.with_columns(
            pl.col("title").fill_null(pl.col("item_id")),
            pl.col("genres").fill_null(pl.lit([], dtype=pl.List(pl.Utf8()))),
            pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.Utf8()))),
        ).unique(subset="item_id", keep="first", maintain_order=True)
        return cls(frame)

    def __len__(self) -> int:
        return self.frame.height

    def texts(self) -> list[str]:
        """The text embedded for each item: title, then labelled non-empty fields."""
        f = self.frame
        parts = [pl.col("title")]
        parts.append(
            pl.when(pl.col("genres").list.len() > 0)
            .then(pl.lit("Genres: ") + pl.col("genres").list.join(", "))
            .otherwise(None)
        )
        parts.append(
            pl.when(pl.col("tags").list.len() > 0)
            .then(pl.lit("Tags: ") + pl.col("tags").list.head(10).list.join(", "))
            .otherwise(None)
        )
        for name in ("category", "brand"):
            parts.append(pl.when(pl.col(name).is_not_null()).then(pl.lit(f"{name.title()}: ") + pl.col(name)))
        parts.append(pl.col("description").str.slice(0, 300))
        text = f.select(pl.concat_str(parts, separator=". ", ignore_nulls=True).alias("text"))["text"]
        return text.to_list()

    def restrict(self, item_ids: list[str] | pl.Series) -> Catalogue:
        """Rows for exactly these ids, in this order; ids missing from the catalogue get a bare row."""
        order = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.Utf8)})
        joined = order.join(self.frame, on="item_id", how="left", maintain_order="left")
        return Catalogue.from_frame(joined)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: events, catalogue and the checksums of the files they came from."""

    name: str
    interactions: Interactions
    catalogue: Catalogue
    checksums: dict[str, str] = field(default_factory=dict)
    source: str = ""
    #: what the items are, in words a prompt can use ("movie", "office product"); set by the loader
    #: from what it knows, None when it cannot tell. Carried to ``Split.domain``.
    domain: str | None = None

    def summary(self) -> dict[str, int | str]:
        return {
            "dataset": self.name,
            "interactions": len(self.interactions),
            "users": self.interactions.n_users,
            "items": self.interactions.n_items,
            "catalogue_items": len(self.catalogue),
        }
