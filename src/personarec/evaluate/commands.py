"""``personarec evaluate`` and ``personarec report``: top-level verbs (no sub-app).

``run_evaluation`` is the pipeline's entry point (the CLI verb and ``personarec demo`` both call
it); ``write_report`` (in :mod:`personarec.evaluate.report`) is the other.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.config import RunConfig
from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.evaluate.config import EvaluateConfig, eval_dir
from personarec.evaluate.harness import EvalResult, evaluate_models, primary_k, print_result
from personarec.items.space import ItemSpace
from personarec.recommend.base import Recommender
from personarec.run import RunDir

app = None  # no sub-commands: see TOP_LEVEL


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def _as_mapping(models: Mapping[str, Recommender] | Sequence[Recommender]) -> dict[str, Recommender]:
    if isinstance(models, Mapping):
        return dict(models)
    return {getattr(m, "name", f"model{i}"): m for i, m in enumerate(models)}


def run_evaluation(
    cfg: RunConfig,
    run: RunDir,
    split: Split,
    models: Mapping[str, Recommender] | Sequence[Recommender],
    items: ItemSpace | None = None,
) -> EvalResult:
    """Evaluate ``models`` on ``split`` as ``cfg.evaluate`` says; write ``RUN_DIR/eval/`` (and ``eval/ab/``),
    or ``RUN_DIR/evals/NAME/`` when ``evaluate.name`` is set.

    ``evaluate.arms`` (when set) picks and orders the models; the first is the A/B control unless
    ``evaluate.ab.control`` says otherwise. Returns the result, with ``result.ab`` set when the A/B ran.
    """
    from personarec.evaluate.ab import print_ab, replay_ab

    ecfg: EvaluateConfig = cfg.section("evaluate", EvaluateConfig)  # type: ignore[assignment]
    models = _as_mapping(models)
    if ecfg.arms:
        missing = [a for a in ecfg.arms if a not in models]
        if missing:
            raise ConfigError(f"evaluate.arms names {missing}, which are not among the models {sorted(models)}")
        models = {a: models[a] for a in ecfg.arms}
    if not models:
        raise ConfigError("no models to evaluate")
    seed = cfg.seed if ecfg.seed is None else ecfg.seed
    out_dir = eval_dir(run.path, ecfg.name)
    stage_key = "evaluate" if ecfg.name is None else f"evaluate:{ecfg.name}"  # one manifest entry per evaluation
    with run.stage(stage_key, stage=ecfg.stage, models=list(models)) as entry:
        result = evaluate_models(
            split, models, ecfg.stage, tuple(ecfg.ks), items, ecfg.batch_size,
            metrics=ecfg.metrics, metric_config=ecfg.metric_config, exclude_seen=ecfg.exclude_seen,
            rank_memory_mb=ecfg.rank_memory_mb, n_boot=ecfg.n_boot, confidence=ecfg.confidence, seed=seed,
        )  # fmt: skip
        shutil.rmtree(out_dir, ignore_errors=True)  # never mix files of two evaluations
        result.save(out_dir)
        print_result(result)
        if ecfg.ab.enabled and len(models) >= 2:
            ab = replay_ab(
                result, list(models), control=ecfg.ab.control,
                seed=cfg.seed if ecfg.ab.seed is None else ecfg.ab.seed, weights=ecfg.ab.weights,
                metrics=ecfg.ab.metrics, n_boot=ecfg.n_boot, confidence=ecfg.confidence,
            )  # fmt: skip
            ab.save(out_dir / "ab")
            print_ab(ab)
            result.ab = ab
        k = primary_k(result.ks)
        entry.update(
            users=len(result.users),
            artifacts=str(out_dir),
            **{f"{row['model']}.ndcg@{k}": round(row.get(f"ndcg@{k}", float("nan")), 5) for row in result.summary.to_dicts()},
        )
    console.print(f"evaluation written to {out_dir}")
    return result


def evaluate_cmd(
    arms: Annotated[str | None, typer.Option("--arms", help="Comma-separated models to compare, e.g. sasrec,itemknn,popular (default: every model in RUN_DIR/models). Missing ones are trained first. The first is the A/B control.")] = None,
    control: Annotated[str | None, typer.Option("--control", help="A/B control arm (default: the first of --arms).")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Held-out events to predict: test (default) or valid.")] = None,
    ab: Annotated[bool | None, typer.Option("--ab/--no-ab", help="Replayed A/B (random user arms, one model each) plus the paired comparison; default from evaluate.ab.enabled (on).")] = None,
    ks: Annotated[str | None, typer.Option("--ks", help="Comma-separated list cut-offs (default 5,10,20).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Write RUN_DIR/evals/NAME instead of RUN_DIR/eval, keeping earlier evaluations (e.g. under another protocol); the report compares them.")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write RUN_DIR/report.html afterwards.")] = False,
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Full-ranking evaluation of trained recommenders (accuracy and beyond-accuracy metrics, bootstrap
    CIs, optional replayed A/B); prints the tables with the protocol card and writes RUN_DIR/eval/
    (RUN_DIR/evals/NAME/ with --name)."""
    from personarec.recommend.service import RunService

    k_list = [int(k) for k in _csv(ks)] if ks else None
    cfg = resolve_config(
        config, set_, run_dir=run_dir, evaluate__stage=stage, evaluate__arms=_csv(arms),
        evaluate__ks=k_list, evaluate__ab__enabled=ab, evaluate__ab__control=control, evaluate__name=name,
    )  # fmt: skip
    ecfg: EvaluateConfig = cfg.section("evaluate", EvaluateConfig)  # type: ignore[assignment]
    service = RunService.of(cfg, console=console)
    if service.items is None:
        console.print("[yellow]no item space in RUN_DIR/items: diversity, serendipity, exploration and per-cluster coverage are skipped[/]")
    models = service.models(ecfg.arms, train_missing=True)
    run_evaluation(cfg, service.run, service.split, models, items=service.items)
    service.close()
    if report:
        report_cmd(service.path, eval_name=ecfg.name)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="The run directory (holds eval/, split/, personas/ ...).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the HTML (default RUN_DIR/report.html).")] = None,
    eval_name: Annotated[str | None, typer.Option("--eval", help="Which evaluation the detailed sections show: a name given to evaluate --name (default: RUN_DIR/eval, else the latest named one).")] = None,
) -> None:
    """Write one self-contained HTML report (plots embedded) with the protocol card, metric tables,
    CIs per model and A/B arm, accuracy vs novelty and per-cluster coverage; with several
    evaluations (evaluate --name), a side-by-side comparison and their protocol-card differences."""
    from personarec.evaluate.report import write_report

    with console.status("rendering report"):
        path = write_report(run_dir, output, eval_name=eval_name)
    console.print(f"report written to {path}")


TOP_LEVEL: dict[str, Any] = {"evaluate": evaluate_cmd, "report": report_cmd}
