"""Train/validation/test splits with contiguous integer indices and a protocol card.

A :class:`Split` is what every model and metric consumes. Users and items get indices
``0..n-1``; ``split.user_ids[i]`` / ``split.item_ids[j]`` map back to external ids, and
``split.catalogue`` row ``j`` describes item ``j``.

Leave-one-out: per user, the last event is the test target, the second-to-last the validation
target, the rest is training. Temporal: two global time cut points; validation/test events of
items or users never seen in training are dropped (they cannot be ranked by any model here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, Field

from personarec.data.preprocess import PreprocessConfig, encode_ids, preprocess_frame_report
from personarec.data.protocol import ProtocolCard
from personarec.data.records import Catalogue, Dataset
from personarec.errors import EmptyDatasetError

Stage = Literal["train", "valid", "test"]


class SplitConfig(BaseModel):
    """Which split to make."""

    kind: Literal["leave-one-out", "temporal"] = "leave-one-out"
    valid_fraction: float = Field(0.1, gt=0, lt=0.5, description="temporal: share of events (by time) in valid")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="temporal: share of events (by time) in test")
    exclude_seen: bool = Field(True, description="mask a user's already-seen items when ranking")


@dataclass(frozen=True)
class UserSequences:
    """Per-user chronological item sequences in CSR form (no Python object per event)."""

    indptr: np.ndarray  # int64, length n_users + 1
    items: np.ndarray  # int32
    timestamps: np.ndarray  # int64

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def to_matrix(self, n_items: int) -> sp.csr_matrix:
        """Binary user x item matrix (duplicates collapse to 1)."""
        data = np.ones(len(self.items), dtype=np.float32)
        # copies: arrays that come from polars are read-only and scipy sorts indices in place
        m = sp.csr_matrix((data, self.items.copy(), self.indptr.copy()), shape=(self.n_users, n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    @classmethod
    def from_sequences(cls, sequences: list[np.ndarray]) -> UserSequences:
        """Row ``i`` = ``sequences[i]`` (timestamps unknown: zeros); e.g. live histories to score."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        indptr = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if sequences else np.zeros(0, np.int32)
        return cls(indptr=indptr, items=items.astype(np.int32, copy=False), timestamps=np.zeros(len(items), np.int64))

    @classmethod
    def at_rows(cls, user_idx: list[int], sequences: list[np.ndarray]) -> tuple[np.ndarray, UserSequences]:
        """``(rows, history)`` with ``history[rows[i]] == sequences[i]``, placed at the users' own
        indices (models with per-user state, e.g. user embeddings, look users up by index); users
        without an index (-1) or repeated ones get rows after the largest index."""
        rows = np.empty(len(sequences), dtype=np.int64)
        taken: set[int] = set()
        nxt = max((u for u in user_idx if u >= 0), default=-1) + 1
        for i, u in enumerate(user_idx):
            if u >= 0 and u not in taken:
                rows[i] = u
                taken.add(u)
            else:
                rows[i], nxt = nxt, nxt + 1
        n = int(rows.max()) + 1 if len(rows) else 0
        placed: list[np.ndarray] = [np.zeros(0, np.int32)] * n
        for r, seq in zip(rows, sequences, strict=True):
            placed[int(r)] = seq
        return rows, cls.from_sequences(placed)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, n_users: int) -> UserSequences:
        """``frame`` must be sorted by user_idx then time."""
        counts = np.bincount(frame["user_idx"].to_numpy(), minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            indptr=indptr,
            items=frame["item_idx"].to_numpy().astype(np.int32, copy=False),
            timestamps=frame["timestamp"].to_numpy().astype(np.int64, copy=False),
        )


@dataclass(frozen=True)
class Split:
    """A dataset cut into train / valid / test with index maps and its protocol card."""

    user_ids: np.ndarray  # index -> external id (str)
    item_ids: np.ndarray
    catalogue: Catalogue  # row j describes item j
    train: pl.DataFrame  # user_idx, item_idx, timestamp, rating; sorted by (user_idx, time, seq)
    valid: pl.DataFrame
    test: pl.DataFrame
    protocol: ProtocolCard

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def domain(self) -> str | None:
        """What the items are ("movie", "beauty product"), as the loader knew it; None if unknown.
        Kept on the protocol card, so it survives :func:`save_split` / :func:`load_split`."""
        return self.protocol.domain

    def history(self, stage: Stage) -> UserSequences:
        """What a model may see when it predicts ``stage``.

        ``train`` and ``valid`` -> the training events; ``test`` -> training + validation events.
        """
        if stage == "test":
            frame = pl.concat([self.train, self.valid]).sort(["user_idx", "timestamp"], maintain_order=True)
        else:
            frame = self.train
        return UserSequences.from_frame(frame, self.n_users)

    def targets(self, stage: Literal["valid", "test"]) -> UserSequences:
        """The held-out items to predict at ``stage`` (empty for users without any)."""
        return UserSequences.from_frame(self.valid if stage == "valid" else self.test, self.n_users)

    def eval_users(self, stage: Literal["valid", "test"]) -> np.ndarray:
        """Users with at least one target at ``stage``."""
        return np.flatnonzero(self.targets(stage).lengths() > 0).astype(np.int64)

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    def item_index(self) -> dict[str, int]:
        return {it: i for i, it in enumerate(self.item_ids.tolist())}


def _runs(user_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For events sorted by user: (position from the end: 1 = last, the user's event count)."""
    n = len(user_codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], user_codes[1:] != user_codes[:-1])))
    ends = np.append(starts[1:], n)
    run_len = ends - starts
    return np.repeat(ends, run_len) - np.arange(n), np.repeat(run_len, run_len)


def _leave_one_out(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``frame`` sorted by (user, time, seq); per user: last -> test, second-to-last -> valid."""
    rank, lengths = _runs(frame["user_id"].to_numpy())
    enough = lengths >= 3
    if not enough.any():
        raise EmptyDatasetError("leave-one-out needs users with >= 3 events; none are left")
    tagged = frame.with_columns(pl.Series("_rank", rank))
    if not enough.all():
        tagged = tagged.filter(pl.Series(enough))
    del rank, lengths, enough
    return (
        tagged.filter(pl.col("_rank") > 2).drop("_rank"),
        tagged.filter(pl.col("_rank") == 2).drop("_rank"),
        tagged.filter(pl.col("_rank") == 1).drop("_rank"),
    )


def _temporal(frame: pl.DataFrame, valid_fraction: float, test_fraction: float):
    ts = np.sort(frame["timestamp"].to_numpy())
    n = len(ts)
    t_valid = int(ts[int(n * (1 - valid_fraction - test_fraction))])
    t_test = int(ts[int(n * (1 - test_fraction))])
    del ts
    train = frame.filter(pl.col("timestamp") < t_valid)
    if train.height == 0:
        raise EmptyDatasetError("temporal split left no training events")
    seen_users = train["user_id"].unique()
    seen_items = train["item_id"].unique()
    known = pl.col("user_id").is_in(seen_users.implode()) & pl.col("item_id").is_in(seen_items.implode())
    valid = frame.filter((pl.col("timestamp") >= t_valid) & (pl.col("timestamp") < t_test)).filter(known)
    test = frame.filter(pl.col("timestamp") >= t_test).filter(known)
    return train, valid, test, (t_valid, t_test)


def _present(vocab_size: int, *columns: pl.Series) -> np.ndarray:
    """Sorted distinct codes appearing in ``columns`` (O(n) with bincount; codes are dense)."""
    seen = np.zeros(vocab_size, dtype=bool)
    for col in columns:
        seen[col.to_numpy()] = True
    return np.flatnonzero(seen)


def _index(codes: np.ndarray, vocab_size: int) -> np.ndarray:
    """code -> contiguous index (in code order, i.e. lexical id order); -1 for absent codes."""
    lookup = np.full(vocab_size, -1, dtype=np.int32)
    lookup[codes] = np.arange(len(codes), dtype=np.int32)
    return lookup


def _encode(frame: pl.DataFrame, user_lookup: np.ndarray, item_lookup: np.ndarray) -> pl.DataFrame:
    """Coded events -> (user_idx, item_idx, timestamp, rating), keeping the (user, time, seq) order."""
    u = user_lookup[frame["user_id"].to_numpy()]
    i = item_lookup[frame["item_id"].to_numpy()]
    out = pl.DataFrame({"user_idx": u, "item_idx": i}).with_columns(frame["timestamp"], frame["rating"])
    return out.filter((pl.col("user_idx") >= 0) & (pl.col("item_idx") >= 0))


def make_split(
    dataset: Dataset,
    preprocess_config: PreprocessConfig | None = None,
    split_config: SplitConfig | None = None,
) -> Split:
    """Preprocess ``dataset`` and cut it; the result carries its protocol card.

    Runs on integer-coded ids (:func:`~personarec.data.preprocess.encode_ids`) so that an
    ML-25M-sized input stays within a few GB; external ids come back through the vocabularies.
    """
    preprocess_config = preprocess_config or PreprocessConfig()
    split_config = split_config or SplitConfig()
    coded, user_vocab, item_vocab = encode_ids(dataset.interactions.frame)
    pre = preprocess_frame_report(coded, preprocess_config)  # sorted by (user, time, seq)
    frame, steps, changes = pre.frame, pre.steps, pre.changes
    frame = frame.drop("seq")  # order is fixed from here on; later copies are 20 bytes/event
    del coded, pre
    if split_config.kind == "leave-one-out":
        train, valid, test = _leave_one_out(frame)
        split_desc = "leave-one-out (last event test, second-to-last validation, per user)"
        if frame.height != train.height + valid.height + test.height:
            steps.append("dropped users with < 3 events (leave-one-out)")
    else:
        train, valid, test, (t_valid, t_test) = _temporal(
            frame, split_config.valid_fraction, split_config.test_fraction
        )
        split_desc = (
            f"global temporal (valid from t={t_valid}, test from t={t_test}; "
            "events of users/items unseen in train dropped from valid/test)"
        )
    del frame
    user_codes = _present(len(user_vocab), train["user_id"])
    item_parts = [train["item_id"]]
    if split_config.kind == "leave-one-out":
        # Items that only appear as targets still belong to the candidate set.
        item_parts += [valid["item_id"], test["item_id"]]
    item_codes = _present(len(item_vocab), *item_parts)
    user_lookup = _index(user_codes, len(user_vocab))
    item_lookup = _index(item_codes, len(item_vocab))
    enc_train, enc_valid, enc_test = (_encode(f, user_lookup, item_lookup) for f in (train, valid, test))
    del train, valid, test
    user_ids = np.asarray(user_vocab.gather(user_codes).to_list(), dtype=object)
    item_ids = np.asarray(item_vocab.gather(item_codes).to_list(), dtype=object)
    card = ProtocolCard(
        dataset=dataset.name,
        domain=dataset.domain,
        checksums=dataset.checksums,
        filtering=steps,
        changes=changes,
        split=split_desc,
        exclude_seen=split_config.exclude_seen,
        n_users=len(user_ids),
        n_items=len(item_ids),
        n_train=enc_train.height,
        n_valid=enc_valid.height,
        n_test=enc_test.height,
    )
    return Split(
        user_ids=user_ids,
        item_ids=item_ids,
        catalogue=dataset.catalogue.restrict(item_ids.tolist()),
        train=enc_train,
        valid=enc_valid,
        test=enc_test,
        protocol=card,
    )


def save_split(split: Split, directory: str | Path) -> Path:
    """Write a split as parquet files + the protocol card, so later stages reload it exactly."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    split.train.write_parquet(d / "train.parquet")
    split.valid.write_parquet(d / "valid.parquet")
    split.test.write_parquet(d / "test.parquet")
    pl.DataFrame({"user_id": split.user_ids.tolist()}).write_parquet(d / "users.parquet")
    pl.DataFrame({"item_id": split.item_ids.tolist()}).write_parquet(d / "items.parquet")
    split.catalogue.frame.write_parquet(d / "catalogue.parquet")
    split.protocol.save(d / "protocol.json")
    return d


def load_split(directory: str | Path) -> Split:
    d = Path(directory)
    if not (d / "protocol.json").exists():
        from personarec.errors import DataError

        raise DataError(f"no split in {d} (expected protocol.json); run `personarec data split` first")
    return Split(
        user_ids=np.asarray(pl.read_parquet(d / "users.parquet")["user_id"].to_list(), dtype=object),
        item_ids=np.asarray(pl.read_parquet(d / "items.parquet")["item_id"].to_list(), dtype=object),
        catalogue=Catalogue(pl.read_parquet(d / "catalogue.parquet")),
        train=pl.read_parquet(d / "train.parquet"),
        valid=pl.read_parquet(d / "valid.parquet"),
        test=pl.read_parquet(d / "test.parquet"),
        protocol=ProtocolCard.load(d / "protocol.json"),
    )
