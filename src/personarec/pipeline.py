"""The end-to-end job behind ``make demo`` / ``personarec demo``.

data -> items -> personas -> recommenders -> evaluation -> report, each stage writing into one
run directory with its manifest: personas come before the models so that persona models train,
evaluate and serve with the LLM personas (the report counts how many lists used them). A rerun
into the same directory reuses the personas already written under the same config and refuses a
store written under another one. Every stage is the same function its own CLI verb calls, so the
demo is only the composition, never a second implementation.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.panel import Panel

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.run import RunDir


def demo(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset name (default from config: ml-100k)."),
    models: str = typer.Option(
        None, "--models", help="Comma-separated recommenders to train and compare (default: recommend.train in the config)."
    ),
    personas: bool = typer.Option(True, "--personas/--no-personas", help="Generate personas (personas.sample_users users; 0 = every user) before training."),
    set_: SetOption = None,
) -> None:
    """Run the whole pipeline on one dataset and write an HTML report (ML-100k: ~10 minutes on 2 cores)."""
    cfg = resolve_config(config, set_, run_dir=run_dir, data__dataset=dataset)
    if run_dir is None and config is None:
        cfg = cfg.model_copy(update={"run_dir": Path("runs") / cfg.data.dataset})
    run = RunDir(cfg.run_dir, cfg)
    start = time.perf_counter()
    from personarec.recommend.commands import parse_models
    from personarec.recommend.config import RecommendConfig

    names = parse_models(models, cfg.section("recommend", RecommendConfig))  # type: ignore[arg-type]

    console.rule("[bold]1/6 data")
    from personarec.data.commands import build_split

    _, split = build_split(cfg)
    console.print(split.protocol.render())

    console.rule("[bold]2/6 items: embeddings, semantic clusters, semantic IDs")
    from personarec.items.build import run_items
    from personarec.items.commands import print_summary

    space = run_items(cfg, run, split)
    print_summary(space, run.path / "items")

    if personas:
        console.rule("[bold]3/6 personas (the models below rank with them)")
        from personarec.personas.commands import run_personas

        run_personas(cfg, run, split, space)

    console.rule("[bold]4/6 recommenders")
    from personarec.recommend.service import RunService

    service = RunService(run.path, cfg, split=split, items=space, console=console)
    trained = service.train(names)

    console.rule("[bold]5/6 evaluation (full ranking)")
    from personarec.evaluate.commands import run_evaluation

    run_evaluation(cfg, run, split, trained, items=space)
    service.close()

    console.rule("[bold]6/6 report")
    from personarec.evaluate.report import write_report

    report = write_report(run.path)
    console.print(
        Panel.fit(
            f"run directory: {run.path}\nreport: {report}\ntotal time: {time.perf_counter() - start:.0f} s",
            title="done",
        )
    )
