"""Soak of the serving loop (issue 12, "Trust") -> key "soak" of benchmarks/results/trust.json.

    .venv/bin/python benchmarks/trust_soak.py [--duration 600] [--rps 20] [--store redis|sqlite]

A real ``personarec serve`` process (authentication on: a service key for recommendations and
events, per-user HS256 tokens for persona views and edits) with ``--workers`` refresh worker
processes over a real store: by default a redis-server with AOF and ``appendfsync always`` (the
throw-away one of the tests), or the run's SQLite file. The workers use the deterministic
``fallback`` writer: the soak tests the serving loop (requests, durable events, queue, leases,
worker respawns, memory), not the LLM, whose throughput the serving and scale benchmarks measure.
The run directory (ML-100k split, MiniLM item space, SASRec + persona hybrid) is the serving
benchmark's ``prepare``, cached under ``.cache/bench-trust-soak``; its personas are re-seeded by
the fallback writer before every soak, so each soak starts from the same store.

Load: open loop (a fixed arrival schedule, so a slow server cannot slow the generator: no
coordinated omission) at ``--rps``, each arrival drawn from the mix in ``MIX``: recommendations,
event batches (1-3 events of one user, real item ids), persona views and edits (topics from
``GET /v1/topics``). Latency is response complete minus scheduled send time. Every
``--restart-every`` seconds (uniform in the range) the longest-lived refresh worker is SIGKILLed
(its pid from ``/healthz``); the pool must respawn it (a new pid). Every ``--sample-every``
seconds: RSS of the API process, of each worker, of the rest of the server's process tree and of
redis-server, and the refresh queue depth. At the end the queue is left to drain, the server is
stopped (SIGTERM), redis-server is SIGKILLed and restarted from its AOF, and the store is read
directly: every event acknowledged with ``202`` must be there under the ``seq`` its response
reported (``last_seq``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUN_DIR = ROOT / ".cache" / "bench-trust-soak"
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))  # tests.serve.redis_server: the throw-away redis-server

from serving import metric, pct, prepare, seed_personas  # noqa: E402

from personarec.personas.store.url import StoreURL  # noqa: E402
from personarec.serve.auth import JWT_SECRET_ENV, SERVICE_KEYS_ENV, AuthConfig, Authenticator  # noqa: E402
from personarec.serve.auth import new_jwt_secret, new_service_key  # noqa: E402
from personarec.serve.launch import ServerProcess  # noqa: E402

#: share of arrivals per request kind (a backend reading lists, posting clicks; a few users editing)
MIX = {"recommend": 0.70, "events": 0.25, "persona_get": 0.025, "persona_put": 0.025}
MODEL = "persona_hybrid"
API_THREADS = 1  # serve.api_threads' default: one torch thread per request
N_USERS = 300
MB = 1024 * 1024


@dataclass
class Record:
    """One request: when it was due (s since the soak started), what it was, how it ended."""

    t: float
    kind: str
    status: str  # the HTTP status, or "timeout" / "transport" / "not_sent" (in-flight bound)
    ms: float | None  # scheduled send -> response complete
    server_ms: float | None = None


@dataclass
class Ack:
    """An acknowledged event batch: the user's ``last_seq`` after it and its (item, timestamp)s."""

    user: str
    last_seq: int
    events: list[tuple[str, int]]


@dataclass
class Soak:
    """What the load, restart and sampling tasks share."""

    client: httpx.AsyncClient
    server: ServerProcess
    service_headers: dict[str, str]
    auth: Authenticator
    users: list[str]
    items: list[str]
    topics: list[str]
    ttl_s: float
    start: float = 0.0
    records: list[Record] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    events_sent: int = 0
    users_posted: set[str] = field(default_factory=set)
    samples: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    _tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    _ts: int = 2_000_000_000

    def now(self) -> float:
        return time.perf_counter() - self.start

    def user_headers(self, user: str) -> dict[str, str]:
        """A user's own token (persona endpoints refuse the service key), minted once per user."""
        if user not in self._tokens:
            self._tokens[user] = {"Authorization": f"Bearer {self.auth.mint(user, ttl_s=self.ttl_s)}"}
        return self._tokens[user]

    def next_ts(self) -> int:
        """Unique event timestamps, so each acknowledged event is recognisable in the store."""
        self._ts += 1
        return self._ts


# -- the load ---------------------------------------------------------------------------------------
async def request(soak: Soak, rng: random.Random, kind: str, due: float) -> None:
    """Send one request of ``kind`` at its due time and record its outcome."""
    user = rng.choice(soak.users)
    batch: list[tuple[str, int]] = []
    if kind == "recommend":
        call = soak.client.get(f"/v1/users/{user}/recommendations", params={"k": 10}, headers=soak.service_headers)
    elif kind == "events":
        batch = [(rng.choice(soak.items), soak.next_ts()) for _ in range(rng.randint(1, 3))]
        body = {"events": [{"user_id": user, "item_id": i, "timestamp": ts} for i, ts in batch]}
        call = soak.client.post("/v1/events", json=body, headers=soak.service_headers)
        soak.events_sent += len(batch)
        soak.users_posted.add(user)
    elif kind == "persona_get":
        call = soak.client.get(f"/v1/users/{user}/persona", headers=soak.user_headers(user))
    else:
        added = rng.sample(soak.topics, rng.randint(0, 2))
        blocked = rng.sample([t for t in soak.topics if t not in added], rng.randint(0, 1))
        body = {"added_topics": added, "blocked_topics": blocked}
        call = soak.client.put(f"/v1/users/{user}/persona", json=body, headers=soak.user_headers(user))
    try:
        r = await call
    except httpx.TimeoutException:
        soak.records.append(Record(due, kind, "timeout", None))
        return
    except httpx.HTTPError:
        soak.records.append(Record(due, kind, "transport", None))
        return
    ms = (soak.now() - due) * 1000
    timing = r.headers.get("server-timing", "")
    server_ms = float(timing.split("dur=")[1]) if "dur=" in timing else None
    soak.records.append(Record(due, kind, str(r.status_code), ms, server_ms))
    if kind == "events" and r.status_code == 202:
        soak.acks.append(Ack(user, int(r.json()["last_seq"][user]), batch))


async def drive(soak: Soak, rps: float, duration_s: float, max_in_flight: int, seed: int) -> None:
    """Open loop: arrival i is due at i / rps whatever happened before; a request that would exceed
    ``max_in_flight`` is not sent and is counted (``not_sent``), never silently skipped."""
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    in_flight: set[asyncio.Task] = set()
    for i in range(int(rps * duration_s)):
        due = i / rps
        await asyncio.sleep(max(0.0, due - soak.now()))
        kind = rng.choices(kinds, weights)[0]
        if len(in_flight) >= max_in_flight:
            soak.records.append(Record(due, kind, "not_sent", None))
            continue
        task = asyncio.create_task(request(soak, rng, kind, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)


# -- worker restarts and resource samples ------------------------------------------------------------
async def health(soak: Soak) -> dict[str, Any] | None:
    """``/healthz``, or None when it does not answer in time (the harness must outlive a slow API)."""
    try:
        r = await soak.client.get("/healthz")
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def restart_workers(soak: Soak, every_s: tuple[float, float], n_workers: int, stop: asyncio.Event,
                          seed: int, respawn_timeout_s: float = 60.0) -> None:  # fmt: skip
    """SIGKILL the longest-lived worker now and then (a crash mid-job, not a drain) and check that
    the pool replaced it with a new process."""
    rng = random.Random(seed)
    while True:
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(*every_s))
            return
        except TimeoutError:
            pass
        h = await health(soak)
        before = h["workers"] if h else []
        if not before:
            soak.restarts.append({"t": round(soak.now(), 1), "error": "no /healthz answer or no live worker; nothing killed"})
            continue
        victim = min(before, key=lambda pid: psutil.Process(pid).create_time())
        t_kill = soak.now()
        os.kill(victim, signal.SIGKILL)
        after: list[int] = []
        while soak.now() - t_kill < respawn_timeout_s:
            await asyncio.sleep(0.2)
            h = await health(soak)
            after = h["workers"] if h else after
            if h and victim not in after and len(after) == n_workers:
                break
        new = sorted(set(after) - set(before))
        soak.restarts.append({"t": round(t_kill, 1), "killed_pid": victim, "new_pids": new,
                              "respawned": bool(new) and victim not in after and len(after) == n_workers,
                              "respawn_s": round(soak.now() - t_kill, 2)})  # fmt: skip


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / MB
    except psutil.Error:  # the process died between listing and reading (a killed worker)
        return 0.0


def server_tree(api_pid: int) -> tuple[list[int], list[int]]:
    """(refresh workers, other descendants) of the API process, from the OS rather than the API, so
    that sampling does not depend on the system under test answering (workers are the pool's
    ``spawn`` children; the rest is multiprocessing's resource tracker)."""
    workers, others = [], []
    for child in psutil.Process(api_pid).children(recursive=True):
        try:
            (workers if "spawn_main" in " ".join(child.cmdline()) else others).append(child.pid)
        except psutil.Error:
            pass
    return workers, others


async def sample_resources(soak: Soak, every_s: float, stop: asyncio.Event, redis_pid: int | None,
                           store_file: Path | None) -> None:  # fmt: skip
    """RSS per role and queue depth every ``every_s`` until ``stop`` (and once more at the end)."""
    while True:
        api = soak.server.proc.pid
        worker_pids, others = server_tree(api)
        workers = {pid: rss_mb(pid) for pid in worker_pids}
        h = await health(soak)
        row = {"t": round(soak.now(), 1), "api_mb": rss_mb(api), "workers_mb": sum(workers.values()),
               "workers": {str(p): round(m, 1) for p, m in workers.items()},
               "other_children_mb": sum(rss_mb(p) for p in others), "queue_depth": h["queue_depth"] if h else None}  # fmt: skip
        if redis_pid is not None:
            row["redis_mb"] = rss_mb(redis_pid)
        if store_file is not None:
            row["sqlite_files_mb"] = sum(p.stat().st_size for p in store_file.parent.glob(store_file.name + "*")) / MB
        soak.samples.append({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()})
        recent = [r for r in soak.records if r.t >= row["t"] - every_s]
        print(f"t={row['t']:.0f}s api={row['api_mb']:.0f}MB workers={row['workers_mb']:.0f}MB depth={row['queue_depth']} "
              f"last {every_s:g}s: {dict(Counter(r.status for r in recent))} p99={latency(recent)['p99_ms']}ms "
              f"restarts={len(soak.restarts)}", file=sys.stderr, flush=True)  # fmt: skip
        if stop.is_set():
            return
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


async def wait_ready(soak: Soak, n_workers: int, timeout_s: float = 300.0) -> None:
    """The API answers before the workers have loaded their assets: wait for their heartbeats."""
    deadline = time.monotonic() + timeout_s
    while metric((await soak.client.get("/metrics")).text, "personarec_workers_ready") < n_workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"refresh workers not ready after {timeout_s} s; see {soak.server.log_path}")
        await asyncio.sleep(0.5)


async def drain(soak: Soak, timeout_s: float) -> float | None:
    """Seconds until the refresh queue is empty after the load stops (None: not within timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        h = await health(soak)
        if h is not None and h["queue_depth"] == 0:
            return round(time.monotonic() - t0, 1)
        await asyncio.sleep(0.5)
    return None


async def soak_session(soak: Soak, *, rps: float, duration_s: float, n_workers: int, restart_every_s: tuple[float, float],
                       sample_every_s: float, seed: int, redis_pid: int | None, store_file: Path | None) -> dict:  # fmt: skip
    """Load, kills and samples side by side on one event loop; the clock starts once every worker
    is ready and the API is warm, so start-up is not mistaken for the soak's first minute."""
    await wait_ready(soak, n_workers)
    r = await soak.client.get("/v1/topics", headers=soak.service_headers)
    r.raise_for_status()
    soak.topics = r.json()
    for user in soak.users[:20]:  # warm-up: model pages, store connections (not recorded)
        await soak.client.get(f"/v1/users/{user}/recommendations", headers=soak.service_headers)
    stop = asyncio.Event()
    soak.start = time.perf_counter()
    sampler = asyncio.create_task(sample_resources(soak, sample_every_s, stop, redis_pid, store_file))
    restarter = asyncio.create_task(restart_workers(soak, restart_every_s, n_workers, stop, seed + 1))
    await drive(soak, rps, duration_s, max_in_flight=64, seed=seed)
    load_s = soak.now()
    stop.set()
    await asyncio.gather(restarter, sampler)
    return {"load_wall_s": round(load_s, 1), "queue_drained_after_s": await drain(soak, 120.0),
            "workers_at_end": (h := await health(soak)) and h["workers"]}  # fmt: skip


# -- figures --------------------------------------------------------------------------------------
def latency(records: list[Record]) -> dict[str, Any]:
    ms = [r.ms for r in records if r.ms is not None]
    server = [r.server_ms for r in records if r.server_ms is not None]
    return {"n": len(records), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "max_ms": pct(ms, 100),
            "server_p99_ms": pct(server, 99)}  # fmt: skip


def windows(records: list[Record], every_s: float) -> list[dict[str, Any]]:
    """Per window of scheduled time: requests by status and latency percentiles."""
    by: dict[int, list[Record]] = {}
    for r in records:
        by.setdefault(int(r.t // every_s), []).append(r)
    return [{"t0": k * every_s, **latency(rs), "by_status": dict(Counter(r.status for r in rs))} for k, rs in sorted(by.items())]


def slope_mb_per_min(samples: list[dict[str, Any]], key: str, warmup_s: float) -> float | None:
    """Least-squares RSS trend after the warm-up: ~0 = flat, > 0 = growth (a leak if it persists)."""
    pts = [(s["t"] / 60, s[key]) for s in samples if s["t"] >= warmup_s and key in s]
    if len(pts) < 3:
        return None
    return round(float(np.polyfit(*zip(*pts, strict=True), 1)[0]), 3)


def worker_slopes(samples: list[dict[str, Any]], skip_s: float) -> dict[str, float]:
    """RSS trend of each worker process over its own life, from ``skip_s`` after it was first seen
    (asset loading): the sum over workers drops at every kill, so a leak shows here instead."""
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for pid, mb in s["workers"].items():
            series.setdefault(pid, []).append((s["t"], mb))
    out = {}
    for pid, pts in series.items():
        kept = [(t / 60, mb) for t, mb in pts if t >= pts[0][0] + skip_s]
        if len(kept) >= 4:
            out[pid] = round(float(np.polyfit(*zip(*kept, strict=True), 1)[0]), 3)
    return out


def p99_after_kills(wins: list[dict[str, Any]], restarts: list[dict[str, Any]], window_s: float,
                    within_s: float = 30.0) -> dict[str, float | None]:  # fmt: skip
    """Median window p99 for windows starting within ``within_s`` after a worker kill vs the rest: a
    respawned worker re-imports and reloads its assets, competing with the API for the cores."""
    kills = [r["t"] for r in restarts if "killed_pid" in r]
    near: list[float] = []
    rest: list[float] = []
    for w in wins:
        if w["p99_ms"] is not None:
            after = any(k - window_s < w["t0"] <= k + within_s for k in kills)
            (near if after else rest).append(w["p99_ms"])
    return {"after_kill_median_p99_ms": pct(near, 50), "other_windows_median_p99_ms": pct(rest, 50),
            "windows_after_kill": len(near), "other_windows": len(rest)}  # fmt: skip


def verify_events(url: str, acks: list[Ack], users_posted: set[str]) -> dict[str, int]:
    """Every acknowledged event must be stored under the seq its 202 reported (the batch's events
    are the ``len(events)`` seqs ending at ``last_seq``); read from the store, not the API."""
    store = StoreURL.parse(url).open()
    try:
        stored = {u: {e.seq: (e.item_id, e.timestamp) for e in store.events(u)} for u in users_posted}
    finally:
        store.close()
    found = misplaced = lost = 0
    for a in acks:
        by_seq, anywhere = stored[a.user], set(stored[a.user].values())
        for k, ev in enumerate(a.events):
            seq = a.last_seq - len(a.events) + 1 + k
            if by_seq.get(seq) == ev:
                found += 1
            elif ev in anywhere:
                misplaced += 1
            else:
                lost += 1
    return {"acknowledged": sum(len(a.events) for a in acks), "stored": found + misplaced, "stored_at_acked_seq": found,
            "stored_at_other_seq": misplaced, "lost": lost,
            "stored_total_for_posting_users": sum(len(v) for v in stored.values())}  # fmt: skip


def log_findings(log: str) -> dict[str, int]:
    """What the server log says about the run (bugs are logged with a traceback and a request id)."""
    return {"tracebacks": log.count("Traceback (most recent call last)"),
            "bug_lines": len(re.findall(r"bug while serving", log)),
            "worker_respawn_lines": len(re.findall(r"respawning in", log)),
            "store_unavailable_lines": len(re.findall(r"store unavailable", log))}  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    """RSS per role and p50/p99 per window over time; worker kills as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, wins = result["rss_over_time"], result["windows"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s["t"] / 60 for s in series]
    for key, label in (("api_mb", "API process"), ("workers_mb", "refresh workers (sum)"), ("redis_mb", "redis-server")):
        if key in series[0]:
            top.plot(t, [s[key] for s in series], marker=".", label=label)
    top.set_ylabel("RSS (MiB)")
    top.legend(fontsize=8)
    wt = [(w["t0"] + result["window_s"] / 2) / 60 for w in wins]
    bottom.plot(wt, [w["p99_ms"] for w in wins], marker=".", label="p99")
    bottom.plot(wt, [w["p50_ms"] for w in wins], marker=".", label="p50")
    bottom.set_yscale("log")
    bottom.set_ylabel("client latency (ms, log)")
    bottom.set_xlabel("minutes")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        for r in result["worker_restarts"]["events"]:
            ax.axvline(r["t"] / 60, color="grey", linestyle=":", linewidth=1)
    top.set_title(f"Soak: {result['rps_target']:g} req/s mixed, {result['store']}, worker SIGKILLs dotted", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- the run ----------------------------------------------------------------------------------------
def run(duration_s: float = 600, rps: float = 20.0, store: str = "redis", workers: int = 2,
        restart_every_s: tuple[float, float] = (60.0, 120.0), sample_every_s: float = 10.0, seed: int = 0,
        run_dir: Path = RUN_DIR, plot_path: Path | None = RESULTS / "trust_soak.png") -> dict[str, Any]:  # fmt: skip
    """One soak; see the module docstring. Returns the "soak" figures."""
    from personarec.data.splits import load_split
    from tests.serve.redis_server import RedisServer

    t_setup = time.perf_counter()
    prepare(run_dir, [MODEL], epochs=3)
    split = load_split(run_dir / "split")
    rng = np.random.default_rng(seed)
    users = [str(u) for u in rng.choice(split.user_ids, size=min(N_USERS, split.n_users), replace=False)]
    seeded = seed_personas(run_dir, users)
    key, secret = new_service_key(), new_jwt_secret()
    auth = Authenticator(AuthConfig(), environ={JWT_SECRET_ENV: secret})
    load_before = os.getloadavg()
    with ExitStack() as stack:
        redis, store_file = None, None
        if store == "redis":
            redis = RedisServer(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "redis").start()
            stack.callback(redis.stop)
            url = redis.url
        else:
            store_file = run_dir / "personas.db"
            url = f"sqlite:///{store_file}"
        server = ServerProcess(
            run_dir, args=["--workers", str(workers), "--writer", "fallback", "--store", url],
            sets=[f"serve.model={MODEL}", f"serve.api_threads={API_THREADS}"], log_path=run_dir / "soak-serve.log",
            env={SERVICE_KEYS_ENV: key, JWT_SECRET_ENV: secret},
        )  # fmt: skip
        server.log_path.unlink(missing_ok=True)
        server.start(timeout_s=300)
        stack.callback(server.stop)
        setup_s = time.perf_counter() - t_setup

        async def session() -> tuple[Soak, dict]:
            async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
                soak = Soak(client, server, {"X-API-Key": key}, auth, users, [str(i) for i in split.item_ids], [],
                            ttl_s=duration_s + 3600)  # fmt: skip
                end = await soak_session(soak, rps=rps, duration_s=duration_s, n_workers=workers,
                                         restart_every_s=restart_every_s, sample_every_s=sample_every_s, seed=seed,
                                         redis_pid=redis.proc.pid if redis else None, store_file=store_file)  # fmt: skip
                return soak, end

        soak, end = asyncio.run(session())
        exit_code = server.stop()
        if redis is not None:  # what survives a crash of the store itself is what the AOF holds
            redis.restart()
        events = verify_events(url, soak.acks, soak.users_posted)
        findings = log_findings(server.log_path.read_text(errors="replace"))
    events = {"sent": soak.events_sent, **events}
    statuses = Counter(r.status for r in soak.records)
    wins = windows(soak.records, sample_every_s)
    warmup_s = max(sample_every_s, min(60.0, duration_s / 10))
    s0, s1 = soak.samples[0], soak.samples[-1]
    rss_keys = [k for k in ("api_mb", "workers_mb", "other_children_mb", "redis_mb", "sqlite_files_mb") if k in s0]
    restarts = soak.restarts
    result = {
        "benchmark": "trust_soak",
        "command": f"trust_soak.run(duration_s={duration_s}, rps={rps}, store={store!r}, workers={workers})",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "shared machine: other engineers' jobs may run; load generator, API, workers and store share its cores"},
        "setup": {"dataset": "ml-100k", "served_model": MODEL, "users": len(users), "personas_seeded": seeded,
                  "items": split.n_items, "auth": "on (service key; per-user HS256 tokens for persona GET/PUT)",
                  "setup_s": round(setup_s, 1)},
        "store": "redis-server (AOF, appendfsync always), loopback" if store == "redis" else "sqlite (WAL), run dir file",
        "workers": workers,
        "writer": "fallback (statistics only, no LLM): the soak tests the serving loop, not the LLM",
        "duration_s": duration_s, "load_wall_s": end["load_wall_s"], "rps_target": rps,
        "rps_achieved": round(sum(r.status != "not_sent" for r in soak.records) / end["load_wall_s"], 2),
        "mix": MIX, "requests_by_kind": dict(Counter(r.kind for r in soak.records)),
        "requests": len(soak.records),
        "by_status": dict(statuses),
        "errors_by_status": {s: n for s, n in statuses.items() if s not in ("200", "202", "not_sent")},
        "not_sent_in_flight_bound": statuses.get("not_sent", 0),
        "server_errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "latency_overall": latency(soak.records),
        "latency_by_kind": {k: latency([r for r in soak.records if r.kind == k]) for k in MIX},
        "p99_ms_first_window": wins[0]["p99_ms"], "p99_ms_last_window": wins[-1]["p99_ms"],
        "window_s": sample_every_s, "p99_vs_worker_kills": p99_after_kills(wins, soak.restarts, sample_every_s),
        "windows": wins,
        "rss_mb_start": {k: s0[k] for k in rss_keys}, "rss_mb_end": {k: s1[k] for k in rss_keys},
        "rss_slope_mb_per_min": {k: slope_mb_per_min(soak.samples, k, warmup_s) for k in rss_keys},
        "rss_slope_after_s": warmup_s,
        "worker_rss_slope_mb_per_min_per_pid": worker_slopes(soak.samples, skip_s=30.0),
        "rss_note": "workers_mb drops at each SIGKILL (a fresh process replaces the old one); the API process is never restarted",
        "rss_over_time": soak.samples,
        "worker_restarts": {"count": sum(r.get("respawned", False) for r in restarts), "attempted": len(restarts),
                            "every_s": list(restart_every_s), "events": restarts},
        "events": events,
        "queue_drained_after_s": end["queue_drained_after_s"], "workers_at_end": end["workers_at_end"],
        "server_exit_code": exit_code,
        "server_log": findings,
        "checks": {"no_acknowledged_event_lost": events["lost"] == 0 and events["stored_at_other_seq"] == 0,
                   "no_5xx": not any(s.startswith("5") for s in statuses),
                   "every_kill_respawned": all(r.get("respawned", False) for r in restarts) and bool(restarts)},
    }  # fmt: skip
    if plot_path is not None:
        plot(result, plot_path)
        result["plot"] = str(plot_path.relative_to(ROOT)) if plot_path.is_relative_to(ROOT) else str(plot_path)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    ap.add_argument("--rps", type=float, default=20.0, help="requests per second, all kinds together")
    ap.add_argument("--store", choices=["redis", "sqlite"], default="redis")
    ap.add_argument("--workers", type=int, default=2, help="refresh worker processes")
    ap.add_argument("--restart-every", type=float, nargs=2, default=[60.0, 120.0], metavar=("MIN_S", "MAX_S"),
                    help="a worker is SIGKILLed after a uniform delay in this range, again and again")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples and latency windows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "trust.json", help='JSON file; the figures go under key "soak"')
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.duration, args.rps, args.store, args.workers, tuple(args.restart_every), args.sample_every, args.seed,
                 plot_path=args.out.parent / "trust_soak.png")  # fmt: skip
    from trust import update

    result["command"] = ".venv/bin/python benchmarks/trust_soak.py " + " ".join(sys.argv[1:])
    update("soak", result, out=args.out)
    print(json.dumps({k: v for k, v in result.items() if k not in ("windows", "rss_over_time")}, indent=2))


if __name__ == "__main__":
    main()
