"""``personarec personas ...``: generate, show, export and evaluate personas of a run.

Reads the run's split (``RUN_DIR/split``) and item space (``RUN_DIR/items``); personas go to the
SQLite store ``RUN_DIR/personas.db`` (hindsight training labels to ``RUN_DIR/personas-hindsight.db``
so they never mix with the personas served to users). Batch records are appended to
``RUN_DIR/personas/generation.jsonl``; ``evaluate`` writes ``RUN_DIR/personas/quality.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import typer
from rich.panel import Panel
from rich.table import Table

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.config import RunConfig
from personarec.errors import ConfigError, DataError
from personarec.personas.config import PersonasConfig
from personarec.personas.schema import Persona
from personarec.personas.store.url import StoreURL

app = typer.Typer(
    help="LLM user personas: generate (batch, resumable), show, export, evaluate quality.",
    no_args_is_help=True,
)

DEFAULT_STORE = "personas.db"
HINDSIGHT_STORE = "personas-hindsight.db"


# -- helpers -------------------------------------------------------------------------------------
def personas_config(cfg: RunConfig) -> PersonasConfig:
    return cfg.section("personas", PersonasConfig)  # type: ignore[return-value]


def store_url(run_dir: Path, pc: PersonasConfig) -> StoreURL:
    """The store of this config: hindsight labels get their own file unless a store is set explicitly."""
    name = HINDSIGHT_STORE if pc.hindsight and pc.store == DEFAULT_STORE else pc.store
    return StoreURL.parse(name, run_dir)


#: personas settings that change who gets a persona or how fast, not what a persona says
FINGERPRINT_IGNORES = frozenset({"sample_users", "concurrency", "engine", "ray"})


def persona_fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """What the personas in a run's store depend on: data, item space and personas config, seed."""
    pc = personas_config(cfg).model_dump(mode="json", exclude=set(FINGERPRINT_IGNORES))
    items = cfg.items.model_dump(mode="json")
    return {"seed": cfg.seed, "data": cfg.data.model_dump(mode="json"), "items": items, "personas": pc}


def check_persona_store(cfg: RunConfig) -> None:
    """Refuse a persona store written under another config: reusing it silently would make two
    runs of the same command disagree (and mix personas of different catalogues or prompts)."""
    from personarec.run import RunDir

    url = store_url(cfg.run_dir, personas_config(cfg))
    if not url.exists():
        return
    recorded = RunDir(cfg.run_dir).manifest().get("persona_stores", {}).get(_store_key(cfg))
    if recorded is None:
        return  # a store made by hand or by an older version: nothing to compare against
    current = persona_fingerprint(cfg)
    if recorded != current:
        changed = _differences(recorded, current)
        raise ConfigError(
            f"{url} holds personas written under another config (differs in: {', '.join(changed)}); "
            f"delete it or use another run directory (--run-dir)"
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (e.g. ``personas.max_interests``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def record_persona_store(cfg: RunConfig) -> None:
    """Note in the manifest which config the store's personas were written under."""
    from personarec.run import RunDir

    run = RunDir(cfg.run_dir)
    stores = run.manifest().get("persona_stores", {})
    stores[_store_key(cfg)] = persona_fingerprint(cfg)
    run.record(persona_stores=stores)


def _store_key(cfg: RunConfig) -> str:
    return store_url(cfg.run_dir, personas_config(cfg)).name


def load_inputs(cfg: RunConfig):
    """The run's split and item space, with a clear message when a stage has not run yet."""
    from personarec.data.splits import load_split
    from personarec.items.space import ItemSpace

    run_dir = Path(cfg.run_dir)
    if not (run_dir / "split" / "protocol.json").exists():
        raise DataError(
            f"no split in {run_dir / 'split'}; run `personarec data split --run-dir {run_dir}` first"
        )
    split = load_split(run_dir / "split")
    if not (run_dir / "items" / "items.parquet").exists():
        raise DataError(
            f"no item space in {run_dir / 'items'}; run `personarec items build --run-dir {run_dir}` first"
        )
    return split, ItemSpace.load(run_dir / "items")


def render_persona(persona: Persona) -> Panel:
    """A persona as a readable panel (summary, interests with weights, explore topics with reasons)."""
    lines = [f"[italic]{persona.summary}[/]", "", "[bold]interests[/]"]
    lines += [f"  {i.cluster}  [dim]{i.weight:.2f}[/]" for i in persona.interests]
    lines += ["", "[bold]explore[/]"]
    lines += [f"  {e.cluster} [dim]— {e.reason}[/]" for e in persona.explore]
    p = persona.provenance
    tag = " [yellow](fallback)[/]" if p.fallback else ""
    lines += [
        "",
        f"[dim]{p.backend}/{p.model} · {p.writer}{' · hindsight' if p.hindsight else ''} · prompt {p.prompt_version} · "
        f"history {p.history_length} events · {p.input_tokens}+{p.output_tokens} tokens · {p.latency_s:.2f}s · "
        f"attempts {p.attempts}[/]",
    ]
    return Panel("\n".join(lines), title=f"user {persona.user_id} · v{persona.version}{tag}", expand=False)


def _log(run_dir: Path, report) -> None:
    d = Path(run_dir) / "personas"
    d.mkdir(parents=True, exist_ok=True)
    with (d / "generation.jsonl").open("a") as fh:
        fh.write(json.dumps(report.summary()) + "\n")
    (d / "generation.json").write_text(
        json.dumps({**report.summary(), "failures": [f.model_dump() for f in report.failures]}, indent=2)
    )


def generate_for_run(cfg: RunConfig, split, space, users=None, *, show_progress: bool = True, show: int = 3):
    """Generate personas for ``users`` (default: ``sample_users``) into the run's store; log the batch.
    Returns the report and the stored personas of ``show`` users of the batch (a seeded sample).

    ``personas.engine`` picks the runner: this process (local) or an actor pool on Ray."""
    from personarec.personas.store.base import open_store

    pc = personas_config(cfg)
    check_persona_store(cfg)
    chosen = users if users is not None else (pc.sample_users or None)
    store = open_store(store_url(cfg.run_dir, pc))
    backend = None
    try:
        if pc.engine == "ray":
            from personarec.personas.ray_runner import generate_personas_ray

            report = generate_personas_ray(split, space, chosen, store, pc, seed=cfg.seed, show_progress=show_progress)
        else:
            from personarec.personas.backends.base import build_backend
            from personarec.personas.generate import generate_personas

            backend = build_backend(pc.backend, pc.backend_config)
            report = generate_personas(
                split, space, backend, chosen, store, pc, seed=cfg.seed, show_progress=show_progress
            )
        shown = np.random.default_rng(cfg.seed).permutation(len(report.user_ids))[:show]
        examples = [p for i in shown if (p := store.get(report.user_ids[i])) is not None]
    finally:
        store.close()
        if backend is not None:
            backend.close()
    record_persona_store(cfg)
    _log(cfg.run_dir, report)
    return report, examples


def print_report(report) -> None:
    on = f", on Ray ({report.actors} actor processes)" if report.engine == "ray" else ""
    t = Table(
        title=f"personas: {report.backend} ({report.model}), {report.writer}{', hindsight' if report.hindsight else ''}{on}"
    )
    for col in ("requested", "generated", "fallback", "skipped", "validity", "personas/s", "tokens/s"):
        t.add_column(col)
    t.add_row(
        str(report.requested),
        str(report.generated),
        str(report.fallbacks),
        str(report.skipped),
        f"{report.validity_rate:.0%}" if report.outputs else "-",
        f"{report.personas_per_s:.2f}",
        f"{report.tokens_per_s:.0f}",
    )
    console.print(t)
    for f in report.failures[:10]:
        console.print(
            f"[yellow]failed[/] user {f.user_id}: {' | '.join(f.errors)[:300]}{' -> fallback' if f.fallback else ''}"
        )
    if len(report.failures) > 10:
        console.print(
            f"[yellow]... {len(report.failures) - 10} more failures in RUN_DIR/personas/generation.json[/]"
        )


def evaluate_run(cfg: RunConfig, split=None, space=None):
    """Quality metrics of the run's stored personas -> ``RUN_DIR/personas/quality.json``."""
    from personarec.personas.backends.base import build_backend
    from personarec.personas.quality import compare_tokens, evaluate_personas, summarise_logs
    from personarec.personas.store.base import open_store

    pc = personas_config(cfg)
    if split is None or space is None:
        split, space = load_inputs(cfg)
    personas = []
    for hindsight in (False, True):
        path = store_url(cfg.run_dir, pc.model_copy(update={"hindsight": hindsight}))
        if path.exists():
            store = open_store(path)
            personas += [p for u in store.user_ids() if (p := store.get(u)) is not None]
            store.close()
    if not personas:
        raise DataError(f"no personas in {cfg.run_dir}; run `personarec personas generate` first")
    report = evaluate_personas(personas, split, space, half_life=pc.prompt.recency_half_life)
    report.validity, report.throughput = summarise_logs(Path(cfg.run_dir) / "personas" / "generation.jsonl")
    index = split.user_index()
    users = sorted({index[p.user_id] for p in personas if p.user_id in index})
    backend = None
    try:  # the backend's own tokenizer when it can load here; else the character estimate
        backend = build_backend(pc.backend, pc.backend_config)
        backend.count_tokens("probe")  # loads the tokenizer now, so a failure lands here
        counter, name = backend.count_tokens, f"{pc.backend} backend count_tokens"
    except Exception:  # noqa: BLE001 - counting tokens must not need a reachable model
        if backend is not None:
            backend.close()
        backend, counter, name = None, None, "approx"
    try:
        report.tokens = compare_tokens(
            split,
            space,
            users,
            pc.prompt,
            count_tokens=counter,
            counter_name=name,
            stage=pc.history_stage,
            n_candidates=pc.n_candidates,
        )
    finally:
        if backend is not None:
            backend.close()
    out = Path(cfg.run_dir) / "personas" / "quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_json(), indent=2))
    return report, out


def print_quality(report) -> None:
    t = Table(title="persona quality")
    t.add_column("metric")
    t.add_column("value")
    rows = [
        ("personas (LLM / fallback)", f"{report.n_llm} / {report.n_fallback}"),
        ("grounding rate", f"{report.grounding_rate:.1%}"),
        ("explore novelty rate", f"{report.explore_novelty_rate:.1%}"),
    ]
    for name, v in report.validity.items():
        rows.append(
            (
                f"validity rate ({name})",
                f"{v['validity_rate']:.1%}" if v["validity_rate"] is not None else "-",
            )
        )
    for label, h in (("LLM", report.llm), ("all", report.all), ("hindsight", report.hindsight)):
        if h.n_users:
            rows += [
                (
                    f"explore hit-rate, {label} (n={h.n_users})",
                    f"{h.explore_hit_rate:.1%} vs transitions {h.baseline_hit_rate:.1%} (ceiling {h.novel_future_rate:.1%})",
                ),
                (
                    f"exploit P/R, {label}",
                    f"{h.exploit_precision:.2f}/{h.exploit_recall:.2f} vs top clusters {h.baseline_exploit_precision:.2f}/{h.baseline_exploit_recall:.2f}",
                ),
            ]
    tk = report.tokens
    rows.append(
        (
            f"median prompt tokens raw -> clustered ({tk.counter})",
            f"{tk.median_prompt_raw:.0f} -> {tk.median_prompt_clustered:.0f} ({tk.prompt_ratio:.1f}x; history block {tk.history_ratio:.1f}x)",
        )
    )
    for name, v in report.throughput.items():
        rows.append(
            (
                f"throughput ({name})",
                f"{v['personas_per_s']} personas/s, {v['output_tokens_per_s']} output tok/s",
            )
        )
    for r in rows:
        t.add_row(*r)
    console.print(t)


# -- pipeline entry --------------------------------------------------------------------------------
def run_personas(cfg: RunConfig, run, split, space):
    """Pipeline stage: personas for ``sample_users`` users, three shown, quality written. Returns the report."""
    with run.stage("personas") as entry:
        report, examples = generate_for_run(cfg, split, space)
        print_report(report)
        for p in examples:
            console.print(render_persona(p))
        quality, path = evaluate_run(cfg, split, space)
        print_quality(quality)
        entry.update(report.summary(), quality=str(path), store=str(store_url(cfg.run_dir, personas_config(cfg))))
    return report


# -- verbs -----------------------------------------------------------------------------------------
@app.command()
def generate(
    config: ConfigOption = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            "-b",
            help="LLM backend: embedded (llama.cpp, offline), openai (any OpenAI-compatible server), transformers.",
        ),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option(
            "--users",
            "-n",
            help="How many users (a deterministic sample of evaluation users; default personas.sample_users).",
        ),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option("--user", "-u", help="A specific user id (repeatable); overrides --users."),
    ] = None,
    mode: Annotated[
        Literal["single", "teacher"] | None,
        typer.Option(
            "--mode",
            help="single: one constrained call; teacher: 3-step reasoning (summary -> explore -> JSON).",
        ),
    ] = None,
    hindsight: Annotated[
        bool | None,
        typer.Option(
            "--hindsight/--no-hindsight",
            help="Training labels: the writer also sees the user's validation events (never test); stored in personas-hindsight.db.",
        ),
    ] = None,
    prompt_mode: Annotated[
        Literal["clustered", "raw"] | None,
        typer.Option(
            "--prompt-mode", help="clustered (compact cluster view) or raw (all titles, for comparison)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", help="Users in flight at once (useful with remote servers)."),
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", help="Extra attempts per user before the fallback persona.")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="openai backend: server URL, e.g. http://localhost:8000/v1."),
    ] = None,
    engine: Annotated[
        Literal["local", "ray"] | None,
        typer.Option(
            "--engine",
            help="local: this process (default); ray: an actor pool of persona engines on a Ray cluster "
            "(one model load per actor; resumable; the store has one writer, the driver).",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="--engine ray: 'auto' joins the cluster of `ray start`, 'ray://host:10001' a remote one; "
            "unset starts a local cluster for this job.",
        ),
    ] = None,
    actors: Annotated[
        int | None, typer.Option("--actors", help="--engine ray: persona engines in the pool (personas.ray.actors).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Where personas go: a SQLite file in the run dir (default personas.db), redis://host:port/0, "
            "or parquet:///dir (immutable shards for a data pipeline; resumable too).",
        ),
    ] = None,
    show: Annotated[
        int, typer.Option("--show", min=0, help="How many personas of this batch to print (a seeded sample).")
    ] = 3,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Generate personas (resumable: users already up to date in the store are skipped; failures fall back)."""
    overrides = {
        "personas.backend": backend,
        "personas.mode": mode,
        "personas.hindsight": hindsight,
        "personas.prompt.mode": prompt_mode,
        "personas.concurrency": concurrency,
        "personas.retries": retries,
        "personas.sample_users": users,
        "personas.backend_config.base_url": base_url,
        "personas.engine": engine,
        "personas.ray.address": address,
        "personas.ray.actors": actors,
        "personas.store": store,
    }
    cfg = resolve_config(
        config, set_, run_dir=run_dir, **{k.replace(".", "__"): v for k, v in overrides.items()}
    )
    split, space = load_inputs(cfg)
    report, examples = generate_for_run(cfg, split, space, users=user or None, show=show)
    print_report(report)
    for p in examples:
        console.print(render_persona(p))
    console.print(f"store: {store_url(cfg.run_dir, personas_config(cfg))}")


@app.command("show")
def show_cmd(
    user_id: Annotated[str, typer.Argument(help="External user id, e.g. 196.")],
    config: ConfigOption = None,
    hindsight: Annotated[
        bool, typer.Option("--hindsight", help="Show the hindsight training label instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON record.")] = False,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Print one user's stored persona."""
    from personarec.personas.store.base import open_store

    cfg = resolve_config(config, set_, run_dir=run_dir)
    pc = personas_config(cfg).model_copy(update={"hindsight": hindsight})
    path = store_url(cfg.run_dir, pc)
    if not path.exists():
        raise DataError(f"no persona store at {path}; run `personarec personas generate` first")
    store = open_store(path)
    try:
        persona = store.get(user_id)
    finally:
        store.close()
    if persona is None:
        raise DataError(f"no persona for user {user_id!r} in {path}")
    if as_json:
        typer.echo(persona.model_dump_json(indent=2))
    else:
        console.print(render_persona(persona))


@app.command("export")
def export_cmd(
    config: ConfigOption = None,
    fmt: Annotated[
        Literal["jsonl", "parquet"],
        typer.Option("--format", "-f", help="jsonl (one persona per line) or parquet."),
    ] = "jsonl",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default RUN_DIR/personas/personas.<format>)."),
    ] = None,
    hindsight: Annotated[
        bool, typer.Option("--hindsight", help="Export the hindsight training labels instead.")
    ] = False,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Export every stored persona to JSONL or parquet."""
    from personarec.personas.generate import export_personas
    from personarec.personas.store.base import open_store

    cfg = resolve_config(config, set_, run_dir=run_dir)
    pc = personas_config(cfg).model_copy(update={"hindsight": hindsight})
    path = store_url(cfg.run_dir, pc)
    if not path.exists():
        raise DataError(f"no persona store at {path}; run `personarec personas generate` first")
    out = output or Path(cfg.run_dir) / "personas" / f"personas{'-hindsight' if hindsight else ''}.{fmt}"
    store = open_store(path)
    try:
        n = export_personas(store, out, fmt)
    finally:
        store.close()
    console.print(f"{n} personas -> {out}")


@app.command("evaluate")
def evaluate_cmd(config: ConfigOption = None, run_dir: RunDirOption = None, set_: SetOption = None) -> None:
    """Persona quality: validity, grounding, novelty, exploit P/R and explore hit-rate vs transitions, tokens, speed."""
    cfg = resolve_config(config, set_, run_dir=run_dir)
    report, out = evaluate_run(cfg)
    print_quality(report)
    console.print(f"written to {out}")
