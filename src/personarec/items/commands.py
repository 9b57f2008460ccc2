"""``personarec items ...``: build the item space of a run and look inside its clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, resolve_config
from personarec.errors import DataError
from personarec.items.space import ItemSpace

app = typer.Typer(
    help="Item embeddings, named two-level semantic clusters and semantic IDs (writes RUN_DIR/items).",
    no_args_is_help=True,
)
out = Console()  # results go to stdout (pipeable); progress and notes go to stderr


@app.command()
def build(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="sentence-transformers model: all-MiniLM-L6-v2 (bundled), a hub name or a local folder."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Texts per encoder batch.")] = None,
    n_coarse: Annotated[int | None, typer.Option("--n-coarse", help="Coarse topics (default: sqrt(n)/3).")] = None,
    n_fine: Annotated[int | None, typer.Option("--n-fine", help="Fine clusters in total (default: n/25).")] = None,
    rq_levels: Annotated[int | None, typer.Option("--rq-levels", help="Semantic-ID levels before the uniqueness digit.")] = None,
    rq_codes: Annotated[int | None, typer.Option("--rq-codes", help="Codes per semantic-ID level (default: 64 up to 20k items).")] = None,
    cache: Annotated[
        bool | None, typer.Option("--cache/--no-cache", help="Reuse embeddings cached on disk (model + text sha256).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Build the item space: embeddings, named coarse/fine clusters, unique semantic IDs.

    Uses RUN_DIR/split (built first when missing) and writes RUN_DIR/items.
    """
    from personarec.items.build import run_items
    from personarec.run import RunDir

    cfg = resolve_config(
        config, set_, run_dir=run_dir, items__model=model, items__batch_size=batch_size,
        items__n_coarse=n_coarse, items__n_fine=n_fine, items__rq_levels=rq_levels,
        items__rq_codes=rq_codes, items__cache=cache,
    )  # fmt: skip
    from personarec.data.commands import load_or_build_split

    split = load_or_build_split(cfg)
    space = run_items(cfg, RunDir(cfg.run_dir, cfg), split)
    print_summary(space, Path(cfg.run_dir) / "items")


def print_summary(space: ItemSpace, where: Path) -> None:
    """A table of what was built (counts, cache use, utilisation) and the largest clusters."""
    meta = space.meta
    emb, sid, secs = meta["embedding"], meta["semantic_ids"], meta["seconds"]
    table = Table(title=f"item space: {where}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("items", f"{space.n_items:,} ({meta['dataset']})")
    table.add_row("model", f"{meta['model']} (dim {meta['dim']})")
    table.add_row("embeddings", f"{emb['n_computed']:,} computed, {emb['n_cached']:,} from cache, {secs['embed']:.1f} s")
    table.add_row("clusters", f"{space.n_coarse} coarse topics, {space.n_fine} fine clusters, {secs['cluster']:.1f} s")
    table.add_row(
        "semantic IDs",
        f"{sid['levels']} x {sid['codes']} codes + 1 digit; utilisation "
        + ", ".join(f"{u:.0%}" for u in sid["utilisation"])
        + f"; {sid['colliding_items']} items needed the digit; duplicates after it: {sid['collisions']}",
    )
    out.print(table)
    biggest = np.argsort(-np.bincount(space.fine, minlength=space.n_fine), kind="stable")[:10]
    _cluster_table(space, biggest, title="largest fine clusters (personarec items show --list for all)")


def _titles(run_dir: Path, n_items: int) -> list[str]:
    path = run_dir / "split" / "catalogue.parquet"
    if path.exists():
        titles = pl.read_parquet(path, columns=["title"])["title"].to_list()
        if len(titles) == n_items:
            return [t or "" for t in titles]
    return []


def _cluster_table(space: ItemSpace, ids: np.ndarray, title: str) -> None:
    sizes = np.bincount(space.fine, minlength=space.n_fine)
    table = Table(title=title)
    for col in ("fine id", "name", "size", "coarse topic"):
        table.add_column(col, justify="right" if col in ("fine id", "size") else "left")
    for f in ids:
        parent = int(space.fine_parent[f])
        table.add_row(str(int(f)), space.fine_names[f], str(int(sizes[f])), f"{parent}: {space.coarse_names[parent]}")
    out.print(table)


def _resolve_cluster(space: ItemSpace, cluster: str, coarse: bool) -> int:
    names = space.coarse_names if coarse else space.fine_names
    level = "coarse" if coarse else "fine"
    if cluster.strip().lstrip("-").isdigit():
        cid = int(cluster)
        if not 0 <= cid < len(names):
            raise DataError(f"no {level} cluster {cid}: ids run from 0 to {len(names) - 1}")
        return cid
    matches = [i for i, n in enumerate(names) if n.lower() == cluster.strip().lower()]
    if not matches:
        raise DataError(f"no {level} cluster named {cluster!r}; list them with `personarec items show --list`")
    return matches[0]


@app.command()
def show(
    cluster: Annotated[
        str | None, typer.Option("--cluster", "-k", help="Cluster id or exact name to describe.")
    ] = None,
    coarse: Annotated[bool, typer.Option("--coarse", help="Address coarse topics instead of fine clusters.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List every cluster (id, name, size, parent).")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Members to print for one cluster.")] = 20,
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Describe one cluster (name, keywords, size, parent, members), or list them with --list.

    Members are shown with their titles and semantic IDs; --coarse addresses coarse topics.
    """
    cfg = resolve_config(config, set_, run_dir=run_dir)
    root = Path(cfg.run_dir)
    space = ItemSpace.load(root / "items")
    if list_:
        if coarse:
            _coarse_list(space)
        else:
            _cluster_table(space, np.arange(space.n_fine), title=f"{space.n_fine} fine clusters")
        return
    if cluster is None:
        raise DataError("give --cluster ID (or NAME), or --list")
    cid = _resolve_cluster(space, cluster, coarse)
    if coarse:
        _show_coarse(space, cid)
    else:
        _show_fine(space, cid, _titles(root, space.n_items), limit)


def _coarse_list(space: ItemSpace) -> None:
    sizes = np.bincount(space.coarse, minlength=space.n_coarse)
    table = Table(title=f"{space.n_coarse} coarse topics")
    for col in ("coarse id", "name", "items", "fine clusters"):
        table.add_column(col)
    for c in range(space.n_coarse):
        table.add_row(str(c), space.coarse_names[c], str(int(sizes[c])), str(len(space.children(c))))
    out.print(table)


def _show_coarse(space: ItemSpace, cid: int) -> None:
    keywords = space.coarse_keywords[cid] if space.coarse_keywords else []
    out.print(f"[bold]coarse topic {cid}: {space.coarse_names[cid]}[/]")
    out.print(f"items: {int((space.coarse == cid).sum())}   keywords: {', '.join(keywords) or '-'}")
    _cluster_table(space, space.children(cid), title="fine clusters in this topic")


def _show_fine(space: ItemSpace, cid: int, titles: list[str], limit: int) -> None:
    members = space.members(cid)
    parent = int(space.fine_parent[cid])
    keywords = space.fine_keywords[cid] if space.fine_keywords else []
    out.print(f"[bold]fine cluster {cid}: {space.fine_names[cid]}[/]")
    out.print(f"parent topic: {parent}: {space.coarse_names[parent]}")
    out.print(f"items: {len(members)}   keywords: {', '.join(keywords) or '-'}")
    table = Table(title=f"members (first {min(limit, len(members))} of {len(members)})")
    for col in ("item id", "title", "semantic id"):
        table.add_column(col)
    for i in members[:limit]:
        table.add_row(str(space.item_ids[i]), titles[i] if titles else "", space.semantic_id_str(int(i)))
    out.print(table)
