"""Fault tests of the whole loop (real processes, loopback, bounded): the LLM server killed
mid-request, too slow, or answering garbage; Redis killed while events arrive; the SQLite disk
full. In every case no acknowledged event is lost and every user ends with a persona covering
their events (the fallback, counted, where the LLM failed). The cases live in ``faults.py`` so
that ``benchmarks/trust.py`` reports the same runs."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.serve import faults

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def people(ml100k_split):
    users = [str(u) for u in ml100k_split.user_ids[600:640]]
    items = [str(i) for i in ml100k_split.item_ids[20:60]]
    return users, items


@pytest.mark.parametrize("case", ["slow", "garbage"])
def test_llm_server_slow_or_garbage_falls_back_and_loses_nothing(case, serve_run_dir, people, tmp_path):
    users, items = people
    out = faults.llm_fault(case, serve_run_dir, tmp_path, users, items)
    assert out.acknowledged == out.events_sent == out.stored > 0 and out.lost == 0, out
    assert out.personas_stale == 0, out  # every user's persona covers every acknowledged event
    assert out.personas_fallback == 3 and out.personas_llm == 0, out  # the LLM never produced a valid persona
    assert "llm_errors=" in out.detail


@pytest.mark.llm
def test_llm_server_killed_mid_request(serve_run_dir, people, tmp_path):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] extras are not installed")
    from personarec.errors import ConfigError
    from personarec.personas.backends.models import shipped_gguf_path

    try:
        gguf = shipped_gguf_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    users, items = people
    out = faults.llm_fault("killed", serve_run_dir, tmp_path, users[10:], items, gguf=gguf)
    assert out.acknowledged == out.events_sent == out.stored > 0 and out.lost == 0, out
    # the persona-less users got the fallback persona; their later events are stored and their
    # refresh waits for the LLM (stale persona served, retried with backoff)
    assert out.personas_llm == 0 and out.personas_fallback + out.personas_stale == 3, out
    assert "fallbacks=3" in out.detail, out


@pytest.mark.redis
def test_redis_down_answers_503_and_acknowledges_only_what_it_stored(serve_run_dir, people, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    users, items = people
    out = faults.redis_down(serve_run_dir, tmp_path, users[:4], items)
    assert out.statuses.get("202") == 10 and out.statuses.get("503") == 5, out
    assert out.statuses["read_while_down"] == 503 and set(out.retry_after) == {"2"}, out
    assert out.lost == 0 and out.stored == out.acknowledged == 10 * 4 * 2, out


def test_sqlite_disk_full_is_a_clear_error_without_corruption(serve_run_dir, people, tmp_path):
    if os.geteuid() != 0 and shutil.which("prlimit") is None:
        pytest.skip("neither a tmpfs mount (needs root) nor prlimit (util-linux) is available")
    users, items = people
    out = faults.sqlite_full(serve_run_dir, tmp_path, users[:5], items)
    refused = {k: v for k, v in out.statuses.items() if k.isdigit() and k != "202"}
    assert out.statuses.get("202", 0) > 0 and refused and set(refused) <= {"507", "503"}, out
    assert "500" not in out.statuses and out.lost == 0 and out.stored == out.acknowledged, out
    assert out.statuses["integrity_ok"] == 1, out
    if "tmpfs" in out.detail:  # a real ENOSPC: named as full, and the API resumes once space is freed
        assert "507" in refused and "store full" in out.detail and out.statuses["resumed"] == 202, out
