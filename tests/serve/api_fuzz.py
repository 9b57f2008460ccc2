"""Hypothesis strategies and properties for the events API and persona edits (shared by
``test_fuzz_events.py`` and ``benchmarks/trust.py``)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

FUZZ_EXAMPLES = 150

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), _text,
                  st.lists(st.integers(), max_size=3), st.dictionaries(_text, st.integers(), max_size=2))  # fmt: skip


def event_bodies(users: list[str], items: list[str]) -> st.SearchStrategy[Any]:
    """Valid batches with hostile-but-legal values (new users with odd unicode ids, extreme
    timestamps), batches mixing valid and malformed events, and arbitrary JSON."""
    valid = st.fixed_dictionaries(
        {
            "user_id": st.one_of(st.sampled_from(users), st.text(st.characters(codec="utf-8"), min_size=1, max_size=128)),
            "item_id": st.sampled_from(items),
            "timestamp": st.integers(min_value=0, max_value=2**53),
        },
        optional={"rating": st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6))},
    )
    hostile = st.fixed_dictionaries(
        {
            "user_id": st.one_of(st.sampled_from(users), _text, _junk),
            "item_id": st.one_of(st.sampled_from(items), _text, _junk),
            "timestamp": st.one_of(st.integers(min_value=0, max_value=2**31), st.integers(), _junk),
        },
        optional={"rating": st.one_of(st.floats(allow_nan=True, allow_infinity=True), _junk), "extra": _junk},
    )
    clean = st.fixed_dictionaries({"events": st.lists(valid, min_size=1, max_size=6)})
    mixed = st.fixed_dictionaries({"events": st.lists(st.one_of(valid, hostile, _junk), max_size=6)})
    return st.one_of(clean, mixed, _junk, st.dictionaries(_text, _junk, max_size=3))


def edit_bodies(topics: list[str]) -> st.SearchStrategy[Any]:
    names = st.lists(st.one_of(st.sampled_from(topics), _text, _junk), max_size=4)
    body = st.fixed_dictionaries(
        {}, optional={"added_topics": names, "blocked_topics": names, "removed_interests": names, "note": _junk}
    )
    return st.one_of(body, body, _junk)


def check_events(client, store, headers: dict[str, str], body: Any) -> str:
    """POST the body; 202 -> every event is stored, 4xx -> none of its events is; never a 5xx."""
    well_formed = isinstance(body, dict) and isinstance(body.get("events"), list)
    before = _snapshot(store, body) if well_formed else {}
    r = client.post("/v1/events", content=_json(body), headers={**headers, "content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text, body)
    if r.status_code == 202:
        acked = r.json()["last_seq"]
        for e in body["events"]:
            stored = {(s.item_id, s.timestamp) for s in store.events(e["user_id"])}
            assert (e["item_id"], e["timestamp"]) in stored, (e, acked)
        return "202"
    assert r.status_code in (400, 404, 413, 422), (r.status_code, r.text)
    assert "detail" in r.json()
    if well_formed:
        assert _snapshot(store, body) == before, body  # a refused batch stored nothing
    return str(r.status_code)


def check_edits(client, store, headers: dict[str, str], user: str, body: Any, topics: set[str]) -> str:
    """PUT the edits; 200 -> stored exactly and only catalogue topics; 4xx -> unchanged."""
    before = store.get_edits(user)
    r = client.put(f"/v1/users/{user}/persona", content=_json(body), headers={**headers, "content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text, body)
    if r.status_code == 200:
        edits = store.get_edits(user)
        assert edits is not None and set(edits.added_topics) | set(edits.blocked_topics) <= topics
        return "200"
    assert r.status_code == 422 and "detail" in r.json(), (r.status_code, r.text)
    assert store.get_edits(user) == before
    return "422"


def _json(body: Any) -> bytes:
    """As a careless client would send it: NaN / Infinity literals included (not strict JSON)."""
    return json.dumps(body, allow_nan=True).encode()


def _snapshot(store, body: dict) -> dict[str, int]:
    users = {e["user_id"] for e in body["events"] if isinstance(e, dict) and isinstance(e.get("user_id"), str)}
    return {u: len(store.events(u)) for u in users}
