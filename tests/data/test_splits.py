"""Preprocessing and splits: invariants, tie-breaks, and agreement with a plain reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from personarec.data.preprocess import PreprocessConfig, dedup, encode_ids, k_core, preprocess
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.data.splits import SplitConfig, load_split, make_split, save_split


def _dataset(rows: list[tuple[str, str, int, float]], name: str = "toy") -> Dataset:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "rating"], orient="row")
    cat = frame.select("item_id").unique(maintain_order=True)
    return Dataset(name, Interactions.from_frame(frame), Catalogue.from_frame(cat), {"events": "0" * 64})


NO_FILTER = PreprocessConfig(dedup="none", min_user_interactions=0)


def _pairs(split, frame: pl.DataFrame) -> set[tuple[str, str]]:
    return {(split.user_ids[u], split.item_ids[i]) for u, i in frame.select("user_idx", "item_idx").iter_rows()}


def test_leave_one_out_tie_break_is_original_line_order():
    # u1's last two events share a timestamp: the later *line* is the test target.
    ds = _dataset([
        ("u1", "a", 1, 5.0), ("u1", "c", 9, 5.0), ("u1", "b", 9, 5.0), ("u1", "d", 5, 5.0),
        ("u2", "a", 3, 5.0), ("u2", "b", 2, 5.0), ("u2", "c", 1, 5.0),
    ])  # fmt: skip
    split = make_split(ds, NO_FILTER)
    assert _pairs(split, split.test) == {("u1", "b"), ("u2", "a")}
    assert _pairs(split, split.valid) == {("u1", "c"), ("u2", "b")}
    assert _pairs(split, split.train) == {("u1", "a"), ("u1", "d"), ("u2", "c")}
    assert "original line order" in split.protocol.tie_break


def test_ml100k_leave_one_out_invariants(ml100k, ml100k_split):
    sp = ml100k_split
    assert sp.n_users == 943
    assert sp.test["user_idx"].n_unique() == sp.test.height == 943  # exactly one test item per user
    assert sp.valid["user_idx"].n_unique() == sp.valid.height == 943
    assert sp.protocol.n_train + sp.protocol.n_valid + sp.protocol.n_test == 100_000
    # the test item is not in that user's training history
    assert not (_pairs(sp, sp.test) & _pairs(sp, sp.train))
    # seen-item histories: valid sees train; test sees train + valid
    hist_test, hist_valid = sp.history("test"), sp.history("valid")
    for u in (0, 17, 500):
        assert set(hist_valid[u].tolist()) == set(sp.train.filter(pl.col("user_idx") == u)["item_idx"].to_list())
        assert set(hist_test[u].tolist()) == set(hist_valid[u].tolist()) | set(sp.targets("valid")[u].tolist())
    assert hist_test.lengths().sum() == sp.protocol.n_train + sp.protocol.n_valid
    # catalogue row j describes item j
    assert sp.catalogue.frame["item_id"].to_list() == sp.item_ids.tolist()


def test_ml100k_split_matches_plain_reference(ml100k):
    """The integer-coded fast path agrees with a direct polars sort on the string ids."""
    sp = make_split(ml100k)
    ref = ml100k.interactions.frame.sort(["user_id", "timestamp", "seq"])
    last = ref.group_by("user_id", maintain_order=True).agg(pl.col("item_id").last(), pl.col("item_id").get(-2).alias("prev"))
    test_pairs = _pairs(sp, sp.test)
    valid_pairs = _pairs(sp, sp.valid)
    assert test_pairs == set(zip(last["user_id"], last["item_id"]))
    assert valid_pairs == set(zip(last["user_id"], last["prev"]))
    assert sp.user_ids.tolist() == sorted(sp.user_ids.tolist())  # indices follow lexical id order


def test_temporal_split_no_test_event_in_train(ml100k):
    sp = make_split(ml100k, split_config=SplitConfig(kind="temporal", valid_fraction=0.1, test_fraction=0.1))
    assert sp.train["timestamp"].max() < sp.valid["timestamp"].min()
    assert sp.valid["timestamp"].max() < sp.test["timestamp"].min()
    assert not (_pairs(sp, sp.test) & _pairs(sp, sp.train))
    # every valid/test user and item is known from training (can be ranked)
    assert set(sp.test["user_idx"].to_list()) <= set(sp.train["user_idx"].to_list())
    assert set(sp.test["item_idx"].to_list()) <= set(sp.train["item_idx"].to_list())
    assert sp.protocol.split.startswith("global temporal")
    n = sp.protocol.n_train
    assert 0.75 * 100_000 < n < 0.85 * 100_000


def test_k_core_reaches_fixed_point():
    # Removing item "z" (1 event) drops u3 below 2, which drops item "y" below 2: needs 3 passes.
    rows = [("u1", "x", 1, 1.0), ("u1", "w", 2, 1.0), ("u2", "x", 3, 1.0), ("u2", "w", 4, 1.0),
            ("u3", "y", 5, 1.0), ("u3", "z", 6, 1.0), ("u4", "y", 7, 1.0), ("u4", "x", 8, 1.0)]  # fmt: skip
    frame = _dataset(rows).interactions.frame
    for variant in (frame, encode_ids(frame)[0]):  # string ids and integer codes
        out = k_core(variant, 2, 2)
        assert out.height == 4
        assert out.group_by("user_id").len()["len"].min() >= 2
        assert out.group_by("item_id").len()["len"].min() >= 2
        assert k_core(out, 2, 2).height == out.height  # idempotent
    kept = k_core(frame, 2, 2)
    assert set(kept["user_id"]) == {"u1", "u2"}


def test_dedup_keeps_first_or_last_event():
    rows = [("u", "a", 5, 1.0), ("u", "a", 2, 3.0), ("u", "b", 3, 4.0), ("u", "a", 5, 2.0)]
    frame = _dataset(rows).interactions.frame
    last = dedup(frame, "last").filter(pl.col("item_id") == "a").row(0, named=True)
    first = dedup(frame, "first").filter(pl.col("item_id") == "a").row(0, named=True)
    assert (last["timestamp"], last["rating"]) == (5, 2.0)  # tie at t=5: later line wins
    assert (first["timestamp"], first["rating"]) == (2, 3.0)
    assert dedup(frame, "none").height == 4
    coded = dedup(encode_ids(frame)[0], "last")
    assert coded.height == 2


def test_implicit_threshold_and_card_lines():
    rows = [(f"u{u}", f"i{i}", i, float(1 + (u + i) % 5)) for u in range(6) for i in range(8)]
    cfg = PreprocessConfig(min_rating=4.0, min_user_interactions=2)
    out, steps = preprocess(_dataset(rows).interactions, cfg)
    assert out.frame["rating"].min() >= 4.0
    assert len(out) == sum(1 for r in rows if r[3] >= 4.0)
    assert steps == ["dedup repeated (user, item) events, keep last: no repeated events",
                     "implicit feedback: rating >= 4.0", "k-core(user>=2, item>=0)"]  # fmt: skip
    assert out.frame["user_id"].dtype == pl.Utf8  # external ids come back as strings


def test_save_load_round_trip(tmp_path, ml100k_split):
    sp = ml100k_split
    save_split(sp, tmp_path / "split")
    back = load_split(tmp_path / "split")
    assert back.protocol == sp.protocol
    assert back.user_ids.tolist() == sp.user_ids.tolist()
    assert back.item_ids.tolist() == sp.item_ids.tolist()
    for a, b in ((back.train, sp.train), (back.valid, sp.valid), (back.test, sp.test)):
        assert a.equals(b)
    assert back.catalogue.frame.equals(sp.catalogue.frame)
    np.testing.assert_array_equal(back.history("test").items, sp.history("test").items)
    assert "leave-one-out" in back.protocol.render()


def test_protocol_card_names_everything(ml100k_split):
    text = ml100k_split.protocol.render()
    for needle in ("ml-100k", "u.data=06416e597f82", "k-core(user>=5", "leave-one-out", "original line order",
                   "full ranking", "excluded from ranking"):  # fmt: skip
        assert needle in text


def test_p5_split_uses_positions(tmp_path):
    p = tmp_path / "user_sequence.txt"
    p.write_text("U1 a b c d e\nU2 c d e f g h\n")
    from personarec.data.p5 import load_p5

    sp = make_split(load_p5(tmp_path, name="p5-x"), PreprocessConfig(min_user_interactions=5))
    assert _pairs(sp, sp.test) == {("U1", "e"), ("U2", "h")}
    assert _pairs(sp, sp.valid) == {("U1", "d"), ("U2", "g")}


@pytest.mark.parametrize("kind", ["leave-one-out", "temporal"])
def test_split_dtypes_are_stable(ml100k, kind):
    sp = make_split(ml100k, split_config=SplitConfig(kind=kind))
    assert sp.train.schema == {"user_idx": pl.Int32, "item_idx": pl.Int32, "timestamp": pl.Int64, "rating": pl.Float32}
    assert sp.train.sort(["user_idx", "timestamp"], maintain_order=True).equals(sp.train)
