"""Do personas improve recommendations? -> benchmarks/results/distill.json (+ an HTML report per dataset).

    .venv/bin/python benchmarks/distill.py                                   # ML-100k + ML-latest-small, 3 seeds
    .venv/bin/python benchmarks/distill.py --datasets ml-100k --seeds 0 --quick   # smoke run

Same protocol as benchmarks/recsys.py (leave-one-out, full ranking, seen items excluded), metrics
from ``personarec.evaluate.harness`` (accuracy and beyond-accuracy families), on the TEST targets.
Per dataset and seed, in one process:

- ``sasrec``: SASRec with full-softmax CE (the baseline, same hyper-parameters as recsys.py);
- ``persona_sasrec``: the same model + the persona alignment loss (personas from TRAINING events
  only; no LLM at serving time);
- ``persona_retrieval``: candidates from the persona's interest and explore clusters (faiss search
  restricted to each cluster), exploration quota ``--quota``;
- ``hybrid``: SASRec's list with ``--quota`` of the slots given to persona explore clusters
  (the serving ranker), and ``hybrid_p`` the same on top of persona_sasrec.

Personas: the LLM persona from ``--persona-store`` when it was written for exactly the same history,
the deterministic (cluster statistics) fallback persona otherwise; the JSON states the LLM share.
Then, on seed 0: the accuracy/novelty curve of the hybrid over the exploration quota, and a replayed
A/B of the best persona arm against SASRec. The student-LLM figures (speed, topic F1) come from
benchmarks/distill_student.py and are copied in with their command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from personarec.data.registry import load_dataset  # noqa: E402
from personarec.data.splits import Split, make_split  # noqa: E402
from personarec.evaluate.ab import replay_ab  # noqa: E402
from personarec.evaluate.harness import EvalResult, evaluate_models  # noqa: E402
from personarec.items.build import build_item_space  # noqa: E402
from personarec.items.config import ItemsConfig  # noqa: E402
from personarec.items.embed import TextEmbedder  # noqa: E402
from personarec.items.space import ItemSpace  # noqa: E402
from personarec.personas.profiles import UserProfiles  # noqa: E402
from personarec.recommend.base import Recommender, build_recommender  # noqa: E402

ROOT = Path(__file__).resolve().parent
KS = (5, 10, 20)
K = 10
#: recsys.py's SASRec; min_epochs 15 because ML-latest-small's validation curve has a noisy early
#: peak (epoch 2) that stopped runs at epoch 7 (on ML-100k every run went past epoch 15 anyway)
SASREC = dict(max_len=200, hidden=64, n_blocks=2, n_heads=1, dropout=0.2, attn_dropout=0.0, lr=5e-3,
              batch_size=64, max_epochs=40, patience=5, min_epochs=15, show_progress=False, num_threads=1)  # fmt: skip
PERSONA = dict(alpha=0.1, aux_epochs=10, aux_loss="cosine", pooling="mean", layer=-1)
#: persona-text query, candidates scored by similarity mixed with SASRec's and popularity's percentile
#: ranks (similarity alone reached NDCG@10 ~0.016 on ML-100k: titles and genres are a weak signal)
RETRIEVAL = dict(query="persona", sasrec_weight=0.6, popularity_weight=0.2)
REPORTED = [f"{m}@{K}" for m in ("ndcg", "recall", "mrr")] + [
    f"{m}@{K}" for m in ("novelty", "serendipity", "exploration", "ild", "coverage")
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(a):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def summary_rows(result: EvalResult) -> dict[str, dict[str, float]]:
    cols = [c for c in REPORTED if c in result.summary.columns]
    return {r["model"]: {c: float(r[c]) for c in cols} for r in result.summary.iter_rows(named=True)}


def fit(name: str, params: dict[str, Any], split: Split, **context: Any) -> tuple[Recommender, float]:
    model = build_recommender(name, params)
    t0 = time.perf_counter()
    model.fit(split, **context)
    return model, time.perf_counter() - t0


def evaluate(split: Split, space: ItemSpace, models: dict[str, Recommender]) -> EvalResult:
    return evaluate_models(split, models, stage="test", ks=KS, items=space, n_boot=500, show_progress=False)


def run_dataset(name: str, args: argparse.Namespace, sasrec: dict[str, Any]) -> dict[str, Any]:
    t_ds = time.perf_counter()
    log(f"{name}: loading, splitting, item space")
    split = make_split(load_dataset(name, download=False))
    items_cfg = ItemsConfig()
    space = build_item_space(split, items_cfg, show_progress=False)
    store = None
    if args.persona_store:
        from personarec.personas.store.sqlite import SQLiteStore

        store = SQLiteStore(args.persona_store)
    t0 = time.perf_counter()
    profiles = UserProfiles.build(split, space, "valid", store)
    vectors, _ = TextEmbedder(items_cfg).embed(profiles.texts, show_progress=False)
    persona_seconds = time.perf_counter() - t0
    log(f"{name}: {profiles.n_users} training-history personas ({profiles.llm_share:.1%} from the LLM) in {persona_seconds:.0f}s")
    entry: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv), "finished": None,
        "protocol_card": split.protocol.lines(),
        "personas": {"n_users": profiles.n_users, "llm_share": profiles.llm_share, "stage": "valid (training events only)",
                     "build_and_embed_seconds": persona_seconds, "example_text": profiles.texts[0]},
        "config": {"sasrec": sasrec, "persona_sasrec": PERSONA, "persona_retrieval": RETRIEVAL, "quota": args.quota},
        "seeds": {},
    }  # fmt: skip
    runs: dict[int, dict[str, Any]] = {}
    first_result: EvalResult | None = None
    first_models: dict[str, Recommender] = {}
    for seed in args.seeds:
        base, base_s = fit("sasrec", dict(sasrec, seed=seed), split)
        log(f"{name} seed {seed}: sasrec {base_s:.0f}s, best epoch {base.best_epoch}")
        retrieval, retrieval_s = fit("persona_retrieval", dict(RETRIEVAL, explore_quota=args.quota), split, items=space, base=base, persona_store=store)
        distilled, dist_s = fit("persona_sasrec", dict(sasrec, **PERSONA, seed=seed), split, items=space, persona_vectors=vectors, persona_profiles=profiles)
        log(f"{name} seed {seed}: persona_sasrec {dist_s:.0f}s, best epoch {distilled.best_epoch}")
        hybrid, _ = fit("persona_hybrid", {"explore_quota": args.quota}, split, items=space, base=base, persona_store=store)
        hybrid_p, _ = fit("persona_hybrid", {"explore_quota": args.quota}, split, items=space, base=distilled, persona_store=store)
        models = {"sasrec": base, "persona_sasrec": distilled, "persona_retrieval": retrieval, "hybrid": hybrid, "hybrid_p": hybrid_p}
        result = evaluate(split, space, models)
        runs[seed] = {
            "test": summary_rows(result),
            "fit_seconds": {"sasrec": base_s, "persona_sasrec": dist_s, "persona_retrieval": retrieval_s},
            "best_epoch": {"sasrec": base.best_epoch, "persona_sasrec": distilled.best_epoch},
            "valid_curve": {"sasrec": [round(r.get("valid_ndcg", 0.0), 4) for r in base.history_],
                            "persona_sasrec": [round(r.get("valid_ndcg", 0.0), 4) for r in distilled.history_]},
            "aux_curve": [round(r["aux_loss"], 4) for r in distilled.history_ if "aux_loss" in r],
            "eval_seconds": {m: t.get("rank_s") for m, t in result.timings.items()},
        }  # fmt: skip
        r = runs[seed]["test"]
        log(f"{name} seed {seed}: ndcg@10 " + ", ".join(f"{m} {v[f'ndcg@{K}']:.4f}" for m, v in r.items()))
        entry["seeds"][str(seed)] = runs[seed]
        if first_result is None:
            first_result, first_models = result, models
        save_partial(args, name, entry)
    model_names = list(next(iter(runs.values()))["test"])
    entry["test_mean_std"] = {
        m: {c: mean_std([runs[s]["test"][m].get(c) for s in runs]) for c in REPORTED} for m in model_names
    }
    entry["goals"] = goals(entry, name)

    assert first_result is not None
    log(f"{name}: exploration-quota curve (seed {args.seeds[0]})")
    entry["quota_curve"], curve_result = quota_curve(split, space, first_models["sasrec"], store, args.quotas)
    log(f"{name}: replayed A/B")
    entry["ab"], ab = ab_test(first_result, entry)
    write_run(args, name, split, first_result, curve_result, ab, entry)
    entry["wall_seconds"] = time.perf_counter() - t_ds
    entry["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return entry


def goals(entry: dict[str, Any], name: str) -> dict[str, Any]:
    ms = entry["test_mean_std"]
    base, dist = ms["sasrec"][f"ndcg@{K}"], ms["persona_sasrec"][f"ndcg@{K}"]
    gain = dist["mean"] / base["mean"] - 1 if base["mean"] else float("nan")
    gap_std = max(base["std"], dist["std"])
    no_llm = {m: ms[m][f"ndcg@{K}"]["mean"] for m in ("sasrec", "persona_sasrec")}
    out = {
        "persona_sasrec_gain_over_sasrec": gain,
        "gain_over_2_std": bool(dist["mean"] - base["mean"] > 2 * gap_std),
        "target_gain_5pct_met": bool(gain >= 0.05 and dist["mean"] - base["mean"] > 2 * gap_std),
    }
    if name == "ml-100k":
        out["best_no_llm_serving_ndcg@10"] = max(no_llm.values())
        out["llamarec_ndcg@10_0.0759_reached"] = bool(max(no_llm.values()) >= 0.0759)
    return out


def quota_curve(split: Split, space: ItemSpace, base: Recommender, store: Any, quotas: list[float]) -> tuple[list[dict[str, Any]], EvalResult]:
    models = {f"hybrid q={q:g}": fit("persona_hybrid", {"explore_quota": q}, split, items=space, base=base, persona_store=store)[0] for q in quotas}
    result = evaluate(split, space, models)
    rows = summary_rows(result)
    ref = rows[f"hybrid q={quotas[0]:g}"]
    curve = []
    for q in quotas:
        r = rows[f"hybrid q={q:g}"]
        curve.append({"quota": q, **r, "ndcg_relative_change": r[f"ndcg@{K}"] / ref[f"ndcg@{K}"] - 1 if ref[f"ndcg@{K}"] else None,
                      "novelty_gain": r[f"novelty@{K}"] - ref[f"novelty@{K}"],
                      "serendipity_gain": r.get(f"serendipity@{K}", 0.0) - ref.get(f"serendipity@{K}", 0.0)})  # fmt: skip
    ok = [c for c in curve[1:] if c["ndcg_relative_change"] is not None and c["ndcg_relative_change"] > -0.05 and (c["novelty_gain"] > 0 or c["serendipity_gain"] > 0)]
    for c in curve:
        c["within_goal"] = c in ok
    return curve, result


def ab_test(result: EvalResult, entry: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    ms = entry["test_mean_std"]
    persona_arms = [m for m in ms if m != "sasrec"]
    best = max(persona_arms, key=lambda m: ms[m][f"ndcg@{K}"]["mean"])
    ab = replay_ab(result, [best, "sasrec"], control="sasrec", seed=0)
    keep = [f"ndcg@{K}", f"recall@{K}", f"novelty@{K}", f"serendipity@{K}", f"exploration@{K}"]
    comparisons = [r for r in ab.comparisons.to_dicts() if r.get("metric") in keep]
    arms = [r for r in ab.arm_metrics.to_dicts() if r.get("metric") in keep]
    return {"arms": [best, "sasrec"], "control": "sasrec", "arm_metrics": arms, "comparisons": comparisons}, ab


def write_run(args: argparse.Namespace, name: str, split: Split, result: EvalResult, curve: EvalResult, ab: Any, entry: dict[str, Any]) -> None:
    """A run directory the HTML report reads: seed-0 evaluation + quota curve arms, the A/B, the JSON."""
    from personarec.evaluate.report import write_report

    run_dir = Path(args.run_root) / name
    merged = merge_results(result, curve)
    merged.save(run_dir / "eval")
    if ab is not None:
        ab.save(run_dir / "eval" / "ab")
    (run_dir / "persona_recs.json").write_text(json.dumps(entry, indent=2, default=float))
    path = write_report(run_dir)
    entry["report"] = str(path)
    log(f"{name}: report {path}")


def merge_results(a: EvalResult, b: EvalResult) -> EvalResult:
    import polars as pl

    return EvalResult(
        stage=a.stage, ks=a.ks, protocol=a.protocol, users=a.users,
        per_user={**a.per_user, **b.per_user},
        summary=pl.concat([a.summary, b.summary], how="diagonal_relaxed"),
        intervals=pl.concat([a.intervals, b.intervals], how="diagonal_relaxed"),
        tables={**a.tables, **b.tables}, recs={**a.recs, **b.recs}, timings={**a.timings, **b.timings},
        notes=a.notes, metrics=a.metrics, confidence=a.confidence,
    )  # fmt: skip


def save_partial(args: argparse.Namespace, name: str, entry: dict[str, Any]) -> None:
    path = Path(args.out)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.setdefault("datasets", {})[name] = entry
    path.write_text(json.dumps(doc, indent=2, default=float))


def student_figures() -> dict[str, Any] | None:
    path = ROOT / "results" / "distill_student.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return {"command": d.get("command"), "goal": d.get("goal"), "held_out": d.get("held_out"),
            "agreement_with_teacher_setup": d.get("agreement_with_teacher_setup"), "source": str(path.relative_to(ROOT.parent))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ml-100k,ml-latest-small")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quota", type=float, default=0.2, help="exploration quota of the persona arms")
    ap.add_argument("--quotas", default="0,0.1,0.2,0.3,0.5", help="quotas of the trade-off curve (first = reference)")
    ap.add_argument("--max-epochs", type=int, default=SASREC["max_epochs"], help="SASRec epoch cap (early stopping on validation)")
    ap.add_argument("--persona-store", default=None, help="SQLite persona store with LLM personas (e.g. runs/ml-100k/personas.db)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: tiny SASRec, 2 epochs")
    ap.add_argument("--run-root", default="runs/bench-distill", help="where the per-dataset run directories and reports go")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.quotas = [float(q) for q in args.quotas.split(",")]
    args.out = args.out or str(ROOT / "results" / ("distill_quick.json" if args.quick else "distill.json"))
    sasrec = dict(SASREC, max_epochs=args.max_epochs)
    if args.quick:
        sasrec.update(max_len=50, hidden=32, n_blocks=1, max_epochs=2)
    import torch

    torch.set_num_threads(1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(Path(args.out).read_text()).get("datasets", {}) if Path(args.out).exists() else {}
    doc: dict[str, Any] = {
        "benchmark": "distill", "command": "python " + " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_start": list(os.getloadavg())},
        "protocol_note": "leave-one-out, full ranking, seen items excluded; test targets; metrics at k=10",
        "datasets": {k: v for k, v in previous.items() if k not in args.datasets.split(",")},  # other datasets' last run
    }  # fmt: skip
    for name in args.datasets.split(","):
        doc["datasets"][name] = run_dataset(name, args, sasrec)
        Path(args.out).write_text(json.dumps(doc, indent=2, default=float))
    doc["student_llm"] = student_figures()
    doc["machine"]["load_average_end"] = list(os.getloadavg())
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    Path(args.out).write_text(json.dumps(doc, indent=2, default=float))
    print_summary(doc)
    log(f"wrote {args.out}")


def print_summary(doc: dict[str, Any]) -> None:
    for name, entry in doc["datasets"].items():
        print(f"\n== {name} (personas: {entry['personas']['llm_share']:.1%} LLM) ==")
        cols = [c for c in REPORTED if c in next(iter(entry["test_mean_std"].values()))]
        print(f"{'model':<18}" + "".join(f"{c:>16}" for c in cols))
        for m, row in entry["test_mean_std"].items():
            print(f"{m:<18}" + "".join(f"{row[c]['mean']:>9.4f}±{row[c]['std']:<6.4f}" for c in cols))
        print("goals:", json.dumps(entry["goals"]))
        for c in entry["quota_curve"]:
            print(f"  quota {c['quota']:<4} ndcg@10 {c[f'ndcg@{K}']:.4f} ({c['ndcg_relative_change']:+.1%}) novelty +{c['novelty_gain']:.3f} serendipity {c['serendipity_gain']:+.4f}")


if __name__ == "__main__":
    main()
