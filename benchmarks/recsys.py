"""Recommender benchmark: baselines and SASRec (full-softmax CE) on ML-100k and ML-latest-small,
leave-one-out, full ranking, seen items excluded; RecBole 1.2.1 SASRec side by side.

    .venv/bin/python benchmarks/recsys.py            # full run  -> benchmarks/results/recsys.json
    .venv/bin/python benchmarks/recsys.py --quick    # smoke run -> benchmarks/results/recsys_quick.json

Metrics come from ``personarec.evaluate.harness.evaluate_models`` (the same code path as
``personarec evaluate``); every table is saved with its protocol card. SASRec runs with several
seeds (mean ± std). RecBole runs in its own venv (never a dependency of the package) on the same
split, exported with per-user event order as the timestamp; its epochs are capped so the benchmark
stays bounded, and the cap is written in the JSON. Our SASRec is also timed at RecBole's settings
(same max_len, hidden, blocks, heads, dropout, lr) so the epoch-time ratio compares like with like.
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

#: SASRec settings chosen on ML-100k *validation* NDCG@10 (see the "tuning" entry of the JSON and
#: benchmarks/results/recsys_tuning.json when --tune was run).
SASREC = dict(max_len=200, hidden=64, n_blocks=2, n_heads=1, dropout=0.2, attn_dropout=0.0, lr=5e-3,
              batch_size=64, max_epochs=40, patience=5, show_progress=False)  # fmt: skip
BASELINES = {"popular": {}, "itemknn": {"neighbours": 100, "shrink": 10.0}, "ease": {"l2": 500.0}}
RECBOLE_MATCHED = dict(max_len=50, hidden=64, n_blocks=2, n_heads=1, dropout=0.2, attn_dropout=0.2, lr=1e-3,
                       batch_size=64, recbole_batch_size=2048, patience=10)  # fmt: skip


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def evaluate(split: Split, models: dict[str, Recommender], stage: str = "test") -> tuple[dict[str, dict[str, float]], dict]:
    result = evaluate_models(split, models, stage=stage, ks=KS, metrics=["accuracy"], n_boot=200, show_progress=False)
    rows = {r["model"]: {m: float(r[m]) for m in METRICS} for r in result.summary.iter_rows(named=True)}
    return rows, result.timings


def mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def run_baselines(split: Split) -> dict[str, Any]:
    models, fit_s = {}, {}
    for name, params in BASELINES.items():
        t0 = time.perf_counter()
        models[name] = build_recommender(name, params).fit(split)
        fit_s[name] = time.perf_counter() - t0
        log(f"  {name} fit {fit_s[name]:.1f}s")
    test, timings = evaluate(split, models)
    valid, _ = evaluate(split, models, "valid")
    return {
        name: {"config": models[name].get_config(), "fit_seconds": fit_s[name], "test": test[name],
               "valid_ndcg@10": valid[name]["ndcg@10"], "eval": timings[name]}
        for name in models
    }  # fmt: skip


def run_sasrec(split: Split, params: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        model = build_recommender("sasrec", dict(params, seed=seed))
        t0 = time.perf_counter()
        model.fit(split)
        fit_s = time.perf_counter() - t0
        test, timings = evaluate(split, {"sasrec": model})
        epoch_s = [r["train_seconds"] for r in model.history_]
        runs.append({
            "seed": seed, "fit_seconds": fit_s, "epochs_run": len(model.history_), "best_epoch": model.best_epoch,
            "best_valid_ndcg@10": max((r.get("valid_ndcg", 0.0) for r in model.history_), default=0.0),
            "epoch_seconds_median": float(np.median(epoch_s)),
            "valid_eval_seconds_median": float(np.median([r.get("eval_seconds", np.nan) for r in model.history_])),
            "test": test["sasrec"], "test_eval": timings["sasrec"],
        })  # fmt: skip
        log(f"  sasrec seed {seed}: {len(epoch_s)} epochs (best {model.best_epoch}), "
            f"{np.median(epoch_s):.2f}s/epoch, test ndcg@10 {test['sasrec']['ndcg@10']:.4f}")  # fmt: skip
    summary = {m: mean_std([r["test"][m] for r in runs]) for m in METRICS}
    return {"config": {k: v for k, v in params.items() if k != "show_progress"}, "seeds": seeds, "runs": runs,
            "test_mean_std": summary,
            "epoch_seconds_median": float(np.median([r["epoch_seconds_median"] for r in runs])),
            "test_full_ranking_seconds_median": float(np.median([r["test_eval"]["rank_s"] for r in runs]))}  # fmt: skip


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
                    n_items=split.n_items, seed=seed, max_epochs=epoch_cap, hyper=RECBOLE_MATCHED,
                    num_threads=RECBOLE_MATCHED.get("num_threads", 2))  # fmt: skip
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
    out["hyper"] = RECBOLE_MATCHED
    out["epoch_seconds_median"] = float(np.median(out["epoch_seconds"])) if out["epoch_seconds"] else None
    return out


def run_matched(split: Split, seed: int, epochs: int) -> dict[str, Any]:
    """Our SASRec at RecBole's settings for the same number of epochs: the epoch-time baseline."""
    params = {k: v for k, v in RECBOLE_MATCHED.items() if k != "recbole_batch_size"}  # num_threads included
    model = build_recommender("sasrec", dict(params, seed=seed, max_epochs=epochs, early_stopping=True,
                                             patience=epochs + 1, show_progress=False))  # fmt: skip
    t0 = time.perf_counter()
    model.fit(split)
    fit_s = time.perf_counter() - t0
    test, timings = evaluate(split, {"sasrec": model})
    epoch_s = [r["train_seconds"] for r in model.history_]
    return {"hyper": params, "epochs": epochs, "epoch_seconds": epoch_s, "epoch_seconds_median": float(np.median(epoch_s)),
            "fit_seconds": fit_s, "best_epoch": model.best_epoch, "test_seen_excluded": test["sasrec"],
            "test_full_ranking_seconds": timings["sasrec"]["rank_s"]}  # fmt: skip


# -- tuning (validation only) -----------------------------------------------------------------------
TUNING_GRID = [
    {},
    {"dropout": 0.5},
    {"lr": 2e-3},
]


def run_tuning(split: Split, base: dict[str, Any], max_epochs: int, out: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for change in TUNING_GRID:
        params = dict(base, **change, max_epochs=max_epochs, patience=5, seed=0)
        model = build_recommender("sasrec", params).fit(split)
        best = max(r["valid_ndcg"] for r in model.history_)
        rows.append({"change": change, "max_epochs": max_epochs, "best_valid_ndcg@10": best, "best_epoch": model.best_epoch,
                     "epochs_run": len(model.history_), "valid_curve": [round(r["valid_ndcg"], 4) for r in model.history_],
                     "epoch_seconds_median": float(np.median([r["train_seconds"] for r in model.history_]))})  # fmt: skip
        log(f"  tune {change}: valid ndcg@10 {best:.4f} at epoch {model.best_epoch}")
        if out is not None:  # written after every grid point: a stopped run keeps what it measured
            out.write_text(json.dumps({"dataset": "ml-100k", "stage": "valid", "base": base, "grid": rows}, indent=2))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke mode: ML-100k only, tiny SASRec, 1 seed, RecBole 1 epoch")
    ap.add_argument("--datasets", default="ml-100k,ml-latest-small")
    ap.add_argument("--seeds", default="0,1,2", help="SASRec seeds (ML-100k)")
    ap.add_argument("--seeds-other", default="0", help="SASRec seeds for the other datasets")
    ap.add_argument("--recbole-python", default="/work/recbole-venv/bin/python")
    ap.add_argument("--recbole-epochs", type=int, default=2, help="epoch cap of RecBole's run")
    ap.add_argument("--recbole-datasets", default="ml-100k")
    ap.add_argument("--recbole-timeout", type=int, default=1500, help="seconds before RecBole's run is stopped")
    ap.add_argument("--max-epochs-other", type=int, default=None,
                    help="cap SASRec's epochs on datasets other than ml-100k (time budget; stated in the JSON)")
    ap.add_argument("--tune", action="store_true", help="only run the validation grid -> recsys_tuning.json")
    ap.add_argument("--parts", default="baselines,sasrec,recbole",
                    help="which parts to run; results of other parts already in the output JSON are kept")
    ap.add_argument("--tune-epochs", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for our models")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    datasets = [d for d in args.datasets.split(",") if d]
    sasrec = dict(SASREC, num_threads=args.threads)
    RECBOLE_MATCHED["num_threads"] = args.threads
    seeds = [int(s) for s in args.seeds.split(",")]
    seeds_other = [int(s) for s in args.seeds_other.split(",")]
    recbole_epochs = args.recbole_epochs
    if args.quick:
        datasets = ["ml-100k"]
        sasrec.update(max_len=50, hidden=32, n_blocks=1, max_epochs=3)
        seeds, recbole_epochs = [0], 1
    out_path = Path(args.out) if args.out else ROOT / "results" / ("recsys_quick.json" if args.quick else "recsys.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    if args.tune:
        split = make_split(load_dataset("ml-100k", download=False))
        path = ROOT / "results" / ("recsys_tuning_quick.json" if args.quick else "recsys_tuning.json")
        run_tuning(split, sasrec, max_epochs=3 if args.quick else args.tune_epochs, out=path)
        log(f"wrote {path}")
        return

    import torch

    parts = set(args.parts.split(","))
    previous = json.loads(out_path.read_text()) if out_path.exists() and parts != {"baselines", "sasrec", "recbole"} else {}
    doc: dict[str, Any] = {
        "benchmark": "recsys", "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": args.threads,
                    "note": "shared machine: other jobs ran at the same time; timings are indicative"},
        "protocol_note": "leave-one-out, full ranking over the whole catalogue, seen items excluded (ours); "
                         "metrics from personarec.evaluate.harness (accuracy family)",
        "reference": {"LlamaRec Table 1, SASRec on ML-100k": {"recall@10": 0.0993, "ndcg@10": 0.0522},
                      "goal": "CE SASRec ndcg@10 >= 0.060 on ML-100k"},
        "datasets": previous.get("datasets", {}),
        "parts_run": sorted(parts),
    }  # fmt: skip
    for name in datasets:
        t_ds = time.perf_counter()
        log(f"{name}: loading and splitting")
        split = make_split(load_dataset(name, download=False))
        entry: dict[str, Any] = doc["datasets"].get(name, {})
        entry.update(protocol_card=split.protocol.lines(), protocol=split.protocol.model_dump())
        if "baselines" in parts:
            log(f"{name}: baselines")
            entry["baselines"] = run_baselines(split)
        ds_seeds = seeds if name == "ml-100k" else seeds_other
        if "sasrec" in parts:
            log(f"{name}: sasrec seeds {ds_seeds}")
            ds_sasrec = dict(sasrec)
            if name != "ml-100k" and args.max_epochs_other:
                ds_sasrec["max_epochs"] = args.max_epochs_other
            entry["sasrec"] = run_sasrec(split, ds_sasrec, ds_seeds)
        if "recbole" in parts and name in args.recbole_datasets.split(","):
            log(f"{name}: our SASRec at RecBole's settings ({recbole_epochs} epochs)")
            entry["matched_ours"] = run_matched(split, seeds[0], recbole_epochs)
            log(f"{name}: RecBole SASRec (cap {recbole_epochs} epochs)")
            rb = run_recbole(split, args.recbole_python, seeds[0], recbole_epochs, f"pr_{name.replace('-', '_')}",
                             timeout=args.recbole_timeout)
            entry["recbole"] = rb
            if rb.get("epoch_seconds_median") and entry["matched_ours"]["epoch_seconds_median"]:
                entry["epoch_time_ratio_recbole_over_ours"] = rb["epoch_seconds_median"] / entry["matched_ours"]["epoch_seconds_median"]
        entry.setdefault("wall_seconds", {})
        entry["wall_seconds"] = dict(entry["wall_seconds"]) if isinstance(entry["wall_seconds"], dict) else {}
        entry["wall_seconds"][",".join(sorted(parts))] = time.perf_counter() - t_ds
        doc["datasets"][name] = entry
        out_path.write_text(json.dumps(doc, indent=2, default=float))  # partial results survive a kill
        log(f"{name}: done in {time.perf_counter() - t_ds:.0f}s")
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out_path.write_text(json.dumps(doc, indent=2, default=float))
    _print_summary(doc)
    log(f"wrote {out_path}")


def _print_summary(doc: dict[str, Any]) -> None:
    for name, entry in doc["datasets"].items():
        print(f"\n== {name} ==")
        print("\n".join(entry["protocol_card"]))
        print(f"{'model':<10}" + "".join(f"{m:>11}" for m in METRICS))
        for model, res in entry.get("baselines", {}).items():
            print(f"{model:<10}" + "".join(f"{res['test'][m]:>11.4f}" for m in METRICS))
        if "sasrec" not in entry:
            continue
        s = entry["sasrec"]["test_mean_std"]
        print(f"{'sasrec':<10}" + "".join(f"{s[m]['mean']:>11.4f}" for m in METRICS) + f"  (mean of {s['ndcg@10']['n']} seeds)")
        print(f"sasrec epoch {entry['sasrec']['epoch_seconds_median']:.2f}s, test full ranking {entry['sasrec']['test_full_ranking_seconds_median']:.2f}s")
        if "recbole" in entry:
            rb = entry["recbole"]
            if "test_ours_seen_kept" in rb:
                print(f"recbole: {rb['epochs_run']} epochs (cap {rb['epoch_cap']}), {rb['epoch_seconds_median']:.1f}s/epoch; "
                      f"ndcg@10 seen kept {rb['test_ours_seen_kept']['ndcg@10']:.4f}, excluded {rb['test_ours_seen_excluded']['ndcg@10']:.4f}; "
                      f"ratio recbole/ours epoch time {entry.get('epoch_time_ratio_recbole_over_ours', float('nan')):.1f}x")  # fmt: skip
            else:
                print(f"recbole: {rb}")


if __name__ == "__main__":
    main()
