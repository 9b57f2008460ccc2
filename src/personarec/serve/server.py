"""Start the API (uvicorn) and the refresh worker pool over one store, and stop them cleanly.

This is the plain function behind ``personarec serve`` (and what a pipeline would call):
:func:`run_server` blocks until SIGINT/SIGTERM, then stops accepting requests, lets the workers
finish the jobs they hold (``shutdown_grace_s``) and exits. Queued jobs stay in the durable queue
for the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from personarec.config import RunConfig
from personarec.errors import ConfigError
from personarec.personas.config import PersonasConfig
from personarec.serve.assets import ServingAssets
from personarec.serve.auth import Authenticator
from personarec.serve.config import ServeConfig
from personarec.personas.store.base import ServingStore, open_serving_store
from personarec.personas.store.url import StoreURL
from personarec.serve.worker import WorkerPool, WorkerSpec

log = logging.getLogger("personarec.serve")


def store_url(run_dir: Path, serve: ServeConfig, personas: PersonasConfig) -> StoreURL:
    """The serving store: ``serve.store``, else the personas stage's store (the SQLite file in the
    run dir by default), so personas generated offline are served without a copy; personas written
    to a parquet sink are served from ``RUN_DIR/serving.db``, into which they are imported."""
    from personarec.personas.commands import store_url as personas_store

    offline = personas_store(run_dir, personas.model_copy(update={"hindsight": False}))
    if serve.store:
        return StoreURL.parse(serve.store, run_dir)
    return StoreURL.parse("serving.db", run_dir) if offline.scheme == "parquet" else offline


def offline_copy(run_dir: Path, personas: PersonasConfig, target: StoreURL) -> StoreURL | None:
    """The run's offline persona store (SQLite file or parquet sink) when it is not the serving
    store itself: a second copy of every persona, which erasure must reach too."""
    from personarec.personas.commands import store_url as personas_store

    source = personas_store(run_dir, personas.model_copy(update={"hindsight": False}))
    if source.scheme == "redis" or source == target or not source.exists():
        return None
    return source


def import_offline_personas(run_dir: Path, personas: PersonasConfig, store: ServingStore, target: StoreURL) -> int:
    """Copy the personas written offline into a different serving store (e.g. Redis);
    version-guarded, so re-running it never replaces newer online personas. Users erased in the
    serving store (through any API host) are deleted from this host's offline copy instead of
    being copied back (this runs at every start)."""
    source = offline_copy(run_dir, personas, target)
    if source is None:
        return 0
    src = source.open()
    n = erased = 0
    try:
        for user in list(src.user_ids()):
            state = store.user_state(user)
            if state is not None and state.erased:
                erased += src.delete_user(user)
                continue
            p = src.get(user)
            if p is not None and store.put(p):
                n += 1
        if erased:
            src.purge(wait=True)
            log.info("erased %d users from the offline copy %s (erased through the API)", erased, source)
    finally:
        src.close()
    return n


def section(cfg: RunConfig) -> tuple[ServeConfig, PersonasConfig]:
    return cfg.section("serve", ServeConfig), cfg.section("personas", PersonasConfig)  # type: ignore[return-value]


def _with_overrides(serve: ServeConfig, overrides: dict[str, Any] | None) -> ServeConfig:
    if not overrides:
        return serve
    return serve.model_validate({**serve.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})


def worker_pool(run_dir: Path, serve: ServeConfig, personas: PersonasConfig, url: StoreURL, prefix: str = "") -> WorkerPool:
    """``serve.workers`` refresh processes over the store at ``url`` (not started); ``prefix``
    makes worker ids (lease owners, logs) unique across hosts."""
    spec = lambda wid: WorkerSpec(  # noqa: E731
        run_dir=str(run_dir), store_url=str(url), serve=serve.model_dump(mode="json"),
        personas=personas.model_dump(mode="json"), worker_id=f"{prefix}{wid}",
    )  # fmt: skip
    return WorkerPool(spec, serve.workers, serve.shutdown_grace_s)


def run_workers(cfg: RunConfig, run_dir: Path, overrides: dict[str, Any] | None = None) -> None:
    """Only the refresh workers (no API) until SIGINT/SIGTERM: the worker half of a fleet in which
    API processes (``serve --workers 0``) and worker processes on other hosts share one Redis."""
    serve, personas = section(cfg)
    serve = _with_overrides(serve, overrides)
    run_dir = Path(run_dir)
    url = store_url(run_dir, serve, personas)
    if serve.workers < 1:
        raise ConfigError("workers: --workers must be at least 1")
    for part in ("split", "items"):  # fail here, once, rather than in every worker process
        if not (run_dir / part).is_dir():
            raise ConfigError(f"{run_dir / part} not found: the workers need the run's split and item space")
    open_serving_store(url).close()  # an unknown scheme or an unreachable store: a clear error now
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    pool = worker_pool(run_dir, serve, personas, url, prefix=f"{socket.gethostname()}-{os.getpid()}-").start()
    log.info("%d refresh workers on %s (run dir %s); Ctrl-C drains them", serve.workers, url, run_dir)
    try:
        stop.wait()
    finally:
        log.info("draining workers ...")
        pool.shutdown()
        log.info("stopped")


def warn_auth_off(serve: ServeConfig) -> None:
    """Said where nobody can miss it: anyone who reaches the port can read, edit and erase personas."""
    bar = "!" * 78
    msg = (
        f"\n{bar}\n  AUTHENTICATION IS OFF (serve.auth.mode = \"off\"): anyone who can reach "
        f"{serve.host}:{serve.port}\n  can read, edit and erase every user's persona. Local development only.\n{bar}\n"
    )
    log.warning(msg)
    if not logging.getLogger().handlers:
        print(msg, file=sys.stderr, flush=True)


def run_server(cfg: RunConfig, run_dir: Path, overrides: dict[str, Any] | None = None) -> None:
    """Serve ``run_dir`` until interrupted (see the module docstring)."""
    import uvicorn

    from personarec.serve.api import ApiState, create_app

    serve, personas = section(cfg)
    serve = _with_overrides(serve, overrides)
    run_dir = Path(run_dir)
    try:
        import torch

        torch.set_num_threads(serve.api_threads)
    except ImportError:
        pass
    if not Authenticator(serve.auth).enabled:  # no credentials configured: a clear error before anything starts
        warn_auth_off(serve)
    url = store_url(run_dir, serve, personas)
    try:
        assets = ServingAssets.load(run_dir, stage=personas.history_stage, model=serve.model, ranking=serve.ranking)
    except FileNotFoundError as exc:
        raise ConfigError(f"{run_dir}: {exc}") from None
    if assets.model is not None:
        from personarec.serve.assets import limit_model_threads

        limit_model_threads(assets.model, serve.api_threads)
    store = open_serving_store(url)
    n = import_offline_personas(run_dir, personas, store, url)  # 0 when serving the offline store itself
    if n:
        log.info("imported %d offline personas into %s", n, url)
    sync_writer = None
    if serve.benchmark_endpoints:
        from personarec.serve.writers import build_writer

        sync_writer = build_writer(serve.writer, assets, personas, serve)

    pool = worker_pool(run_dir, serve, personas, url).start() if serve.workers else None
    state = ApiState(store=store, assets=assets, config=serve, worker_pids=pool.pids if pool else None, sync_writer=sync_writer,
                     offline_copy=offline_copy(run_dir, personas, url))  # fmt: skip
    app = create_app(state)
    server = uvicorn.Server(
        uvicorn.Config(app, host=serve.host, port=serve.port, log_level="warning", access_log=False, lifespan="off",
                       timeout_keep_alive=75)
    )
    log.info("serving %s on http://%s:%d (store %s, %d workers)", run_dir, serve.host, serve.port, url, serve.workers)
    # uvicorn handles SIGINT/SIGTERM itself and re-raises the signal once it has shut down; with
    # these handlers in place that re-raise is a no-op, so the workers are drained below instead
    # of the process dying with them mid-job.
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        server.run()
    finally:
        if pool is not None:
            log.info("draining workers ...")
            pool.shutdown()
        if sync_writer is not None:
            sync_writer.close()
        store.close()
        log.info("stopped")
