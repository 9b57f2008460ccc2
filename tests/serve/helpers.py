"""Polling helpers for the real-server tests (no timing assertions: they only bound waits)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

#: the real-server tests of the refresh loop run without authentication (explicitly, as local
#: development would); authentication has its own tests (test_auth.py, test_schemathesis.py)
NO_AUTH = "serve.auth.mode=off"


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, interval_s: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def persona(url: str, user: str) -> dict:
    r = httpx.get(f"{url}/v1/users/{user}/persona", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def fresh_persona(url: str, user: str, timeout_s: float = 60.0) -> dict:
    """Wait until the user's persona includes their latest event."""

    def ok():
        p = persona(url, user)
        return p if p["persona"] is not None and not p["stale"] else None

    return wait_for(ok, timeout_s, what=f"fresh persona of {user}")


def post_events(url: str, user: str, items: list[str], t0: int = 2_000_000_000) -> dict:
    body = {"events": [{"user_id": user, "item_id": it, "timestamp": t0 + i} for i, it in enumerate(items)]}
    r = httpx.post(f"{url}/v1/events", json=body, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()
