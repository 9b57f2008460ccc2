"""A refresh fleet on one real redis-server: two API processes (``serve --workers 0``) and a
separate ``personarec workers`` process, with a bounded queue that sheds under overload.

What is checked: events posted to one API are stored and visible to the other; when the queue is
full, new refreshes are shed (named in the 202 answer, counted at ``/metrics``) while every event
is kept; the worker process, started later, writes the queued personas; a shed user's next read
schedules their refresh again and it covers every stored event; SIGTERM drains the workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from personarec.personas.store.redis import RedisStore
from personarec.serve.launch import ServerProcess
from tests.serve.helpers import NO_AUTH, fresh_persona, post_events, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FLEET = [NO_AUTH, "serve.queue.debounce_s=0.1", "serve.queue.max_wait_s=1", "serve.queue.poll_interval_s=0.05",
         "serve.queue.max_depth=3"]  # fmt: skip


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_two_apis_and_a_worker_process_share_one_bounded_queue(serve_run_dir, redis_server, ml100k_split, tmp_path):
    args = ["--workers", "0", "--store", redis_server.url]
    api_a = ServerProcess(serve_run_dir, args=args, sets=FLEET, log_path=tmp_path / "a.log").start()
    api_b = ServerProcess(serve_run_dir, args=args, sets=FLEET, log_path=tmp_path / "b.log").start()
    store = RedisStore(redis_server.url)
    workers = None
    try:
        # users with no persona yet (the session's run dir may hold offline personas of others)
        users = [u for u in map(str, ml100k_split.user_ids[300:400]) if store.get(u) is None][:5]
        items = [str(x) for x in ml100k_split.item_ids[10:14]]
        answers = [post_events(api_a.url, u, items[:2]) for u in users]
        shed = [u for u, a in zip(users, answers, strict=True) if u in a["refresh_shed"]]
        assert [a["refresh_queued"] for a in answers] == [True, True, True, False, False]
        assert shed == users[3:]  # no user here has a persona: nobody can be evicted, the bound holds
        for u in users:  # every event is stored, shed or not, and visible through the other API
            assert [e.item_id for e in store.events(u)] == items[:2]
            assert httpx.get(f"{api_b.url}/v1/users/{u}/persona", timeout=10).json()["last_seq"] == store.user_state(u).last_seq
        assert metric(api_b.url, "personarec_refresh_shed") == 2
        assert metric(api_b.url, 'personarec_queue_depth{state="total"}') == 3
        assert metric(api_b.url, "personarec_queue_oldest_age_seconds") > 0

        cmd = [sys.executable, "-m", "personarec.cli", "workers", "--run-dir", str(serve_run_dir), "--store",
               redis_server.url, "-w", "2", "--writer", "fallback", *sum((["--set", s] for s in FLEET), [])]  # fmt: skip
        log = open(tmp_path / "workers.log", "wb")  # noqa: SIM115 - closed below
        workers = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
        wait_for(lambda: metric(api_b.url, "personarec_workers_ready") == 2, 120, what="2 workers alive")
        for u in users[:3]:
            assert fresh_persona(api_b.url, u, timeout_s=120)["persona"]["version"] == store.user_state(u).last_seq
        wait_for(lambda: store.queue_stats(0)["depth"] == 0, 60, what="the queue drained")
        for u in shed:  # a stale read re-admits the shed refresh now that there is room
            r = httpx.get(f"{api_a.url}/v1/users/{u}/recommendations?k=5", timeout=30)
            assert r.status_code == 200 and r.json()["persona_stale"]
            p = fresh_persona(api_b.url, u, timeout_s=120)
            assert p["persona"]["version"] == store.user_state(u).last_seq  # includes every stored event
        assert metric(api_a.url, "personarec_fallbacks") == len(users)  # the fallback writer, counted as such
        workers.send_signal(signal.SIGTERM)
        assert workers.wait(60) == 0, (tmp_path / "workers.log").read_text()[-3000:]
        assert metric(api_a.url, "personarec_workers_ready") == 0  # a clean stop leaves the count at once
    finally:
        if workers is not None and workers.poll() is None:
            os.killpg(workers.pid, signal.SIGKILL)
        store.close()
        assert api_a.stop() == 0, api_a.log()[-3000:]
        assert api_b.stop() == 0, api_b.log()[-3000:]
