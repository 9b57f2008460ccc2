"""``refresh_count`` (the cost model's event -> refresh arithmetic) agrees with the real queue."""

from __future__ import annotations

import numpy as np

from personarec.personas.store.sqlite import SQLiteStore
from personarec.serve.queue import QueueConfig, RefreshQueue, refresh_count


def test_refresh_count_matches_the_store_queue_with_an_always_free_worker(tmp_path):
    config = QueueConfig(debounce_s=2.0, max_wait_s=15.0, max_depth=None)
    rng = np.random.default_rng(0)
    # bursts (gaps < debounce), pauses, and one user who never stops clicking (max_wait caps it)
    users = np.array(["a"] * 40 + ["b"] * 30 + ["c"] * 60)
    gaps = np.concatenate([rng.choice([0.3, 1.1, 7.0], size=40), rng.exponential(3.0, size=30), np.full(60, 0.9)])
    starts = {"a": 1000.0, "b": 1003.3, "c": 1001.7}
    times = np.array([starts[u] for u in users]) + np.concatenate([np.cumsum(gaps[:40]), np.cumsum(gaps[40:70]), np.cumsum(gaps[70:])])
    store = SQLiteStore(tmp_path / "q.db")
    queue = RefreshQueue(store, config)
    ran = 0

    def drain(now: float) -> int:
        n = 0
        while (job := store.claim("w", 30.0, now)) is not None:
            store.complete(job, None, now)
            n += 1
        return n

    for i in np.argsort(times, kind="stable"):
        ran += drain(times[i] - 1e-6)  # the worker runs every job that fell due before this event
        store.append_events(str(users[i]), [("x", int(times[i]), None)], base_len=0, enqueue=queue.spec(now=float(times[i])))
    ran += drain(times.max() + 1e6)
    store.close()
    expected = refresh_count(users, times, config)
    assert ran == expected
    assert expected < len(users) / 2  # the bursts really coalesce
    assert refresh_count(users, times, QueueConfig(debounce_s=0.0, max_wait_s=0.0)) == len(users)
