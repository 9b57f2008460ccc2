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


TOP_LEVEL = {"serve": serve}
