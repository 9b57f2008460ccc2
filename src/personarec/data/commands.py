"""``personarec data ...``: load a dataset, preprocess it and cut the split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.config import RunConfig

app = typer.Typer(help="Load datasets, preprocess, split (writes the protocol card).", no_args_is_help=True)

DatasetOption = Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset name, e.g. ml-100k, ml-latest-small.")]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Local folder with the dataset's files (no download).")]
SkipBadOption = Annotated[bool | None, typer.Option("--skip-bad-rows/--strict", help="Skip and count malformed rows instead of stopping.")]


def build_split(cfg: RunConfig):
    """Load, preprocess and split the configured dataset; save it under ``run_dir/split``."""
    from personarec.data.parsing import ReadReport
    from personarec.data.registry import load_dataset
    from personarec.data.splits import make_split, save_split
    from personarec.run import RunDir

    run = RunDir(cfg.run_dir, cfg)
    report = ReadReport()
    with run.stage("data.split", dataset=cfg.data.dataset) as entry:
        with console.status(f"loading {cfg.data.dataset}"):
            dataset = load_dataset(
                cfg.data.dataset, cfg.data.data_dir, download=cfg.data.download,
                skip_bad_rows=cfg.data.skip_bad_rows, report=report,
            )
            split = make_split(dataset, cfg.data.preprocess, cfg.data.split)
        save_split(split, run.file("split"))
        run.record_checksums(dataset.name, dataset.checksums)
        entry.update(dataset.summary(), skipped_rows=report.total)
    if report.total:
        console.print(f"[yellow]skipped {report.total} malformed rows[/] {report.skipped} (first lines: {report.examples})")
    return dataset, split


@app.command()
def split(
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    skip_bad_rows: SkipBadOption = None,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Load a dataset, filter it, cut train/valid/test and print the protocol card."""
    cfg = resolve_config(config, set_, run_dir=run_dir, data__dataset=dataset, data__data_dir=data_dir, data__skip_bad_rows=skip_bad_rows)
    ds, sp = build_split(cfg)
    table = Table(title=f"{ds.name} ({ds.source})")
    for key in ("loaded", "after split"):
        table.add_column(key)
    s = ds.summary()
    table.add_row(f"{s['interactions']} events, {s['users']} users, {s['items']} items",
                  f"{sp.protocol.n_train + sp.protocol.n_valid + sp.protocol.n_test} events, {sp.n_users} users, {sp.n_items} items")
    console.print(table)
    console.print(sp.protocol.render())
    console.print(f"split written to {cfg.run_dir / 'split'}")
