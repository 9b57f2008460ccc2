"""``personarec data ...``: load a dataset, preprocess it and cut the split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, progress, resolve_config
from personarec.config import RunConfig
from personarec.errors import PersonarecError

app = typer.Typer(help="Load datasets, preprocess, split (writes the protocol card), inspect files.", no_args_is_help=True)

DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Dataset name: ml-100k, ml-latest-small, ml-1m, ml-20m, ml-25m, ml-32m, "
                 "amazon, amazon-office-2014, p5-beauty, p5-sports, p5-toys, tabular (see `personarec data list`)."),
]
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
    with run.stage("data.split", dataset=cfg.data.dataset) as entry, progress() as bar:
        task = bar.add_task(f"load {cfg.data.dataset}", total=3)
        dataset = load_dataset(
            cfg.data.dataset, cfg.data.data_dir, download=cfg.data.download,
            skip_bad_rows=cfg.data.skip_bad_rows, report=report, options=cfg.data.tabular,
        )  # fmt: skip
        bar.update(task, advance=1, description=f"filter + split {dataset.name}")
        split = make_split(dataset, cfg.data.preprocess, cfg.data.split)
        bar.update(task, advance=1, description="save split")
        save_split(split, run.file("split"))
        run.record_checksums(dataset.name, dataset.checksums)
        entry.update(dataset.summary(), skipped_rows=report.total)
        bar.update(task, advance=1, description=f"split of {dataset.name} ready")
    if report.total:
        for path, count in report.skipped.items():
            console.print(f"[yellow]skipped {count} malformed row(s)[/] in {path} (first lines: {report.examples[path]})")
    return dataset, split


def load_or_build_split(cfg: RunConfig):
    """The run's split from ``RUN_DIR/split``; built (and saved) from the config when absent."""
    from personarec.data.splits import load_split

    split_dir = Path(cfg.run_dir) / "split"
    if (split_dir / "protocol.json").exists():
        console.print(f"using the split in {split_dir}")
        return load_split(split_dir)
    console.print(f"no split in {split_dir}: building it from the config ({cfg.data.dataset})")
    return build_split(cfg)[1]


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


@app.command("list")
def list_datasets() -> None:
    """List the registered datasets and where their files would be found."""
    from personarec.data.registry import REGISTRY, _has_marker, cache_dir, known_datasets, shared_data_dir

    table = Table(title="datasets")
    for col in ("name", "description", "local copy"):
        table.add_column(col)
    for name, desc in known_datasets().items():
        spec = REGISTRY[name]
        where = next(
            (str(root / spec.folder) for root in (shared_data_dir(), cache_dir() / "datasets")
             if spec.folder and _has_marker(root / spec.folder, spec.marker)),
            "-" if spec.url is None else "downloadable",
        )  # fmt: skip
        table.add_row(name, desc, where)
    console.print(table)


@app.command()
def download(
    dataset: Annotated[str, typer.Argument(help="Registered dataset name with an official archive (ml-*).")],
    force: Annotated[bool, typer.Option("--force", help="Download even when a local copy exists.")] = False,
) -> None:
    """Download an official archive into the cache, verify its checksum and unpack it."""
    from personarec.data.download import download_dataset
    from personarec.data.registry import cache_dir, get_spec, locate

    spec = get_spec(dataset)
    if not force:
        try:
            console.print(f"{dataset}: local copy at {locate(dataset, download=False)}")
            return
        except PersonarecError:
            pass
    path = download_dataset(spec, cache_dir() / "datasets")
    console.print(f"{dataset}: verified and unpacked into {path}")


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="CSV/TSV, Parquet or JSON-lines file (.gz allowed).")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="How many rows of the head to read.")] = 1000,
    separator: Annotated[str | None, typer.Option("--separator", help="CSV field separator (default: guessed).")] = None,
) -> None:
    """Describe a file's columns and suggest a [data.tabular] mapping for it (TOML on stdout)."""
    from personarec.data.inspection import describe_columns, read_head, render_toml, suggest_mapping

    head = read_head(file, rows=rows, separator=separator)
    how = head.format + (f", separator {head.separator!r}, header {'yes' if head.has_header else 'no'}" if head.format == "csv" else "")
    table = Table(title=f"{file} (first {head.frame.height} rows; {how})")
    for col in ("column", "type", "examples", "nulls"):
        table.add_column(col)
    for info in describe_columns(head.frame):
        table.add_row(info.name, info.dtype, " | ".join(info.examples), f"{info.null_share:.0%}")
    console.print(table)
    suggestion = suggest_mapping(head.frame)
    if suggestion.unmapped:
        console.print(f"[yellow]could not map[/] {', '.join(suggestion.unmapped)} (no column with a known name)")
    console.print("suggested mapping (stdout; paste into the run config and check the protocol card of `data split`):")
    typer.echo(render_toml(head, suggestion), nl=False)
