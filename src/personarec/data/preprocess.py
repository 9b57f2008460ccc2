"""Preprocessing: dedup of repeated events, implicit-feedback threshold, k-core filtering.

Every step appends a line to the protocol card's ``filtering`` list and refuses to return an
empty dataset: the error names the step that emptied it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from personarec.data.records import Interactions
from personarec.errors import EmptyDatasetError


class PreprocessConfig(BaseModel):
    """How raw events become training data."""

    dedup: Literal["first", "last", "none"] = Field(
        "last", description="keep the first or last of repeated (user, item) events"
    )
    min_rating: float | None = Field(
        None, description="implicit feedback: keep events with rating >= this (None keeps all)"
    )
    min_user_interactions: int = Field(5, ge=0, description="k-core: users with fewer events are dropped")
    min_item_interactions: int = Field(0, ge=0, description="k-core: items with fewer events are dropped")


def _check(frame: pl.DataFrame, step: str) -> pl.DataFrame:
    if frame.height == 0:
        raise EmptyDatasetError(f"no interactions left after filter '{step}'; relax it in the config")
    return frame


def sort_events(frame: pl.DataFrame) -> pl.DataFrame:
    """The one chronological order used everywhere: (user, timestamp, original line order)."""
    return frame.sort(["user_id", "timestamp", "seq"])


def encode_ids(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """Replace the string ids by dense ``UInt32`` codes in lexical id order.

    Returns the coded frame (``timestamp``/``rating``/``seq`` share the input's buffers) and the
    two vocabularies (code -> external id). 25M string ids become 200 MB of integers, and every
    later sort, dedup and k-core pass runs on integers.
    """
    user_vocab = frame["user_id"].unique().sort()
    item_vocab = frame["item_id"].unique().sort()
    coded = frame.select(
        user_vocab.search_sorted(frame["user_id"]).cast(pl.UInt32).alias("user_id"),
        item_vocab.search_sorted(frame["item_id"]).cast(pl.UInt32).alias("item_id"),
        "timestamp",
        "rating",
        "seq",
    )
    return coded, user_vocab, item_vocab


def decode_ids(frame: pl.DataFrame, user_vocab: pl.Series, item_vocab: pl.Series) -> pl.DataFrame:
    return frame.with_columns(
        user_vocab.gather(frame["user_id"]).alias("user_id"),
        item_vocab.gather(frame["item_id"]).alias("item_id"),
    )


def _is_coded(frame: pl.DataFrame) -> bool:
    """Ids are the dense UInt32 codes of :func:`encode_ids` (enables the integer fast paths)."""
    return frame.schema["user_id"] == pl.UInt32 and frame.schema["item_id"] == pl.UInt32


def _pair_key(frame: pl.DataFrame) -> pl.Expr:
    if _is_coded(frame):
        return pl.col("user_id").cast(pl.UInt64) * (1 << 32) + pl.col("item_id").cast(pl.UInt64)
    return pl.struct("user_id", "item_id")


def dedup(frame: pl.DataFrame, keep: Literal["first", "last", "none"]) -> pl.DataFrame:
    """Keep the chronologically first or last of repeated (user, item) events; sorted output."""
    frame = sort_events(frame)
    if keep == "none":
        return frame
    key = _pair_key(frame)
    mask = frame.select((key.is_last_distinct() if keep == "last" else key.is_first_distinct()).alias("m"))["m"]
    return frame if mask.all() else frame.filter(mask)  # no copy when there is nothing to drop


def k_core(frame: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Iterate user/item count filters until both hold (a fixed point).

    With integer-coded ids (:func:`encode_ids`) the counting runs on numpy ``bincount`` over a boolean mask and the
    frame is filtered once at the end, so no pass copies the table.
    """
    if not _is_coded(frame):
        while True:
            before = frame.height
            if min_item > 0:
                frame = frame.filter(pl.len().over("item_id") >= min_item)
            if min_user > 0:
                frame = frame.filter(pl.len().over("user_id") >= min_user)
            if frame.height == before or frame.height == 0:
                return frame
    users = frame["user_id"].to_numpy()
    items = frame["item_id"].to_numpy()
    keep = np.ones(frame.height, dtype=bool)
    while True:
        before = int(keep.sum())
        if min_item > 0:
            counts = np.bincount(items[keep], minlength=int(items.max()) + 1 if len(items) else 0)
            keep &= counts[items] >= min_item
        if min_user > 0:
            counts = np.bincount(users[keep], minlength=int(users.max()) + 1 if len(users) else 0)
            keep &= counts[users] >= min_user
        after = int(keep.sum())
        if after == before or after == 0:
            break
    return frame if after == frame.height else frame.filter(pl.Series(keep))


def preprocess_frame(frame: pl.DataFrame, config: PreprocessConfig) -> tuple[pl.DataFrame, list[str]]:
    """The filters on an interactions-shaped frame (string or integer-coded ids), in a fixed order.

    Returns the frame sorted by (user, timestamp, seq) and the protocol-card lines.
    """
    frame = _check(frame, "input")
    steps: list[str] = []
    frame = _check(dedup(frame, config.dedup), f"dedup(keep={config.dedup})")
    if config.dedup != "none":
        steps.append(f"dedup repeated (user, item) events, keep {config.dedup}")
    if config.min_rating is not None:
        frame = _check(frame.filter(pl.col("rating").fill_null(float("-inf")) >= config.min_rating), f"min_rating={config.min_rating}")
        steps.append(f"implicit feedback: rating >= {config.min_rating}")
    if config.min_user_interactions or config.min_item_interactions:
        name = f"k-core(user>={config.min_user_interactions}, item>={config.min_item_interactions})"
        frame = _check(k_core(frame, config.min_user_interactions, config.min_item_interactions), name)
        steps.append(name)
    return frame, steps


def preprocess(interactions: Interactions, config: PreprocessConfig) -> tuple[Interactions, list[str]]:
    """Apply the configured filters in a fixed order; returns the data and the card lines."""
    coded, user_vocab, item_vocab = encode_ids(_check(interactions.frame, "input"))
    frame, steps = preprocess_frame(coded, config)
    return Interactions(decode_ids(frame, user_vocab, item_vocab)), steps
