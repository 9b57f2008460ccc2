"""Options and helpers every CLI verb shares: the config file, overrides, progress, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from personarec.config import RunConfig, load_config

# Logs and CI are not terminals: give tables room instead of rich's 80-column default.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Run config file (TOML or YAML). Flags override its values.", exists=False),
]
RunDirOption = Annotated[Path | None, typer.Option("--run-dir", help="Where artifacts go (default: config run_dir).")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config field: --set personas.sample_users=20 (repeatable)."),
]


def resolve_config(config: Path | None, sets: list[str] | None = None, **overrides: Any) -> RunConfig:
    """Load the config file, apply flag overrides given as dotted keys (``data.dataset``) and
    validate every section now (an unknown key anywhere names its section before any work starts)."""
    from personarec.config_example import validate_sections

    dotted = {k.replace("__", "."): v for k, v in overrides.items()}
    return validate_sections(load_config(config, dotted, sets))


def progress() -> Progress:
    """The one progress bar style used by every long step."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
