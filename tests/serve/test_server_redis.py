"""The real server on a real redis-server (AOF, appendfsync always): a Redis crash (SIGKILL)
and restart loses no acknowledged event, persona or queued refresh."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest

from personarec.serve.launch import ServerProcess
from personarec.personas.store.redis import RedisStore
from tests.serve.helpers import NO_AUTH, fresh_persona, post_events, wait_for

pytestmark = pytest.mark.redis

FAST = [NO_AUTH, "serve.queue.debounce_s=0.2", "serve.queue.max_wait_s=2", "serve.queue.poll_interval_s=0.05"]


def test_redis_restart_loses_no_acknowledged_data(serve_run_dir, redis_server, ml100k_split):
    split = ml100k_split
    srv = ServerProcess(
        serve_run_dir, args=["--workers", "1", "--writer", "fallback", "--store", redis_server.url], sets=FAST
    ).start()
    store = RedisStore(redis_server.url)
    try:
        users = [str(u) for u in split.user_ids[100:108]]
        items = [str(x) for x in split.item_ids[200:230]]
        a = users[0]
        post_events(srv.url, a, items[:3])
        pa = fresh_persona(srv.url, a)
        # a burst of concurrent batches; every 202 is an acknowledgement
        acked: dict[str, list[str]] = {u: [] for u in users}

        def send(i: int) -> tuple[str, list[str], int]:
            u = users[i % len(users)]
            batch = items[i % 20 : i % 20 + 3]
            r = httpx.post(
                f"{srv.url}/v1/events",
                json={"events": [{"user_id": u, "item_id": it, "timestamp": 2_000_000_000 + i} for it in batch]},
                timeout=30,
            )
            return u, batch, r.status_code

        with cf.ThreadPoolExecutor(8) as pool:
            for u, batch, status in pool.map(send, range(40)):
                assert status == 202
                acked[u].extend(batch)
        redis_server.restart()  # SIGKILL: only what the AOF holds survives
        for u in users:
            stored = [e.item_id for e in store.events(u)]
            expected = (items[:3] if u == a else []) + acked[u]
            assert sorted(stored) == sorted(expected), u  # batches may interleave, none is lost
            assert [e.seq for e in store.events(u)] == list(range(store.user_state(u).base_len + 1, store.user_state(u).last_seq + 1))
        assert store.get(a) is not None and store.get(a).version >= pa["version"]
        # the server reconnects and catches up: every user ends with a fresh persona
        wait_for(lambda: httpx.get(f"{srv.url}/healthz").status_code == 200, 30, what="API back")
        for u in users:
            p = fresh_persona(srv.url, u, timeout_s=120)
            assert p["version"] == store.user_state(u).last_seq
        r = httpx.get(f"{srv.url}/v1/users/{a}/recommendations?k=5")
        assert r.status_code == 200 and r.json()["persona_version"] == store.user_state(a).last_seq
    finally:
        store.close()
        assert srv.stop() == 0, srv.log()[-3000:]
