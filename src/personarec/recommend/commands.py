"""``personarec train``: fit the configured recommenders on the run's split and save them.

Models land in ``RUN_DIR/models/<name>/`` (``config.json`` + state), where the evaluator and the
server load them with :func:`load_models` / :func:`personarec.recommend.base.load_recommender`.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.config import RunConfig
from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.recommend.base import RECOMMENDERS, Recommender, build_recommender, load_recommender
from personarec.recommend.config import RecommendConfig
from personarec.run import RunDir

app = typer.Typer(help="Train recommenders (popular, itemknn, ease, sasrec, ...) on the run's split.")

ModelsOption = Annotated[
    str | None,
    typer.Option("--models", "-m", help="Comma-separated models to train (default: recommend.train in the config)."),
]


def parse_models(text: str | None, cfg: RecommendConfig) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()] if text else list(cfg.train)
    if not names:
        raise ConfigError("no models to train: pass --models popular,sasrec or set recommend.train")
    return names


def load_or_build_split(cfg: RunConfig) -> Split:
    """The run's saved split (``RUN_DIR/split``), cut from the configured dataset when absent."""
    from personarec.data.splits import load_split

    if (cfg.run_dir / "split" / "protocol.json").exists():
        return load_split(cfg.run_dir / "split")
    from personarec.data.commands import build_split

    return build_split(cfg)[1]


def train_models(cfg: RunConfig, run: RunDir, split: Split, names: list[str], **context) -> dict[str, Recommender]:
    """Fit each named model on ``split`` and save it under ``run/models/<name>``.

    ``context`` is passed to every ``fit`` (e.g. ``items=ItemSpace``). A model whose config has
    ``base_from = "<key>"`` also gets the model trained earlier in this call under that key as
    ``base`` (the persona hybrid re-ranks SASRec's list instead of training a second SASRec).
    Returns the fitted models by name.
    """
    import personarec.recommend.zoo  # noqa: F401

    rcfg: RecommendConfig = cfg.section("recommend", RecommendConfig)  # type: ignore[assignment]
    trained: dict[str, Recommender] = {}
    for key in names:
        cls_name, params = rcfg.model_spec(key)
        model_context = dict(context)
        base_from = params.pop("base_from", None)
        if base_from is not None:
            saved = run.path / "models" / str(base_from)
            if base_from in trained:
                model_context["base"] = trained[base_from]
            elif (saved / "config.json").exists():
                model_context["base"] = load_recommender(saved)
            else:
                raise ConfigError(
                    f"recommend.models.{key}.base_from = {base_from!r}: train {base_from!r} first (or list it before {key!r})"
                )
        if cls_name not in RECOMMENDERS:
            raise ConfigError(f"unknown recommender {cls_name!r}; available: {sorted(RECOMMENDERS)}")
        fields = RECOMMENDERS[cls_name].config_class.model_fields
        if rcfg.seed_from_run and "seed" in fields and "seed" not in params:
            params["seed"] = cfg.seed
        if "checkpoint_path" in fields and "checkpoint_path" not in params:
            params["checkpoint_path"] = str(run.file("models", key, "checkpoint.pt"))
        model = build_recommender(cls_name, params)
        with run.stage(f"train.{key}", model=cls_name) as entry:
            console.print(f"training [bold]{key}[/] ({cls_name})")
            start = time.perf_counter()
            own_bar = "show_progress" in fields  # models with their own progress bar
            with nullcontext() if own_bar else console.status(f"fitting {key}"):
                model.fit(split, **model_context)
            fit_seconds = time.perf_counter() - start
            path = model.save(run.file("models", key))
            entry.update(config=model.get_config(), fit_seconds=round(fit_seconds, 3), path=str(path))
            for attr in ("best_epoch",):
                if hasattr(model, attr):
                    entry[attr] = getattr(model, attr)
        trained[key] = model
    return trained


def run_persona_store(cfg: RunConfig, run: RunDir):
    """The run's persona store (the one ``personarec personas generate`` writes), or None while no
    persona has been generated: persona-aware models then use every user's fallback persona."""
    from personarec.personas.commands import check_persona_store, personas_config, store_url

    url = store_url(run.path, personas_config(cfg))
    check_persona_store(cfg.model_copy(update={"run_dir": run.path}))
    return url.open() if url.exists() else None


def run_context(cfg: RunConfig, run: RunDir, items: object | None = None) -> dict[str, object]:
    """Shared artifacts of the run that persona-aware models use: the item space (``items`` when
    the caller holds it, else RUN_DIR/items) and the persona store, when they exist."""
    context: dict[str, object] = {}
    if items is None and (run.path / "items").exists():
        from personarec.items.space import ItemSpace

        items = ItemSpace.load(run.path / "items")
    if items is not None:
        context["items"] = items
    store = run_persona_store(cfg, run)
    if store is not None:
        context["persona_store"] = store
    return context


def load_models(run: RunDir, names: list[str] | None = None) -> dict[str, Recommender]:
    """Models saved by :func:`train_models` (all of ``run/models`` when ``names`` is None)."""
    root = run.path / "models"
    if names is None:
        names = sorted(p.name for p in root.iterdir() if (p / "config.json").exists()) if root.exists() else []
    return {n: load_recommender(root / n) for n in names}


@app.callback(invoke_without_command=True)
def train(
    config: ConfigOption = None,
    models: ModelsOption = None,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Fit recommenders on RUN_DIR/split (cut first if absent) and save them to RUN_DIR/models/<name>/.

    Per-model knobs: --set recommend.models.sasrec.max_epochs=50 (see `recommend` in the config).
    """
    cfg = resolve_config(config, set_, run_dir=run_dir)
    rcfg: RecommendConfig = cfg.section("recommend", RecommendConfig)  # type: ignore[assignment]
    names = parse_models(models, rcfg)
    split = load_or_build_split(cfg)
    run = RunDir(cfg.run_dir, cfg)
    trained = train_models(cfg, run, split, names, **run_context(cfg, run))
    table = Table(title=f"trained on {split.protocol.dataset} ({split.n_users} users, {split.n_items} items)")
    for col in ("model", "class", "fit seconds", "saved to"):
        table.add_column(col)
    stages = run.manifest().get("stages", {})
    for key, model in trained.items():
        entry = stages.get(f"train.{key}", {})
        table.add_row(key, model.name, f"{entry.get('fit_seconds', float('nan')):.1f}", str(run.path / "models" / key))
    console.print(table)
