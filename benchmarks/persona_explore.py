"""Explore hit-rate of the persona engine over item-space seeds -> benchmarks/results/persona_explore.json.

    .venv/bin/python benchmarks/persona_explore.py [--dataset ml-100k] [--seeds 42 0 1] [--threads 2]

The untuned engine decodes greedily, so its run-to-run randomness is the item space: k-means
(fine clusters, their names, hence every prompt and candidate list) depends on the items seed.
For each seed: the item space and cluster statistics are rebuilt, the default engine writes a
persona for every user from the TRAINING events, and the explore topics are scored against the
held-out future (validation + test events, as in ``persona_engine.py``): hit-rate of the engine at
explore mixture weight 0 (prior only), 0.5 (default), 1 (model only), of each explore prior alone
(no LLM), and of the raw-count transition baseline, each with its ratio to the baseline and a
paired bootstrap 95 % interval over users. The summary gives mean +- sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from persona_engine import hit_rates, load, prior_hit_rates, run_engine, with_weight  # noqa: E402

WEIGHTS = (0.0, 0.5, 1.0)


def seed_run(split, seed: int, backend, threads: int) -> dict:
    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.config import PersonasConfig
    from personarec.personas.transitions import TransitionStats

    t = time.perf_counter()
    space = build_item_space(split, ItemsConfig(seed=seed), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    config = PersonasConfig(history_stage="valid", batch_size=16)
    engine, report, personas = run_engine(split, space, backend, None, config, transitions, keep_choices=True)
    half_life = config.prompt.recency_half_life
    rows = {f"engine_w{w}": hit_rates(with_weight(engine, personas, w), split, space, transitions, half_life) for w in WEIGHTS}
    rows.update({f"prior_{k}": v for k, v in prior_hit_rates(split, space, transitions, config, None).items()})
    return {
        "seed": seed, "n_fine": space.n_fine, "seconds": round(time.perf_counter() - t, 1),
        "personas_per_s": round(report.personas_per_s, 3), "generated": report.generated, "fallbacks": report.fallbacks,
        "first_try_valid": report.first_try_valid, "rows": rows,
    }  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    out: dict = {"baseline_hit_rate": _mean_sd([r["rows"]["engine_w0.0"]["baseline_hit_rate"] for r in runs])}
    for key in runs[0]["rows"]:
        hits = [r["rows"][key]["explore_hit_rate"] for r in runs]
        ratios = [r["rows"][key]["ratio_to_baseline"] for r in runs]
        out[key] = {"hit_rate": _mean_sd(hits), "ratio_to_baseline": _mean_sd(ratios)}
    best = max((k for k in out if k != "baseline_hit_rate"), key=lambda k: out[k]["ratio_to_baseline"]["mean"])
    out["best"] = best
    out["goal"] = "best engine >= 1.3x the baseline's hit-rate on 3 seeds"
    return out


def _mean_sd(xs: list[float]) -> dict:
    return {"mean": round(statistics.mean(xs), 4), "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0,
            "runs": xs}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 0, 1], help="item-space seeds (42 = the default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "persona_explore.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from personarec.personas.backends.base import build_backend

    result: dict = {"command": "python benchmarks/persona_explore.py " + " ".join(sys.argv[1:]), "dataset": args.dataset,
                    "machine": {"cpus": os.cpu_count(), "load_1m_before": os.getloadavg()[0]}, "runs": []}  # fmt: skip
    split = load(args.dataset)
    backend = build_backend("embedded", {"n_threads": args.threads})
    for seed in args.seeds:
        run = seed_run(split, seed, backend, args.threads)
        result["runs"].append(run)
        result["summary"] = summarise(result["runs"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"seed {seed}: " + json.dumps({k: (v["explore_hit_rate"], v["ratio_to_baseline"], v["ratio_ci95"])
                                             for k, v in run["rows"].items()}), flush=True)  # fmt: skip
    backend.close()
    result["machine"]["load_1m_after"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
