"""Dedup is a default that can change a published split: the protocol card says what it changed."""

from __future__ import annotations

import json
import logging

import polars as pl

from personarec.data.preprocess import PreprocessConfig, preprocess_frame_report
from personarec.data.protocol import ProtocolCard
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.data.splits import load_split, make_split, save_split


def _dataset(seqs: dict[str, str], domain: str | None = None) -> Dataset:
    """One user per key; the value's letters are the items in time order."""
    rows = [(u, item, t) for u, items in seqs.items() for t, item in enumerate(items)]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    cat = frame.select("item_id").unique(maintain_order=True)
    return Dataset("toy", Interactions.from_frame(frame), Catalogue.from_frame(cat), domain=domain)


REPEATS = {
    "uA": "abcde",  # no repeat
    "uB": "abacde",  # an early repeat: 1 event removed, targets unchanged
    "uC": "abczz",  # 5 -> 4 events: the 5-core drops uC, and with it item z (only uC has it)
    "uD": "abcdeff",  # last item repeated: the validation target becomes e instead of f
}


def _pairs(split, frame: pl.DataFrame) -> set[tuple[str, str]]:
    return {(split.user_ids[u], split.item_ids[i]) for u, i in frame.select("user_idx", "item_idx").iter_rows()}


def test_dedup_changes_are_counted_on_the_card(caplog):
    with caplog.at_level(logging.WARNING, logger="personarec.data.preprocess"):
        split = make_split(_dataset(REPEATS))  # the defaults: dedup last, 5-core on users
    card = split.protocol
    assert card.changes == {
        "dedup_removed_events": 3,
        "dedup_dropped_users": 1,
        "dedup_dropped_items": 1,
        "dedup_changed_valid_targets": 1,
        "dedup_changed_test_targets": 0,
    }
    line = card.filtering[0]
    assert line.startswith("dedup repeated (user, item) events, keep last: removed 3 events")
    assert "dropped 1 users and 1 items" in line and "differs for 0 / 1 users" in line
    assert line in card.render()
    # the counts describe the split that was made
    assert "uC" not in split.user_ids.tolist() and "z" not in split.item_ids.tolist()
    assert ("uD", "e") in _pairs(split, split.valid)
    assert any("removed 3 events" in r.getMessage() for r in caplog.records)  # a warning names the change


def test_dedup_first_can_change_test_targets():
    frame = _dataset({"uE": "abcdea", "uA": "abcde"}).interactions.frame
    out = preprocess_frame_report(frame, PreprocessConfig(dedup="first", min_user_interactions=0))
    # uE: a,b,c,d,e,a -> a,b,c,d,e: the test target becomes e (was a), validation d (was e)
    assert out.changes["dedup_changed_test_targets"] == 1
    assert out.changes["dedup_changed_valid_targets"] == 1
    assert out.changes["dedup_removed_events"] == 1


def test_no_repeats_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="personarec.data.preprocess"):
        split = make_split(_dataset({"uA": "abcde", "uB": "edcba"}))
    assert split.protocol.filtering[0] == "dedup repeated (user, item) events, keep last: no repeated events"
    assert set(split.protocol.changes.values()) == {0}
    assert not caplog.records


def test_dedup_none_leaves_the_card_without_a_dedup_line():
    split = make_split(_dataset(REPEATS), PreprocessConfig(dedup="none"))
    assert not any(line.startswith("dedup") for line in split.protocol.filtering)
    assert split.protocol.changes == {}
    assert "uC" in split.user_ids.tolist()


def test_card_saved_before_the_new_fields_still_loads(tmp_path):
    old = {
        "dataset": "ml-100k", "checksums": {"u.data": "0" * 64},
        "filtering": ["dedup repeated (user, item) events, keep last", "k-core(user>=5, item>=0)"],
        "split": "leave-one-out", "tie_break": "events sorted by (user, timestamp, original line order)",
        "candidates": "full ranking", "exclude_seen": True, "n_users": 943, "n_items": 1682,
        "n_train": 98114, "n_valid": 943, "n_test": 943,
    }  # fmt: skip
    (tmp_path / "protocol.json").write_text(json.dumps(old))
    card = ProtocolCard.load(tmp_path / "protocol.json")
    assert card.changes == {} and card.domain is None
    assert card.lines()[0] == "dataset     : ml-100k"


def test_domain_and_changes_survive_save_and_load(tmp_path):
    split = make_split(_dataset(REPEATS, domain="office product"))
    assert split.domain == "office product"
    assert "toy (office product)" in split.protocol.render()
    save_split(split, tmp_path / "split")
    back = load_split(tmp_path / "split")
    assert back.domain == "office product"
    assert back.protocol == split.protocol
    assert make_split(_dataset({"u": "abcde"})).domain is None
