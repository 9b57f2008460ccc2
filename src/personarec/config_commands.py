"""``personarec config``: print the documented example config, or the resolved config of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from personarec.cli_common import ConfigOption, SetOption, resolve_config

app = typer.Typer(help="Show the config: every knob with its default, or what a config file resolves to.")


@app.command("example")
def example(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Print a complete config with every section, field, default and description (TOML)."""
    from personarec.config_example import example_toml

    text = example_toml()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}")


@app.command("show")
def show(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the config a run would use (file + --set overrides, defaults filled in) as JSON."""
    cfg = resolve_config(config, set_)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
