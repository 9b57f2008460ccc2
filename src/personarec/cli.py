"""The ``personarec`` command: one verb per stage, in data-flow order.

Errors caused by input or setup (:class:`~personarec.errors.PersonarecError`) are printed as one
red line and exit with status 2; a traceback means a bug.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.markup import escape

from personarec.cli_common import console
from personarec.errors import PersonarecError

app = typer.Typer(
    name="personarec",
    help="LLM-written user interest personas for recommender systems: data -> items -> personas -> recommenders -> serving -> evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: (module, sub-command name). Each module exposes ``app: typer.Typer``; a stage that is not
#: installed yet is simply absent from ``--help``.
SUBCOMMANDS = [
    ("personarec.data.commands", "data"),
    ("personarec.items.commands", "items"),
    ("personarec.personas.commands", "personas"),
    ("personarec.recommend.commands", "train"),
    ("personarec.evaluate.commands", "evaluate"),
    ("personarec.distill.commands", "distill"),
    ("personarec.serve.commands", "serve"),
    ("personarec.serve.auth_commands", "auth"),
    ("personarec.config_commands", "config"),
]

for module_name, name in SUBCOMMANDS:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("personarec"):
            continue
        raise
    sub = getattr(module, "app", None)
    if isinstance(sub, typer.Typer):
        app.add_typer(sub, name=name)
    for extra_name, func in getattr(module, "TOP_LEVEL", {}).items():
        app.command(extra_name)(func)

try:
    from personarec.pipeline import demo  # the end-to-end job

    app.command("demo")(demo)
except ModuleNotFoundError as exc:  # pragma: no cover - only while the pipeline module is absent
    if not (exc.name and exc.name.startswith("personarec")):
        raise


def main() -> None:
    try:
        app()
    except PersonarecError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)  # one line, whatever the width
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
