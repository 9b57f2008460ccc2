"""``personarec train``: fit the configured recommenders on the run's split and save them.

Only parses the command line: :class:`personarec.recommend.service.RunService` trains the models
into ``RUN_DIR/models/<name>/`` (``config.json`` + state), where the evaluator and the server load
them through the same service.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.errors import ConfigError
from personarec.recommend.config import RecommendConfig
from personarec.recommend.service import RunService

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


@app.callback(invoke_without_command=True)
def train(
    config: ConfigOption = None,
    models: ModelsOption = None,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
    tune: Annotated[
        bool,
        typer.Option("--tune", help="Search each model's hyper-parameters on the validation split first (Optuna; "
                     "SASRec family; budget in recommend.tuning) and keep the best trial's model."),
    ] = False,
    trials: Annotated[int | None, typer.Option("--trials", help="With --tune: number of trials (recommend.tuning.trials).")] = None,
) -> None:
    """Fit recommenders on RUN_DIR/split (cut first if absent) and save them to RUN_DIR/models/<name>/.

    Per-model knobs: --set recommend.models.sasrec.max_epochs=50 (see `recommend` in the config).
    With --tune, models/<name>/tuning.json holds every trial and the best parameters.
    """
    extra = [f"recommend.tuning.trials={trials}"] if trials is not None else []
    cfg = resolve_config(config, (set_ or []) + extra, run_dir=run_dir)
    rcfg: RecommendConfig = cfg.section("recommend", RecommendConfig)  # type: ignore[assignment]
    names = parse_models(models, rcfg)
    service = RunService.of(cfg, console=console)
    split = service.split
    trained = service.train(names, tune=tune)
    table = Table(title=f"trained on {split.protocol.dataset} ({split.n_users} users, {split.n_items} items)")
    for col in ("model", "class", "fit seconds", "saved to"):
        table.add_column(col)
    stages = service.run.manifest().get("stages", {})
    for key, model in trained.items():
        entry = stages.get(f"train.{key}", {})
        table.add_row(key, model.name, f"{entry.get('fit_seconds', float('nan')):.1f}", str(service.path / "models" / key))
    console.print(table)
    service.close()
