"""Recommender benchmark on five catalogues: baselines, SASRec (defaults), SASRec tuned on validation
(Optuna), text-aware SASRec, SASRec + EASE and text_sasrec + EASE blends (``--parts blend`` and
``--parts blend_text``), and RecBole 1.2.1's SASRec trained to its best, side by side.

    .venv/bin/python benchmarks/recsys.py            # full run  -> benchmarks/results/recsys.json
    .venv/bin/python benchmarks/recsys.py --quick    # smoke run -> benchmarks/results/recsys_quick.json
    .venv/bin/python benchmarks/recsys.py --datasets amazon-office-2014 --parts text   # one part

Protocol: leave-one-out, full ranking over the whole catalogue, seen items as the protocol card
says (excluded by default), metrics from ``personarec.evaluate.harness.evaluate_models`` (the code
path of ``personarec evaluate``); every dataset entry carries its protocol card. Neural models run
with several seeds (mean ± std); "seconds to best" is the training and validation time up to the
best validation epoch (what early stopping keeps), the figure compared with RecBole's. The tuned
SASRec's search (``personarec.recommend.tuning``) reads the validation split only; its cost is
reported apart from the seeds' fits. Cold-item recall is recall@10 over the users whose test item
has no training event. RecBole runs in its own venv (never a dependency of the package) on the same
split, with its SASRec defaults (CE, length 50, hidden 64, inner 256, 2 layers, 2 heads, dropout
0.5, lr 1e-3, batch 2048, stopping step 10), and is scored by our evaluator's rules (seen items
excluded) on its best-validation model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from personarec.data.registry import load_dataset  # noqa: E402
from personarec.data.splits import Split, make_split  # noqa: E402
from personarec.evaluate.harness import evaluate_models  # noqa: E402
from personarec.recommend.base import Recommender, build_recommender  # noqa: E402

ROOT = Path(__file__).resolve().parent
KS = (5, 10, 20)
METRICS = [f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in KS]
DATASETS = "ml-100k,ml-latest-small,p5-beauty,p5-sports,amazon-office-2014"

#: The "sasrec" rows run SASRec's library defaults (``SASRecConfig``: RecBole's layout) on every
#: catalogue; the "tuned" rows replace them by a validation search per catalogue.
SASREC = dict(max_epochs=200, show_progress=False)
#: ``--preset legacy``: the defaults before RecBole's layout (length 200, 1 head, pre-norm, dropout
#: 0.2, lr 5e-3, latest window only, patience 5), to reproduce rows measured with them. Epochs at lr
#: 5e-3 are few, so on a large catalogue they cost a fraction of the current defaults' time.
LEGACY_SASREC = dict(max_len=200, n_heads=1, ff_mult=1, norm="pre", positions="end", init="scaled", dropout=0.2,
                     attn_dropout=0.0, lr=5e-3, train_windows="last", patience=5, patience_steps=0)  # fmt: skip
BASELINES = {"popular": {}, "itemknn": {"neighbours": 100, "shrink": 10.0}, "ease": {"l2": 500.0}}
#: EASE's l2 is chosen per catalogue on validation NDCG@10 (500 suits ML-100k, not a sparse Amazon set)
EASE_L2_GRID = (10.0, 30.0, 100.0, 300.0, 500.0, 1000.0)
#: the blend part's weight grid on validation: (1, 0), (0, 1), then 19 mixes of SASRec and EASE
BLEND_GRID_STEP = 0.05
#: personarec's models in the verdict and the summary (the rows the issue's goals are checked on)
OURS = ("sasrec", "sasrec_tuned", "text_sasrec", "blend_sasrec_ease", "blend_text_sasrec_ease")
#: RecBole 1.2.1's SASRec defaults (its sequential model config), as in the issue's comparison
RECBOLE_DEFAULTS = dict(max_len=50, hidden=64, inner_size=256, n_blocks=2, n_heads=2, dropout=0.5, attn_dropout=0.5,
                        lr=1e-3, recbole_batch_size=2048, patience=10)  # fmt: skip


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def evaluate(split: Split, models: dict[str, Recommender], stage: str = "test"):
    """Accuracy rows per model (+ cold-item recall@10 on test) and the harness timings."""
    result = evaluate_models(split, models, stage=stage, ks=KS, metrics=["accuracy"], n_boot=200, show_progress=False)
    rows = {r["model"]: {m: float(r[m]) for m in METRICS} for r in result.summary.iter_rows(named=True)}
    if stage == "test":
        cold_users = cold_target_users(split)
        for name, frame in result.per_user.items():
            mask = np.isin(frame["user_idx"].to_numpy(), cold_users)
            rows[name]["cold_recall@10"] = float(frame["recall@10"].to_numpy()[mask].mean()) if mask.any() else None
            rows[name]["n_cold_users"] = int(mask.sum())
    return rows, result.timings


def cold_target_users(split: Split) -> np.ndarray:
    """Users whose test item never occurs in the training events (a cold item)."""
    trained = np.bincount(split.history("train").items, minlength=split.n_items) > 0
    users = split.eval_users("test")
    targets = split.targets("test")
    first = targets.items[targets.indptr[users]]
    return users[~trained[first]]


def mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(a):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def has_text(split: Split) -> bool:
    """Whether items have text beyond their id (P5 Sports has none: no text model there)."""
    frame = split.catalogue.frame
    title = frame["title"].cast(str)
    return bool((title != frame["item_id"].cast(str)).mean() > 0.5)


def item_space(split: Split):
    from personarec.items.build import build_item_space

    t0 = time.perf_counter()
    space = build_item_space(split, show_progress=False)
    log(f"  item space: {space.n_items} items, {space.embeddings.shape[1]}-d text vectors, {time.perf_counter() - t0:.0f}s")
    return space


def ease_l2_by_validation(split: Split) -> tuple[Recommender, float, dict[float, float]]:
    """EASE fitted with the l2 of EASE_L2_GRID that has the best validation NDCG@10 (the test split
    is not read), its fit seconds, and the sweep."""
    scores, best, best_score, best_seconds = {}, None, -1.0, 0.0
    for l2 in EASE_L2_GRID:
        t0 = time.perf_counter()
        model = build_recommender("ease", {"l2": l2}).fit(split)
        seconds = time.perf_counter() - t0
        valid, _ = evaluate(split, {"ease": model}, "valid")
        scores[l2] = valid["ease"]["ndcg@10"]
        if scores[l2] > best_score:
            best, best_score, best_seconds = model, scores[l2], seconds
    assert best is not None
    return best, best_seconds, scores


def run_baselines(split: Split) -> dict[str, Any]:
    models, fit_s = {}, {}
    models["ease"], fit_s["ease"], sweep = ease_l2_by_validation(split)
    log(f"  ease l2 by validation: {models['ease'].config.l2:g} ({', '.join(f'{k:g}: {v:.4f}' for k, v in sweep.items())})")
    for name, params in BASELINES.items():
        if name == "ease":
            continue
        t0 = time.perf_counter()
        models[name] = build_recommender(name, params).fit(split)
        fit_s[name] = time.perf_counter() - t0
        log(f"  {name} fit {fit_s[name]:.1f}s")
    test, timings = evaluate(split, models)
    valid, _ = evaluate(split, models, "valid")
    out = {
        name: {"config": models[name].get_config(), "fit_seconds": fit_s[name], "test": test[name],
               "valid_ndcg@10": valid[name]["ndcg@10"], "eval": timings[name]}
        for name in models
    }  # fmt: skip
    out["ease"]["l2_valid_sweep"] = {f"{k:g}": v for k, v in sweep.items()}
    return out


def epoch_seconds(model: Any, epochs: int | None = None) -> float:
    """Training + validation seconds of a fit's first ``epochs`` epochs (all when None)."""
    return float(sum(r["train_seconds"] + r.get("eval_seconds", 0.0) for r in model.history_[:epochs]))


def seconds_to_best(model: Any) -> float:
    """The epochs up to the best one (what early stopping keeps)."""
    return epoch_seconds(model, model.best_epoch)


def epoch_logger(name: str, seed: int) -> Any:
    """A progress line per epoch: neural fits here take up to an hour a seed on one thread."""
    best = {"ndcg": -1.0, "epoch": 0}

    def on_epoch(record: dict[str, Any]) -> None:
        ndcg = record.get("valid_ndcg")
        if ndcg is not None and ndcg > best["ndcg"]:
            best.update(ndcg=ndcg, epoch=record["epoch"])
        valid = f", valid ndcg@10 {ndcg:.4f} (best {best['ndcg']:.4f} at epoch {best['epoch']})" if ndcg is not None else ""
        log(f"    {name} seed {seed} epoch {record['epoch']}: loss {record['loss']:.4f}{valid}, {record['train_seconds']:.0f}s")

    return on_epoch


def run_seeds(split: Split, name: str, params: dict[str, Any], seeds: list[int], items: Any = None,
              after_fit: Any = None, fitted: Any = None) -> dict[str, Any]:  # fmt: skip
    """Fit ``name`` once per seed (early stopping on validation) and score each on test;
    ``after_fit(model)`` may add entries to each seed's record (e.g. a blend built on the fit).
    ``fitted``: a model already fitted with exactly these settings and one of the seeds (the
    search's best trial) is scored as that seed's run instead of being fitted again."""
    runs = []
    for seed in seeds:
        model = build_recommender(name, dict(params, seed=seed))
        reused = fitted is not None and fitted.get_config() == model.get_config()
        if reused:
            model, fit_s = fitted, epoch_seconds(fitted)
            log(f"  {name} seed {seed}: the search's fit of this setting and seed is reused")
        else:
            model.on_epoch = epoch_logger(name, seed)
            t0 = time.perf_counter()
            model.fit(split, items=items)
            fit_s = time.perf_counter() - t0
        test, timings = evaluate(split, {name: model})
        epoch_s = [r["train_seconds"] for r in model.history_]
        runs.append({
            "seed": seed, "fit_seconds": fit_s, "seconds_to_best": seconds_to_best(model), "reused_search_fit": reused,
            "epochs_run": len(model.history_), "best_epoch": model.best_epoch,
            "best_valid_ndcg@10": max((r.get("valid_ndcg", 0.0) for r in model.history_), default=0.0),
            "epoch_seconds_median": float(np.median(epoch_s)),
            "valid_curve": [round(r["valid_ndcg"], 5) for r in model.history_ if "valid_ndcg" in r],
            "test": test[name], "test_eval": timings[name],
        })  # fmt: skip
        if getattr(model, "cold_calibration_", None):
            runs[-1].update(cold_calibration(split, name, model))
        if after_fit is not None:
            runs[-1].update(after_fit(model))
        log(f"  {name} seed {seed}: best epoch {model.best_epoch} of {len(epoch_s)}, {seconds_to_best(model):.0f}s to best, "
            f"test ndcg@10 {test[name]['ndcg@10']:.4f}, cold recall@10 {test[name].get('cold_recall@10')}")  # fmt: skip
    config = build_recommender(name, params).get_config()
    return {"config": {k: v for k, v in config.items() if k not in ("show_progress", "seed")}, "seeds": seeds,
            **summarise_runs(runs)}  # fmt: skip


def metrics_mean_std(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each test metric's mean ± std over the seeds' results."""
    return {m: mean_std([r.get(m) for r in results]) for m in METRICS + ["cold_recall@10"]}


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' runs with their test mean ± std and median times (one summary for fitted and reused runs)."""
    extra = {}
    if any("cold_offset" in r for r in runs):  # the same fits scored without the cold offset
        plain = [r.get("test_without_cold_offset", r["test"]) for r in runs]
        extra["test_without_cold_offset_mean_std"] = {m: mean_std([p.get(m) for p in plain]) for m in ("ndcg@10", "recall@10", "cold_recall@10")}
    return {"runs": runs, "test_mean_std": metrics_mean_std([r["test"] for r in runs]), **extra,
            "seconds_to_best_median": float(np.median([r["seconds_to_best"] for r in runs])),
            "epoch_seconds_median": float(np.median([r["epoch_seconds_median"] for r in runs]))}  # fmt: skip


def cold_calibration(split: Split, name: str, model: Any) -> dict[str, Any]:
    """text_sasrec's cold-item offset (chosen on validation), its validation sweep, and the test
    metrics of the same model without the offset, so the offset's effect is measured, not assumed."""
    out = {"cold_offset": model.cold_offset, "cold_calibration_valid_ndcg@10": model.cold_calibration_}
    if model.cold_offset:
        offset, model.cold_offset = model.cold_offset, 0.0
        out["test_without_cold_offset"] = evaluate(split, {name: model})[0][name]
        model.cold_offset = offset
        log(f"  {name}: cold offset {offset:g} std (validation); without it test ndcg@10 "
            f"{out['test_without_cold_offset']['ndcg@10']:.4f}, cold recall@10 {out['test_without_cold_offset'].get('cold_recall@10')}")
    return out


def measured_trials(entry: dict[str, Any], rows: list[str], name: str, base: dict[str, Any], first_seed: int,
                    seeds_per_trial: int, space: dict[str, Any]) -> list[Any]:  # fmt: skip
    """The search's measured trials from this dataset's stored rows (``--tune-measured``): each row's
    fits of the search's first seeds, checked to share every fixed setting with the search, so a
    setting already fitted is scored, not fitted again."""
    from personarec.recommend.tuning import MeasuredTrial, ParamRange, default_space

    searched = {**default_space(name), **{k: ParamRange(**v) for k, v in space.items()}}
    out = []
    for row in rows:
        if row not in entry or "config" not in entry[row]:
            raise SystemExit(f"--tune-measured: no row {row!r} with a config here (rows: {', '.join(sorted(entry))})")
        config = build_recommender(name, entry[row]["config"]).get_config()
        params = {k: config[k] for k in searched}
        expected = build_recommender(name, dict(base, **params)).get_config()
        if differ := sorted(k for k in set(config) | set(expected) if k not in ("seed", "checkpoint_path", "show_progress")
                            and config.get(k) != expected.get(k)):  # fmt: skip
            raise SystemExit(f"--tune-measured: row {row!r} differs from the search's fixed settings in {differ}")
        by_seed = {r["seed"]: r for r in entry[row]["runs"]}
        wanted = [first_seed + offset for offset in range(seeds_per_trial)]
        if missing := [s for s in wanted if s not in by_seed]:
            raise SystemExit(f"--tune-measured: row {row!r} has no fit of seed(s) {missing}")
        values = [by_seed[s]["best_valid_ndcg@10"] for s in wanted]
        out.append(MeasuredTrial(params, float(np.mean(values)), by_seed[wanted[0]]["valid_curve"], source=row))
        log(f"  measured trial {row}: valid ndcg@10 {np.mean(values):.4f} (seeds {wanted}), not fitted again")
    return out


def run_tuned(split: Split, name: str, base: dict[str, Any], seeds: list[int], trials: int, timeout: float,
              items: Any = None, seeds_per_trial: int = 1, start_from: list[dict[str, Any]] | None = None,
              space: dict[str, Any] | None = None, entry: dict[str, Any] | None = None,
              measured_rows: list[str] | None = None, checkpoint: Any = None) -> dict[str, Any]:  # fmt: skip
    """Search ``name``'s hyper-parameters on validation (Optuna), then fit the best with every seed.
    When the best is a measured trial (a stored row), that row's fits are the seeds' runs.
    ``checkpoint(record)`` receives the search's record before the seeds are fitted, so a run
    stopped during those fits keeps the search (an hour or more on a large catalogue)."""
    from personarec.recommend.base import FitContext
    from personarec.recommend.tuning import TuningConfig, tune

    config = TuningConfig(trials=trials, timeout_s=timeout, max_epochs=base.get("max_epochs", 200), patience=5, seed=0,
                          seeds=seeds_per_trial, start_from=start_from or [], space=space or {})  # fmt: skip
    measured = measured_trials(entry or {}, measured_rows or [], name, dict(base, max_epochs=config.max_epochs,
                               patience=config.patience), seeds[0], seeds_per_trial, space or {})  # fmt: skip
    result = tune(name, dict(base, seed=seeds[0]), split, FitContext(items=items), config, measured=measured,
                  log=lambda m: log("  " + m))  # fmt: skip
    log(f"  {name} search: {len(result.trials)} trials in {result.seconds:.0f}s, best valid ndcg@10 {result.best_value:.4f}: "
        f"{result.best_params}")  # fmt: skip
    search = result.summary()
    params = dict(base, **result.best_params)
    if checkpoint is not None:
        checkpoint({"search": search, "best_params": result.best_params, "runs_pending": seeds})
    if result.best_measured is not None:  # the stored row's fits of the best setting are its seeds' runs
        row = (entry or {})[result.best_measured.source]
        kept = {r["seed"]: r for r in row["runs"]}
        if all(s in kept for s in seeds):
            log(f"  {name}: the best is the measured row {result.best_measured.source}; its fits are the seeds' runs")
            picked = [dict(kept[s], reused_from=result.best_measured.source) for s in seeds]
            return {"search": search, "tuning_config": config.model_dump(mode="json"), "best_params": result.best_params,
                    "config": row["config"], "seeds": seeds, **summarise_runs(picked)}  # fmt: skip
    return {"search": search, "tuning_config": config.model_dump(mode="json"), "best_params": result.best_params,
            **run_seeds(split, name, params, seeds, items, fitted=result.model)}  # fmt: skip


def text_params(entry: dict[str, Any], base: dict[str, Any], source: str) -> tuple[dict[str, Any], str]:
    """text_sasrec's settings: the tuned SASRec's best (``source == "tuned"``, when that part ran) or
    SASRec's defaults; with where they came from, stored beside the row."""
    tuned = entry.get("sasrec_tuned", {}).get("best_params") if source == "tuned" else None
    return dict(base, **(tuned or {})), ("sasrec_tuned" if tuned else "sasrec defaults")


def run_blend(split: Split, member: str, params: dict[str, Any], seeds: list[int], ease_l2: float | None,
              items: Any = None) -> dict[str, Any]:  # fmt: skip
    """``member`` (SASRec or text_sasrec, each seed) blended with EASE: per-user standardised scores,
    weights chosen on validation (``personarec.recommend.blend``). The member alone is scored on test
    beside it, so the blend's gain over each member is measured on the same fits."""
    t0 = time.perf_counter()
    if ease_l2 is None:
        ease, _, _ = ease_l2_by_validation(split)
    else:
        ease = build_recommender("ease", {"l2": ease_l2}).fit(split)
    log(f"  ease member (l2 {ease.config.l2:g}) fit {time.perf_counter() - t0:.0f}s")

    def blend_with_ease(model: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        blend = build_recommender("blend", {"grid_step": BLEND_GRID_STEP}).fit(split, members=(model, ease))
        seconds = time.perf_counter() - t0
        test, _ = evaluate(split, {"blend": blend})
        sweep = {",".join(f"{w:g}" for w in v["weights"]): round(v["ndcg"], 5) for v in blend.validation_}
        log(f"  blend: weights ({member}, ease) {blend.weights.round(3).tolist()}, valid ndcg@10 {max(sweep.values()):.4f} "
            f"({member} {sweep['1,0']:.4f}, ease {sweep['0,1']:.4f}), test ndcg@10 {test['blend']['ndcg@10']:.4f}")  # fmt: skip
        return {"blend_weights": blend.weights.tolist(), "blend_valid_sweep": sweep, "blend_seconds": seconds,
                "blend_test": test["blend"]}  # fmt: skip

    out = run_seeds(split, member, params, seeds, items, after_fit=blend_with_ease)
    out[f"member_{member}_test_mean_std"] = out.pop("test_mean_std")
    out["test_mean_std"] = metrics_mean_std([r["blend_test"] for r in out["runs"]])
    out["members"] = {member: out.pop("config"), "ease": ease.get_config()}
    out["note"] = (f"test figures are the blend's; member_{member}_test_mean_std scores the same {member} fits alone; "
                   f"seconds_to_best is {member}'s (EASE's fit and the weight search add blend_seconds)")  # fmt: skip
    return out


# -- RecBole side by side ---------------------------------------------------------------------------
def export_for_recbole(split: Split, directory: Path, name: str) -> dict[str, Any]:
    """Write ``name/name.inter`` (every kept event; timestamp = per-user event order) and return
    the per-user histories/targets our own scoring of RecBole's model needs."""
    import polars as pl

    events = pl.concat([split.train, split.valid, split.test]).sort(["user_idx", "timestamp"], maintain_order=True)
    events = events.with_columns(pl.int_range(pl.len()).over("user_idx").alias("order"))
    (directory / name).mkdir(parents=True, exist_ok=True)
    with open(directory / name / f"{name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, i, o in zip(events["user_idx"].to_list(), events["item_idx"].to_list(), events["order"].to_list()):
            f.write(f"{u}\t{i}\t{o}\n")
    history = split.history("test")
    targets = split.targets("test")
    users = split.eval_users("test")
    return {
        "histories": {int(u): history[u].tolist() for u in users},
        "targets": {int(u): int(targets[u][0]) for u in users},
    }


def run_recbole(split: Split, python: str, seed: int, epoch_cap: int, name: str, timeout: int = 1500) -> dict[str, Any]:
    if not Path(python).exists():
        return {"skipped": f"RecBole venv not found at {python}"}
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        tmp_path = Path(tmp)
        spec = export_for_recbole(split, tmp_path / "data", name)
        spec.update(dataset=name, data_dir=str(tmp_path / "data"), checkpoint_dir=str(tmp_path / "ckpt"),
                    n_items=split.n_items, seed=seed, max_epochs=epoch_cap, hyper=RECBOLE_DEFAULTS,
                    num_threads=RECBOLE_DEFAULTS.get("num_threads", 2))  # fmt: skip
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([python, str(ROOT / "recsys_recbole.py"), str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
                                  capture_output=True, text=True, cwd=tmp, timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"skipped": f"RecBole run stopped after the {timeout}s time limit", "epoch_cap": epoch_cap}
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr[-3000:], "wall_seconds": wall}
        out = json.loads((tmp_path / "out.json").read_text())
    out["wall_seconds"] = wall
    out["hyper"] = RECBOLE_DEFAULTS
    out["epoch_seconds_median"] = float(np.median(out["epoch_seconds"])) if out["epoch_seconds"] else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke mode: ML-100k only, tiny models, 1 seed, 2 trials, RecBole 1 epoch")
    ap.add_argument("--datasets", default=DATASETS)
    ap.add_argument("--seeds", default="0,1,2", help="seeds of every neural model")
    ap.add_argument("--parts", default="baselines,sasrec,tuned,text,recbole",
                    help="which parts to run; results of other parts already in the output JSON are kept "
                         "(also: blend = SASRec + EASE, blend_text = text_sasrec + EASE, weights on validation)")
    ap.add_argument("--trials", type=int, default=12, help="search budget per dataset (trials)")
    ap.add_argument("--seeds-per-trial", type=int, default=2,
                    help="fits per search trial, scored by their mean (one fit's validation score is noisy)")
    ap.add_argument("--tune-start", type=json.loads, default=[], metavar="JSON",
                    help='settings the search tries first, e.g. \'[{"hidden": 64}, {"hidden": 256, "n_blocks": 1}]\'')
    ap.add_argument("--tune-space", type=json.loads, default={}, metavar="JSON",
                    help='searched parameters added or replaced, e.g. \'{"hidden": {"choices": [64, 256]}}\'')
    ap.add_argument("--tune-measured", default="", metavar="ROWS",
                    help="stored rows of this dataset (e.g. sasrec,sasrec_office_setting) whose fits of the first "
                         "seed(s) enter the search as finished trials, not fitted again; their fixed settings must "
                         "match the search's. A best measured row gives its own fits as the tuned runs")
    ap.add_argument("--tune-timeout", type=float, default=1500, help="search budget per dataset (seconds; no trial starts after it)")
    ap.add_argument("--text-params", default="tuned", choices=["tuned", "default"],
                    help="text_sasrec's settings: the tuned SASRec's (when that part ran) or SASRec's defaults")
    ap.add_argument("--recbole-python", default="/work/recbole-venv/bin/python")
    ap.add_argument("--recbole-epochs", type=int, default=200, help="epoch cap of RecBole's run (its early stopping ends it)")
    ap.add_argument("--recbole-datasets", default="ml-100k")
    ap.add_argument("--recbole-timeout", type=int, default=10800,
                    help="seconds before RecBole's run is stopped (ML-100k to its best: ~2 h on 2 threads)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for our models")
    ap.add_argument("--preset", default="default", choices=["default", "legacy"],
                    help="SASRec-family settings: the library defaults or the earlier ones (LEGACY_SASREC)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one SASRec-family setting of the preset (JSON value), e.g. --set patience=40")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    datasets = [d for d in args.datasets.split(",") if d]
    base = dict(SASREC, num_threads=args.threads, **(LEGACY_SASREC if args.preset == "legacy" else {}))
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            base[key] = json.loads(value)
        except json.JSONDecodeError:
            base[key] = value  # a bare string, e.g. --set norm=pre
    RECBOLE_DEFAULTS["num_threads"] = args.threads
    seeds = [int(s) for s in args.seeds.split(",")]
    trials, recbole_epochs = args.trials, args.recbole_epochs
    if args.quick:
        datasets = ["ml-100k"]
        base.update(max_len=50, hidden=32, n_blocks=1, max_epochs=3)
        seeds, trials, recbole_epochs = [0], 2, 1
    out_path = Path(args.out) if args.out else ROOT / "results" / ("recsys_quick.json" if args.quick else "recsys.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    import torch

    parts = set(args.parts.split(","))
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    doc: dict[str, Any] = {
        "benchmark": "recsys", "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": args.threads,
                    "note": "shared machine: other jobs ran at the same time; timings are indicative"},
        "protocol_note": "leave-one-out, full ranking over the whole catalogue, seen items as the protocol card says "
                         "(excluded); metrics from personarec.evaluate.harness (accuracy family); cold_recall@10 over "
                         "users whose test item has no training event",
        "reference": {"RecBole 1.2.1 SASRec on our ML-100k split (issue 13)": {"ndcg@10": 0.1056, "recall@10": 0.2036,
                                                                              "seconds_to_best": "~27 min"},
                      "goal": "ML-100k: our SASRec >= RecBole's NDCG@10 in < 1/3 of its time to best; every dataset: "
                              "best personarec model > EASE; text-rich sets: >= +10% NDCG@10 over ID-only SASRec"},
        "datasets": previous.get("datasets", {}),
        "parts_run": sorted(parts),
        "preset": args.preset,
    }  # fmt: skip
    for name in datasets:
        t_ds = time.perf_counter()
        log(f"{name}: loading and splitting")
        split = make_split(load_dataset(name, download=False))
        entry: dict[str, Any] = doc["datasets"].get(name, {})
        entry.update(protocol_card=split.protocol.lines(), protocol=split.protocol.model_dump(),
                     n_cold_test_users=int(len(cold_target_users(split))), has_text=has_text(split))  # fmt: skip

        def save() -> None:  # partial results survive a kill
            doc["datasets"][name] = entry
            out_path.write_text(json.dumps(doc, indent=2, default=float))

        if "baselines" in parts:
            log(f"{name}: baselines")
            entry["baselines"] = run_baselines(split)
            save()
        if "sasrec" in parts:
            log(f"{name}: sasrec (defaults), seeds {seeds}")
            entry["sasrec"] = run_seeds(split, "sasrec", base, seeds)
            save()
        if "tuned" in parts:
            log(f"{name}: sasrec tuned on validation ({trials} trials, {args.tune_timeout:.0f}s budget)")
            entry["sasrec_tuned"] = run_tuned(split, "sasrec", base, seeds, trials, args.tune_timeout,
                                              seeds_per_trial=args.seeds_per_trial, start_from=args.tune_start,
                                              space=args.tune_space, entry=entry,
                                              measured_rows=[r for r in args.tune_measured.split(",") if r],
                                              checkpoint=lambda record: (entry.update(sasrec_tuned=record), save()))  # fmt: skip
            save()
        if "text" in parts:
            if not entry["has_text"]:
                entry["text_sasrec"] = {"skipped": "the catalogue has no item text"}
            else:
                log(f"{name}: text_sasrec, seeds {seeds}")
                params, params_from = text_params(entry, base, args.text_params)
                entry["text_sasrec"] = {"params_from": params_from,
                                        **run_seeds(split, "text_sasrec", params, seeds, items=item_space(split))}  # fmt: skip
            save()
        ease_l2 = entry.get("baselines", {}).get("ease", {}).get("config", {}).get("l2")
        if "blend" in parts:
            log(f"{name}: sasrec + ease blend (weights on validation), seeds {seeds}")
            entry["blend_sasrec_ease"] = run_blend(split, "sasrec", base, seeds, ease_l2)
            save()
        if "blend_text" in parts:
            if not entry["has_text"]:
                entry["blend_text_sasrec_ease"] = {"skipped": "the catalogue has no item text"}
            else:  # text_sasrec's settings follow --text-params as in the text part, so its fits match that row's
                log(f"{name}: text_sasrec + ease blend (weights on validation), seeds {seeds}")
                params, params_from = text_params(entry, base, args.text_params)
                entry["blend_text_sasrec_ease"] = {"params_from": params_from, **run_blend(
                    split, "text_sasrec", params, seeds, ease_l2, items=item_space(split))}  # fmt: skip
            save()
        if "recbole" in parts and name in args.recbole_datasets.split(","):
            log(f"{name}: RecBole SASRec to its best (cap {recbole_epochs} epochs)")
            run = run_recbole(split, args.recbole_python, 2020, recbole_epochs, f"pr_{name.replace('-', '_')}",
                              timeout=args.recbole_timeout)  # fmt: skip
            # earlier records (the reference, stopped reruns) stay beside the new run
            kept = {k: v for k, v in entry.get("recbole", {}).items() if k in ("issue_reference", "earlier_runs")}
            entry["recbole"] = {**kept, **run}
            save()
        entry["wall_seconds"] = {**entry.get("wall_seconds", {}), ",".join(sorted(parts)): time.perf_counter() - t_ds}
        entry["verdict"] = verdict(entry)
        save()
        log(f"{name}: done in {time.perf_counter() - t_ds:.0f}s")
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out_path.write_text(json.dumps(doc, indent=2, default=float))
    _print_summary(doc)
    log(f"wrote {out_path}")


def _ndcg(entry: dict[str, Any], model: str) -> float | None:
    res = entry.get(model, {})
    if "test_mean_std" in res:
        return res["test_mean_std"]["ndcg@10"]["mean"]
    return entry.get("baselines", {}).get(model, {}).get("test", {}).get("ndcg@10")


def verdict(entry: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, checked on this dataset's figures (None where a part did not run)."""
    ours = {m: _ndcg(entry, m) for m in OURS}
    ours = {m: v for m, v in ours.items() if v is not None}
    ease = _ndcg(entry, "ease")
    best = max(ours, key=ours.get) if ours else None  # type: ignore[arg-type]
    out: dict[str, Any] = {"best_personarec_model": best, "best_ndcg@10": ours.get(best) if best else None, "ease_ndcg@10": ease}
    if best and ease:
        out["best_over_ease"] = ours[best] / ease - 1
    id_only = max((v for m, v in ours.items() if m in ("sasrec", "sasrec_tuned")), default=None)  # ID-only SASRec
    if "text_sasrec" in ours and id_only:
        out["text_over_id_sasrec"] = ours["text_sasrec"] / id_only - 1
    if best and id_only:  # the goal on text-rich sets: the best model against the better ID-only SASRec
        out["best_over_id_sasrec"] = ours[best] / id_only - 1
    rb = entry.get("recbole", {})
    # a RecBole run to its best measured here, else the measurement of it (same split, evaluator)
    measured = "test_ours_seen_excluded" in rb and "seconds_to_best" in rb
    reference = rb if measured else rb.get("issue_reference", {})
    if reference and best:
        ours_time = entry.get(best, {}).get("seconds_to_best_median")
        out["recbole_source"] = "measured by this benchmark" if measured else "issue 13's run (2 cores)"
        out["recbole_ndcg@10"] = rb["test_ours_seen_excluded"]["ndcg@10"] if measured else reference["ndcg@10"]
        out["recbole_seconds_to_best"] = reference.get("seconds_to_best")
        out["best_over_recbole"] = ours[best] / out["recbole_ndcg@10"] - 1
        if id_only:
            out["id_sasrec_over_recbole"] = id_only / out["recbole_ndcg@10"] - 1
        rb_time = out["recbole_seconds_to_best"]
        if ours_time and rb_time:
            out["time_to_best_ours_over_recbole"] = ours_time / rb_time
        sasrec_time = entry.get("sasrec", {}).get("seconds_to_best_median")  # the goal's pair: SASRec vs SASRec
        if sasrec_time and rb_time:
            out["sasrec_time_to_best_over_recbole"] = sasrec_time / rb_time
    return out


def _print_summary(doc: dict[str, Any]) -> None:
    cols = ["recall@10", "ndcg@10", "cold_recall@10"]
    for name, entry in doc["datasets"].items():
        print(f"\n== {name} ==")
        print("\n".join(entry["protocol_card"]))
        print(f"{'model':<24}" + "".join(f"{m:>16}" for m in cols) + f"{'s to best':>11}")
        for model, res in entry.get("baselines", {}).items():
            print(f"{model:<24}" + "".join(f"{_num(res['test'].get(m)):>16}" for m in cols))
        for model in OURS:
            res = entry.get(model, {})
            if "test_mean_std" not in res:
                continue
            s = res["test_mean_std"]
            cells = "".join(f"{_num(s.get(m, {}).get('mean')) + ' ±' + _num(s.get(m, {}).get('std'), 3):>16}" for m in cols)
            print(f"{model:<24}{cells}{res.get('seconds_to_best_median', float('nan')):>11.0f}")
        rb = entry.get("recbole", {})
        if "test_ours_seen_excluded" in rb:
            print(f"{'recbole':<24}" + "".join(f"{_num(rb['test_ours_seen_excluded'].get(m)):>16}" for m in cols)
                  + f"{rb.get('seconds_to_best', float('nan')):>11.0f}")  # fmt: skip
        elif rb:
            print(f"recbole: {rb}")
        print(f"verdict: {entry.get('verdict')}")


def _num(v: Any, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


if __name__ == "__main__":
    main()
