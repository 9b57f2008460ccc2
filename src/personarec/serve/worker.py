"""Refresh workers: processes that take jobs from the durable queue and rewrite personas.

Each worker is a separate process (``multiprocessing`` with *spawn*: no state inherited from
the API process, one LLM context each) at lower CPU priority (``nice``) than the API, so the
request path stays fast while personas are being written. A job's lease is renewed by a
heartbeat thread while the LLM works; if the process dies, the lease expires and another worker
claims the job again. Shutdown (SIGTERM) lets the current job finish.

LLM failure policy: the engine retries, then falls back. A user who already has a persona keeps
it (the job is retried later with backoff, and dropped after ``max_attempts``); a user with no
persona gets the fallback persona, so every known user can be served with a persona.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personarec.personas.config import PersonasConfig
from personarec.serve.assets import ServingAssets
from personarec.serve.config import ServeConfig
from personarec.serve.queue import RefreshQueue
from personarec.personas.store.base import RefreshJob, ServingStore, open_serving_store
from personarec.serve.writers import PersonaWriter, build_writer

log = logging.getLogger("personarec.serve.worker")

#: refresh-lag histogram buckets (seconds); the counters live in the store so that the API
#: process can export what every worker measured
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


def lag_stats(lag_s: float) -> dict[str, float]:
    bucket = next((b for b in LAG_BUCKETS if lag_s <= b), float("inf"))
    return {f"lag_bucket:{bucket}": 1.0, "lag_sum": lag_s, "lag_count": 1.0}


@dataclass
class WorkerSpec:
    """Everything a worker process needs, picklable."""

    run_dir: str
    store_url: str
    serve: dict[str, Any]
    personas: dict[str, Any]
    worker_id: str


class Periodic:
    """A daemon thread that calls ``tick()`` every ``interval_s`` while the ``with`` block runs;
    ``tick()`` returning False stops it. Store errors are logged, never raised: the store may
    blip, and the next tick retries."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def tick(self) -> bool:
        raise NotImplementedError

    def _safe_tick(self) -> bool:
        try:
            return self.tick()
        except Exception:  # noqa: BLE001 - see the class docstring
            log.warning("%s failed", self._thread.name, exc_info=True)
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._safe_tick():
                return

    def __enter__(self) -> Periodic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class Heartbeat(Periodic):
    """Renews a job's lease every ``lease_s / 3``; stops once the lease is lost (erased, or
    presumed dead: completing is still safe)."""

    def __init__(self, queue: RefreshQueue, job: RefreshJob) -> None:
        super().__init__(queue.config.lease_s / 3, name=f"lease-{job.user_id}")
        self.queue, self.job = queue, job

    def tick(self) -> bool:
        return self.queue.renew(self.job)


class Liveness(Periodic):
    """A worker's heartbeat in the store (``personarec_workers_ready`` counts the live ones): every
    ``LIVENESS_S`` seconds, valid for ``LIVENESS_TTL_S``, so a worker killed with SIGKILL drops out
    of the count within that time, on whatever host it ran; a clean stop removes it at once."""

    LIVENESS_S = 5.0
    LIVENESS_TTL_S = 20.0

    def __init__(self, store: ServingStore, worker_id: str) -> None:
        super().__init__(self.LIVENESS_S, name=f"liveness-{worker_id}")
        self.store, self.worker_id = store, worker_id

    def tick(self) -> bool:
        self.store.heartbeat(self.worker_id, time.time() + self.LIVENESS_TTL_S)
        return True

    def __enter__(self) -> Liveness:
        self._safe_tick()  # alive from the start, not after the first interval
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        try:
            self.store.heartbeat(self.worker_id, 0.0)
        except Exception:  # noqa: BLE001 - the store may be gone at shutdown; the entry expires
            pass


class RefreshWorker:
    """The loop of one worker; usable in-process too (tests, ``--workers 0`` debugging)."""

    def __init__(self, store: ServingStore, assets: ServingAssets, writer: PersonaWriter, serve: ServeConfig, owner: str) -> None:
        self.store, self.assets, self.writer, self.serve, self.owner = store, assets, writer, serve, owner
        self.queue = RefreshQueue(store, serve.queue)
        self.stop = threading.Event()

    def process(self, job: RefreshJob) -> str:
        """Refresh one claimed job; returns what happened (for logs and tests)."""
        return self.process_many([job])[0]

    def process_many(self, jobs: list[RefreshJob]) -> list[str]:
        """Refresh several claimed jobs with one writer call (the compact engine batches them)."""
        from contextlib import ExitStack

        from personarec.serve.writers import WriteResult

        outcome: dict[int, str] = {}
        live, histories = [], []
        for i, job in enumerate(jobs):
            state = self.store.user_state(job.user_id)
            if state is None or state.epoch != job.epoch:
                self.queue.complete(job, None)  # erased since the job was queued
                outcome[i] = "erased"
                continue
            live.append(i)
            histories.append(self.assets.live_history(job.user_id, self.store, state, upto_seq=job.target_seq))
        if live:
            with ExitStack() as stack:
                for i in live:
                    stack.enter_context(Heartbeat(self.queue, jobs[i]))
                try:
                    results = self.writer.write_many(histories)
                except Exception as exc:  # noqa: BLE001 - a writer bug must not kill the worker
                    log.exception("writer failed for %s", [jobs[i].user_id for i in live])
                    results = [WriteResult(None, "fallback", [f"error: {type(exc).__name__}: {exc}"]) for _ in live]
            for i, result in zip(live, results, strict=True):
                outcome[i] = self._finish(jobs[i], result)
        return [outcome[i] for i in range(len(jobs))]

    def _finish(self, job: RefreshJob, result) -> str:
        stats: dict[str, float] = {"refresh_seconds": result.seconds, "refresh_jobs": 1.0}
        if result.status == "generated" and result.persona is not None:
            persona = result.persona.model_copy(update={"version": job.target_seq})
            fallback = persona.provenance.fallback  # e.g. the fallback writer: counted as what it is
            stats.update(refreshes=1.0, **{"fallbacks" if fallback else "llm_personas": 1.0})
            stats.update(lag_stats(time.time() - job.first_at))
            self.queue.complete(job, persona, stats)
            return "fallback" if fallback else "generated"
        if result.status == "unusable":
            stats["unusable"] = 1.0
            self.queue.complete(job, None, stats)
            return "unusable"
        stats["llm_errors"] = 1.0
        if self.store.get(job.user_id) is None and result.persona is not None:
            persona = result.persona.model_copy(update={"version": job.target_seq})
            stats.update(fallbacks=1.0, **lag_stats(time.time() - job.first_at))
            self.queue.complete(job, persona, stats)
            return "fallback"
        self.queue.fail(job, stats)  # keep serving the last persona; retry later
        return "kept"

    def run_once(self) -> str | None:
        """Claim up to ``writer.batch_size`` due jobs and refresh them together."""
        jobs = []
        for _ in range(max(1, int(getattr(self.writer, "batch_size", 1)))):
            job = self.queue.claim(self.owner)
            if job is None:
                break
            jobs.append(job)
        if not jobs:
            return None
        return self.process_many(jobs)[-1]

    def run(self) -> None:
        poll = self.serve.queue.poll_interval_s
        while not self.stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # noqa: BLE001 - store unavailable: wait and retry
                log.warning("worker %s: store error", self.owner, exc_info=True)
                done = None
                self.stop.wait(1.0)
            if done is None:
                self.stop.wait(poll)


def worker_main(spec: WorkerSpec) -> None:
    """Entry point of a worker process; SIGTERM = finish the current job, then exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates Ctrl-C
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    serve = ServeConfig.model_validate(spec.serve)
    personas = PersonasConfig.model_validate(spec.personas)
    if serve.worker_nice:
        try:
            os.nice(serve.worker_nice)
        except OSError:
            pass
    try:
        import torch

        torch.set_num_threads(serve.llm_threads)
    except ImportError:
        pass
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{spec.worker_id}] %(levelname)s %(message)s")
    assets = ServingAssets.load(Path(spec.run_dir), stage=personas.history_stage, with_model=False)
    writer = build_writer(serve.writer, assets, personas, serve)
    store = open_serving_store(spec.store_url)
    worker = RefreshWorker(store, assets, writer, serve, owner=f"{spec.worker_id}:{os.getpid()}")
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    if stopping:  # SIGTERM arrived while loading
        worker.stop.set()
    log.info("ready (writer=%s, store=%s)", serve.writer, spec.store_url)
    try:
        with Liveness(store, worker.owner):
            worker.run()
    finally:
        writer.close()
        store.close()
        log.info("stopped")


class WorkerPool:
    """N worker processes, respawned if one dies (e.g. killed), drained on shutdown.

    Shutdown is signalled with SIGTERM, not a shared ``multiprocessing.Event``: an Event's
    ``set()`` can block forever once a process that waited on it has been SIGKILLed."""

    #: a worker that dies sooner than this after its start counts as a crash loop: the next
    #: respawn waits 1, 2, 4 ... up to 60 s instead of spinning (a bad store URL, a broken run dir)
    QUICK_EXIT_S = 30.0

    def __init__(self, make_spec, n: int, grace_s: float = 60.0) -> None:
        self.make_spec, self.n, self.grace_s = make_spec, n, grace_s
        self.ctx = mp.get_context("spawn")
        self.procs: list[mp.process.BaseProcess] = []
        self._started: list[float] = []
        self._quick_exits: list[int] = []
        self._not_before: list[float] = []
        self._closing = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.respawns = 0

    def _spawn(self, i: int) -> mp.process.BaseProcess:
        p = self.ctx.Process(target=worker_main, args=(self.make_spec(f"w{i}"),), name=f"personarec-worker-{i}")
        p.start()
        self._started[i] = time.monotonic()
        return p

    def start(self) -> WorkerPool:
        self._started, self._quick_exits, self._not_before = [0.0] * self.n, [0] * self.n, [0.0] * self.n
        self.procs = [self._spawn(i) for i in range(self.n)]
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="worker-supervisor")
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._closing.wait(0.5):
            now = time.monotonic()
            for i, p in enumerate(self.procs):
                if p.is_alive() or self._closing.is_set():
                    continue
                if self._not_before[i] == 0.0:  # just found dead: decide when to respawn
                    quick = now - self._started[i] < self.QUICK_EXIT_S
                    self._quick_exits[i] = self._quick_exits[i] + 1 if quick else 0
                    delay = min(60.0, 2.0 ** (self._quick_exits[i] - 1)) if quick else 0.0
                    self._not_before[i] = now + delay
                    log.warning("worker %d (pid %s) exited with %s; respawning in %.0f s", i, p.pid, p.exitcode, delay)
                if now >= self._not_before[i]:
                    self._not_before[i] = 0.0
                    self.procs[i] = self._spawn(i)
                    self.respawns += 1

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.is_alive() and p.pid is not None]

    def shutdown(self) -> None:
        """Ask every worker to finish its current job, wait up to ``grace_s``, then terminate."""
        self._closing.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        for p in self.procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker finishes its job and exits
        deadline = time.monotonic() + self.grace_s
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                log.warning("worker pid %s did not stop within %.0f s; terminating", p.pid, self.grace_s)
                p.kill()
                p.join(5)
