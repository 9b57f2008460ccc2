"""Preprocessing: dedup of repeated events, implicit-feedback threshold, k-core filtering.

Every step appends a line to the protocol card's ``filtering`` list and refuses to return an
empty dataset: the error names the step that emptied it.
"""

from __future__ import annotations

from typing import Literal

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


def dedup(frame: pl.DataFrame, keep: Literal["first", "last", "none"]) -> pl.DataFrame:
    if keep == "none":
        return frame
    return sort_events(frame).unique(subset=["user_id", "item_id"], keep=keep, maintain_order=True)


def k_core(frame: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Iterate user/item count filters until both hold (a fixed point)."""
    while True:
        before = frame.height
        if min_item > 0:
            frame = frame.filter(pl.len().over("item_id") >= min_item)
        if min_user > 0:
            frame = frame.filter(pl.len().over("user_id") >= min_user)
        if frame.height == before or frame.height == 0:
            return frame


def preprocess(interactions: Interactions, config: PreprocessConfig) -> tuple[Interactions, list[str]]:
    """Apply the configured filters in a fixed order; returns the data and the card lines."""
    frame = _check(interactions.frame, "input")
    steps: list[str] = []
    if config.dedup != "none":
        frame = _check(dedup(frame, config.dedup), f"dedup(keep={config.dedup})")
        steps.append(f"dedup repeated (user, item) events, keep {config.dedup}")
    if config.min_rating is not None:
        frame = _check(frame.filter(pl.col("rating") >= config.min_rating), f"min_rating={config.min_rating}")
        steps.append(f"implicit feedback: rating >= {config.min_rating}")
    if config.min_user_interactions or config.min_item_interactions:
        name = f"k-core(user>={config.min_user_interactions}, item>={config.min_item_interactions})"
        frame = _check(k_core(frame, config.min_user_interactions, config.min_item_interactions), name)
        steps.append(name)
    return Interactions(sort_events(frame)), steps
