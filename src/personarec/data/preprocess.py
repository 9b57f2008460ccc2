"""Preprocessing: dedup of repeated events, implicit-feedback threshold, k-core filtering.

Every step appends a line to the protocol card's ``filtering`` list and refuses to return an
empty dataset: the error names the step that emptied it. Dedup is on by default and can alter a
published benchmark's split (repeat purchases), so when it removes anything its line says how
much it changed: events removed, users/items the k-core then lost, and users whose last or
second-to-last event (the leave-one-out test / validation target) differs from the undeduped data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from personarec.data.records import Interactions
from personarec.errors import EmptyDatasetError

log = logging.getLogger("personarec.data.preprocess")


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


def _dedup_sorted(frame: pl.DataFrame, keep: Literal["first", "last"]) -> pl.DataFrame:
    """:func:`dedup` on a frame already in :func:`sort_events` order."""
    key = _pair_key(frame)
    mask = frame.select((key.is_last_distinct() if keep == "last" else key.is_first_distinct()).alias("m"))["m"]
    return frame if mask.all() else frame.filter(mask)  # no copy when there is nothing to drop


def dedup(frame: pl.DataFrame, keep: Literal["first", "last", "none"]) -> pl.DataFrame:
    """Keep the chronologically first or last of repeated (user, item) events; sorted output."""
    frame = sort_events(frame)
    return frame if keep == "none" else _dedup_sorted(frame, keep)


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


@dataclass
class Preprocessed:
    """What :func:`preprocess_frame_report` returns: the filtered frame, the card lines and, when
    dedup is on, the counts of what it changed (keys as in :meth:`DedupChanges.as_dict`)."""

    frame: pl.DataFrame
    steps: list[str]
    changes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DedupChanges:
    """How the split differs because dedup ran (all zero: it found no repeated events)."""

    removed_events: int = 0
    dropped_users: int = 0  # kept by the later filters without dedup, dropped with it
    dropped_items: int = 0
    changed_valid_targets: int = 0  # users whose second-to-last event (item) differs
    changed_test_targets: int = 0  # users whose last event (item) differs

    def as_dict(self) -> dict[str, int]:
        return {
            "dedup_removed_events": self.removed_events,
            "dedup_dropped_users": self.dropped_users,
            "dedup_dropped_items": self.dropped_items,
            "dedup_changed_valid_targets": self.changed_valid_targets,
            "dedup_changed_test_targets": self.changed_test_targets,
        }

    def line(self, keep: str) -> str:
        head = f"dedup repeated (user, item) events, keep {keep}"
        if not self.removed_events:
            return head + ": no repeated events"
        return (
            f"{head}: removed {self.removed_events} events; the later filters then dropped {self.dropped_users} "
            f"users and {self.dropped_items} items they keep without dedup; last / second-to-last event "
            f"(test / validation target) differs for {self.changed_test_targets} / "
            f"{self.changed_valid_targets} users"
        )


def _last_two(frame: pl.DataFrame) -> pl.DataFrame:
    """Per user with >= 3 events (those leave-one-out gives targets): last and second-to-last item.
    ``frame`` is sorted by (user, time, seq)."""
    return (
        frame.group_by("user_id", maintain_order=True)
        .agg(
            pl.col("item_id").last().alias("test"),
            pl.col("item_id").slice(-2, 1).first().alias("valid"),
            pl.len().alias("n"),
        )
        .filter(pl.col("n") >= 3)
        .drop("n")
    )


def _after_dedup(frame: pl.DataFrame, config: PreprocessConfig) -> pl.DataFrame:
    """The filters that follow dedup (no checks, no card lines): to replay them without dedup."""
    if config.min_rating is not None:
        frame = frame.filter(pl.col("rating").fill_null(float("-inf")) >= config.min_rating)
    if config.min_user_interactions or config.min_item_interactions:
        frame = k_core(frame, config.min_user_interactions, config.min_item_interactions)
    return frame


def dedup_changes(raw: pl.DataFrame, final: pl.DataFrame, removed: int, config: PreprocessConfig) -> DedupChanges:
    """Compare the preprocessed data with what the same filters give without dedup.

    ``raw``: the sorted input before dedup; ``final``: the output with dedup. Costs one more pass
    of the later filters and two group-bys, and runs only when dedup removed something. The k-core
    is monotone (fewer events never keep more users), so the differences are one-sided.
    """
    alt = _after_dedup(raw, config)

    def lost(col: str) -> int:  # ids the filters keep without dedup but not with it
        kept = final.select(pl.col(col).unique())
        return alt.select(pl.col(col).unique()).join(kept, on=col, how="anti").height

    dropped_users, dropped_items = lost("user_id"), lost("item_id")
    both = _last_two(final).join(_last_two(alt), on="user_id", how="inner", suffix="_raw")
    return DedupChanges(
        removed_events=removed,
        dropped_users=dropped_users,
        dropped_items=dropped_items,
        changed_valid_targets=int((both["valid"] != both["valid_raw"]).sum()),
        changed_test_targets=int((both["test"] != both["test_raw"]).sum()),
    )


def preprocess_frame_report(frame: pl.DataFrame, config: PreprocessConfig) -> Preprocessed:
    """The filters on an interactions-shaped frame (string or integer-coded ids), in a fixed order.

    Returns the frame sorted by (user, timestamp, seq), the protocol-card lines and the dedup
    change counts; logs a warning when dedup changes any leave-one-out target.
    """
    frame = sort_events(_check(frame, "input"))
    steps: list[str] = []
    raw: pl.DataFrame | None = None
    removed = 0
    if config.dedup != "none":
        deduped = _check(_dedup_sorted(frame, config.dedup), f"dedup(keep={config.dedup})")
        removed = frame.height - deduped.height
        if removed:
            raw = frame  # kept (shares buffers with the input) to measure what dedup changed
        frame = deduped
        del deduped
        steps.append("")  # filled in below, once the later filters have run
    if config.min_rating is not None:
        frame = _check(frame.filter(pl.col("rating").fill_null(float("-inf")) >= config.min_rating), f"min_rating={config.min_rating}")
        steps.append(f"implicit feedback: rating >= {config.min_rating}")
    if config.min_user_interactions or config.min_item_interactions:
        name = f"k-core(user>={config.min_user_interactions}, item>={config.min_item_interactions})"
        frame = _check(k_core(frame, config.min_user_interactions, config.min_item_interactions), name)
        steps.append(name)
    if config.dedup == "none":
        return Preprocessed(frame, steps)
    changes = DedupChanges() if raw is None else dedup_changes(raw, frame, removed, config)
    steps[0] = changes.line(config.dedup)
    if changes.changed_valid_targets or changes.changed_test_targets or changes.dropped_users:
        log.warning("%s (set data.preprocess.dedup = \"none\" to keep repeated events)", steps[0])
    return Preprocessed(frame, steps, changes.as_dict())


def preprocess_frame(frame: pl.DataFrame, config: PreprocessConfig) -> tuple[pl.DataFrame, list[str]]:
    """:func:`preprocess_frame_report` without the change counts (they are in the card lines)."""
    out = preprocess_frame_report(frame, config)
    return out.frame, out.steps


def preprocess(interactions: Interactions, config: PreprocessConfig) -> tuple[Interactions, list[str]]:
    """Apply the configured filters in a fixed order; returns the data and the card lines."""
    coded, user_vocab, item_vocab = encode_ids(_check(interactions.frame, "input"))
    frame, steps = preprocess_frame(coded, config)
    return Interactions(decode_ids(frame, user_vocab, item_vocab)), steps
