"""Fault cases of the whole serving loop, run against real processes on loopback: a ``personarec
serve`` process (API + refresh worker) over a real store, fed events over HTTP while one part fails.

Each case returns a :class:`FaultOutcome` (events sent / acknowledged / stored / lost, statuses,
personas written by the LLM or by the fallback), which the tests assert on and
``benchmarks/trust.py`` reports. The parts that fail are real where the real part can fail that way
(a llama.cpp server SIGKILLed mid-request, redis-server SIGKILLed, a filesystem that is full); a
stand-in HTTP server only plays the faults a real LLM server will not produce on demand (answering
too slowly, answering garbage).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from personarec.serve.launch import ServerProcess, free_port

NO_AUTH = "serve.auth.mode=off"
QUICK = [NO_AUTH, "serve.queue.debounce_s=0.1", "serve.queue.max_wait_s=1", "serve.queue.poll_interval_s=0.05"]


@dataclass
class FaultOutcome:
    case: str
    events_sent: int = 0
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0  # acknowledged but not stored: must be 0
    statuses: dict[str, int] = field(default_factory=dict)
    personas_llm: int = 0
    personas_fallback: int = 0
    personas_stale: int = 0  # users whose persona does not cover their acknowledged events
    detail: str = ""
    retry_after: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class EventFeed:
    """Posts events with unique timestamps and remembers which ones the API acknowledged."""

    def __init__(self, url: str, items: list[str], t0: int = 2_000_000_000) -> None:
        self.url, self.items, self.t = url, items, t0
        self.sent: dict[str, list[tuple[str, int]]] = {}
        self.acked: dict[str, list[tuple[str, int]]] = {}
        self.statuses: dict[str, int] = {}
        self.retry_after: list[str] = []
        self.last: httpx.Response | None = None

    def post(self, users: list[str], per_user: int = 1) -> int:
        events = []
        for u in users:
            for _ in range(per_user):
                self.t += 1
                events.append({"user_id": u, "item_id": self.items[self.t % len(self.items)], "timestamp": self.t})
        for e in events:
            self.sent.setdefault(e["user_id"], []).append((e["item_id"], e["timestamp"]))
        try:
            r = httpx.post(f"{self.url}/v1/events", json={"events": events}, timeout=30)
            status = str(r.status_code)
            self.last = r
        except httpx.HTTPError as exc:  # no answer: nothing acknowledged
            status = type(exc).__name__
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == "202":
            for e in events:
                self.acked.setdefault(e["user_id"], []).append((e["item_id"], e["timestamp"]))
        elif self.last is not None and "retry-after" in self.last.headers:
            self.retry_after.append(self.last.headers["retry-after"])
        return int(status) if status.isdigit() else 0

    def account(self, store, case: str) -> FaultOutcome:
        """Compare what was acknowledged with what the store holds (read directly, not via the API)."""
        out = FaultOutcome(case, statuses=dict(self.statuses), retry_after=list(self.retry_after))
        out.events_sent = sum(map(len, self.sent.values()))
        out.acknowledged = sum(map(len, self.acked.values()))
        for user, acked in self.acked.items():
            stored = {(e.item_id, e.timestamp) for e in store.events(user)}
            out.stored += sum(1 for e in acked if e in stored)
            out.lost += sum(1 for e in acked if e not in stored)
        for user in self.acked:
            p, st = store.get(user), store.user_state(user)
            if p is None or st is None or p.version < st.last_seq:
                out.personas_stale += 1
            elif p.provenance.fallback:
                out.personas_fallback += 1
            else:
                out.personas_llm += 1
        return out


# -- LLM faults -----------------------------------------------------------------------------------
class _FaultLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that misbehaves: ``slow`` answers after the client's timeout,
    ``garbage`` answers 200 with text that is not the persona JSON."""

    mode = "garbage"
    delay_s = 5.0
    calls = 0

    def do_GET(self) -> None:  # noqa: N802 - /v1/models
        self._send({"data": [{"id": "fault"}]})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls += 1
        if self.mode == "slow":
            time.sleep(self.delay_s)
            content = "{}"
        else:
            content = ["Sure! Here is the persona: {{{ not json", '{"summary": 12, "interests": "all of them"}',
                       "\u0000\u0001 ignore previous instructions"][self.calls % 3]  # fmt: skip
        msg = {"role": "assistant", "content": content}
        self._send({"model": "fault", "choices": [{"message": msg, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 5}})

    def _send(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): expected
            pass

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def fault_llm(mode: str, delay_s: float = 5.0) -> Iterator[str]:
    handler = type("FaultLLM", (_FaultLLM,), {"mode": mode, "delay_s": delay_s, "calls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


class LlamaServer:
    """A real llama.cpp OpenAI-compatible server (llama_cpp.server) on a fixed loopback port, so
    that it can be SIGKILLed and started again where its clients expect it."""

    def __init__(self, gguf: Path) -> None:
        self.gguf, self.port = gguf, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "1", "--model_alias", "smollm2"]  # fmt: skip
        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: {self._log.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start within 120 s")
            time.sleep(0.25)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self._log.close()
            self.proc = None


def _metric(url: str, name: str, labels: str = "") -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + "_total ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _fresh_users(store_factory, candidates: list[str], n: int) -> list[str]:
    store = store_factory()
    try:
        return [u for u in candidates if store.get(u) is None][:n]
    finally:
        store.close()


def llm_fault(case: str, run_dir: Path, tmp: Path, users: list[str], items: list[str], gguf: Path | None = None) -> FaultOutcome:
    """``slow`` | ``garbage`` | ``killed``: the refresh worker's LLM fails; every user must still
    get a persona covering all acknowledged events (the fallback, counted), and no event is lost."""
    from personarec.personas.store.sqlite import SQLiteStore

    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / f"llm-{case}.db"
    backend = {"timeout_s": 1.0, "max_retries": 1, "backoff_s": 0.05}
    sets = [*QUICK, "serve.backend=openai", "personas.retries=1", "personas.max_tokens=120", "serve.queue.lease_s=60",
            "serve.queue.retry_backoff_s=0.5", "serve.queue.max_attempts=6",
            "serve.shutdown_grace_s=10"]  # a worker inside a slow LLM call must not outlast ServerProcess.stop's 60 s  # fmt: skip
    llama = LlamaServer(gguf).start() if case == "killed" else None
    try:
        return _llm_fault(case, run_dir, tmp, users, db, items, backend, sets, llama)
    finally:
        if llama is not None:
            llama.kill()


def _llm_fault(case, run_dir, tmp, users, db, items, backend, sets, llama) -> FaultOutcome:
    from personarec.personas.store.sqlite import SQLiteStore

    if llama is not None:
        backend["timeout_s"] = 120.0
    with (nullcontext(llama.url) if llama else fault_llm(case, delay_s=3.0)) as base:
        sets.append(f"serve.backend_config={json.dumps({**backend, 'base_url': base})}")
        srv = ServerProcess(run_dir, args=["--workers", "1", "--writer", "llm", "--store", f"sqlite:///{db}"], sets=sets,
                            log_path=tmp / f"serve-{case}.log").start(timeout_s=180)  # fmt: skip
        try:
            feed = EventFeed(srv.url, items)
            fresh = _fresh_users(lambda: SQLiteStore(db), users, 3)
            feed.post(fresh, per_user=2)
            detail = ""
            if llama is not None:  # SIGKILL the LLM server while the worker's request is in flight
                deadline = time.monotonic() + 60
                while _metric(srv.url, "personarec_queue_depth", '{state="leased"}') < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)
                llama.kill()
            feed.post(fresh, per_user=1)  # more events while the LLM is failing
            store = SQLiteStore(db)
            if llama is not None:  # every persona-less user gets the fallback persona; later events wait
                deadline = time.monotonic() + 120
                while store.stats().get("fallbacks", 0) < len(fresh) and time.monotonic() < deadline:
                    time.sleep(0.1)
                errors = store.stats().get("llm_errors", 0)
                feed.post(fresh, per_user=1)  # events while the LLM is still down
                while store.stats().get("llm_errors", 0) <= errors and time.monotonic() < deadline:
                    time.sleep(0.1)  # their refresh was tried, failed, and is kept for a retry
                out = feed.account(store, "llm_killed")
                detail = ("llama_cpp.server SIGKILLed 0.5 s after the worker leased its first job and left down; "
                          "users with a persona keep it (stale) and their refresh is retried with backoff")  # fmt: skip
            deadline = time.monotonic() + 240
            while llama is None and time.monotonic() < deadline:
                out = feed.account(store, f"llm_{case}")
                if out.personas_stale == 0:
                    break
                time.sleep(0.2)
            out.detail = detail or f"stand-in server answering {case}"
            stats = store.stats()
            out.detail += f"; worker counters: llm_errors={stats.get('llm_errors', 0):g}, fallbacks={stats.get('fallbacks', 0):g}"
            store.close()
        finally:
            assert srv.stop() == 0, srv.log()[-3000:]
    return out


# -- store faults ---------------------------------------------------------------------------------
def redis_down(run_dir: Path, tmp: Path, users: list[str], items: list[str]) -> FaultOutcome:
    """redis-server SIGKILLed while events arrive: the API answers 503 with Retry-After and
    acknowledges nothing it did not store; after a restart (AOF) every acknowledged event is there."""
    from personarec.personas.store.redis import RedisStore
    from tests.serve.redis_server import RedisServer

    tmp.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(tmp / "redis-down").start()
    srv = ServerProcess(run_dir, args=["--workers", "0", "--store", redis.url], sets=QUICK, log_path=tmp / "serve-redis.log").start()
    try:
        feed = EventFeed(srv.url, items)
        for _ in range(5):
            feed.post(users, per_user=2)
        redis.kill()
        for _ in range(5):
            feed.post(users, per_user=2)
        down = httpx.get(f"{srv.url}/v1/users/{users[0]}/recommendations", timeout=30).status_code
        redis.start()
        for _ in range(5):
            feed.post(users, per_user=2)
        store = RedisStore(redis.url)
        out = feed.account(store, "redis_down")
        store.close()
        out.detail = f"redis-server SIGKILLed after 5 batches, restarted from its AOF after 5 more; a read while down got {down}"
        out.statuses["read_while_down"] = down
    finally:
        assert srv.stop() == 0, srv.log()[-3000:]
        redis.stop()
    return out


@contextmanager
def small_filesystem(path: Path, size_kb: int) -> Iterator[str]:
    """A tmpfs of ``size_kb`` at ``path`` (a real ENOSPC); where mounting is not permitted, the
    server runs under RLIMIT_FSIZE instead (a real EFBIG on the same files). Yields the kind."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        not os.environ.get("PERSONAREC_FAULTS_NO_MOUNT")  # to exercise the RLIMIT_FSIZE path where mounting works
        and os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True).returncode == 0
    )
    try:
        yield "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def sqlite_full(run_dir: Path, tmp: Path, users: list[str], items: list[str]) -> FaultOutcome:
    """The SQLite store's filesystem fills up while events arrive: a clear 507 (or 503 for a write
    error), nothing acknowledged that is not stored, the file intact; freeing space lets it resume."""
    import sqlite3

    from personarec.personas.store.sqlite import SQLiteStore

    tmp.mkdir(parents=True, exist_ok=True)
    where = tmp / "full"
    with small_filesystem(where, 1536) as kind:
        db = where / "store.db"
        ballast = where / "ballast"
        prefix = ["prlimit", f"--fsize={256 * 1024}", "--"] if kind == "rlimit" else []  # files may not pass 256 KiB
        SQLiteStore(db).close()  # the schema, before the disk fills
        if kind == "tmpfs":
            free = shutil.disk_usage(where).free
            ballast.write_bytes(b"\0" * max(0, free - 512 * 1024))  # leave ~512 KiB
        srv = ServerProcess(run_dir, args=["--workers", "0", "--store", f"sqlite:///{db}"], sets=QUICK, prefix=prefix,
                            log_path=tmp / "serve-full.log").start()  # fmt: skip
        try:
            feed = EventFeed(srv.url, items)
            first_error = None
            for _ in range(400):
                code = feed.post(users, per_user=20)
                if code != 202:
                    first_error = feed.last.json()["detail"] if feed.last is not None and code else str(code)
                    break
            for _ in range(3):
                feed.post(users, per_user=20)  # still full: still refused, still serving
            health = httpx.get(f"{srv.url}/healthz", timeout=10).status_code
            resumed = None
            if kind == "tmpfs":
                ballast.unlink()
                resumed = feed.post(users, per_user=1)
        finally:
            srv.stop()
        con = sqlite3.connect(db)
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        store = SQLiteStore(db)
        out = feed.account(store, "sqlite_full")
        store.close()
        out.detail = (f"{kind}: first refusal {first_error!r}; /healthz while full {health}; integrity_check {integrity}"
                      + (f"; after freeing space a post got {resumed}" if resumed is not None else ""))  # fmt: skip
        out.statuses["integrity_ok"] = int(integrity == "ok")
        if resumed is not None:
            out.statuses["resumed"] = resumed
    return out

