"""``personarec serve``: the recommendation API and the persona refresh workers."""

from __future__ import annotations

import logging
from pathlib import Path
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


def erasures(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    store: Annotated[str | None, typer.Option("--store", help="Serving store URL (default: the one `serve` uses).")] = None,
    since_export: Annotated[
        Path | None,
        typer.Option("--since-export", help="An export (`personarec personas export`): name its users erased since it was taken."),
    ] = None,
    since: Annotated[float, typer.Option("--since", help="Unix time: users erased at or after it.")] = 0.0,
    purge: Annotated[bool, typer.Option("--purge", help="Also purge the store's files now (SQLite WAL checkpoint, Redis AOF rewrite).")] = False,
    set_: SetOption = None,
) -> None:
    """List users erased through the API (one per line: user id, erased-at), so that copies made
    before (exports, warehouses, caches) can be cleaned; with --since-export, only the export's
    own users erased after it was taken. Exit status 1 when the export holds erased users."""
    import json
    from datetime import datetime, timezone

    from personarec.errors import DataError
    from personarec.personas.generate import export_manifest_path
    from personarec.personas.store.base import open_serving_store
    from personarec.personas.store.url import StoreURL
    from personarec.serve.server import section, store_url

    cfg = resolve_config(config, set_, run_dir=run_dir)
    serve_cfg, personas = section(cfg)
    url = StoreURL.parse(store, cfg.run_dir) if store else store_url(cfg.run_dir, serve_cfg, personas)
    among: set[str] | None = None
    if since_export is not None:
        manifest = export_manifest_path(since_export)
        if not manifest.is_file():
            raise DataError(f"no manifest beside the export (expected {manifest}); re-export with this version")
        meta = json.loads(manifest.read_text())
        since, among = max(since, float(meta["exported_at"])), set(meta["user_ids"])
    st = open_serving_store(url)
    try:
        if purge:
            st.purge(wait=True)
        rows = [(u, t) for u, t in st.erasures(since) if among is None or u in among]
    finally:
        st.close()
    for user, t in rows:
        typer.echo(f"{user}\t{datetime.fromtimestamp(t, timezone.utc).isoformat(timespec='seconds')}")
    console.print(f"[dim]{len(rows)} erased user(s) since {since:.0f} in {url}[/]")
    if among is not None and rows:
        raise typer.Exit(1)


TOP_LEVEL = {"serve": serve, "workers": workers, "erasures": erasures}
