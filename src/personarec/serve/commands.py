"""``personarec serve``: the recommendation API and the persona refresh workers."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config


def serve(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store URL: sqlite:///path.db or redis://host:port/0 (default: RUN_DIR/personas.db)."),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Refresh worker processes (default 1; 0 = API only).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port (default 8000).")] = None,
    writer: Annotated[
        str | None, typer.Option("--writer", help="Persona writer of the workers: llm (default) or fallback (no LLM).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Trained recommender under RUN_DIR/models (default: sasrec if present).")] = None,
    set_: SetOption = None,
) -> None:
    """Serve recommendations from RUN_DIR (split, item space, trained model) and keep personas fresh.

    Starts the HTTP API (OpenAPI at /docs and /openapi.json) and N refresh worker processes that
    rewrite personas in the background as events arrive. Ctrl-C stops accepting requests, lets
    workers finish their current persona, and exits; queued refreshes persist in the store.
    """
    from personarec.serve.server import run_server

    cfg = resolve_config(config, set_, run_dir=run_dir)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides = {"store": store, "workers": workers, "host": host, "port": port, "writer": writer, "model": model}
    console.print(f"[bold]personarec serve[/] run dir {cfg.run_dir}")
    run_server(cfg, cfg.run_dir, overrides)


def workers(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store URL shared with the API processes, e.g. redis://host:6379/0 (default: RUN_DIR/personas.db)."),
    ] = None,
    n: Annotated[int | None, typer.Option("--workers", "-w", help="Refresh worker processes on this host (default: serve.workers).")] = None,
    writer: Annotated[
        str | None, typer.Option("--writer", help="Persona writer: llm (default) or fallback (no LLM).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Run only refresh workers (no API): the worker half of a fleet sharing one Redis store.

    Start API processes with `personarec serve --store redis://... --workers 0` and, on as many
    hosts as you need, `personarec workers --store redis://... -w N`. Every process reads the same
    durable queue (leases, debounce, priority, bounded with shedding: see the serve.queue config section); a worker
    that dies loses nothing (its lease expires and another worker takes the job). Ctrl-C / SIGTERM
    lets each worker finish its current personas, then exits.
    """
    from personarec.serve.server import run_workers

    cfg = resolve_config(config, set_, run_dir=run_dir)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    console.print(f"[bold]personarec workers[/] run dir {cfg.run_dir}")
    run_workers(cfg, cfg.run_dir, {"store": store, "workers": n, "writer": writer})


TOP_LEVEL = {"serve": serve, "workers": workers}
