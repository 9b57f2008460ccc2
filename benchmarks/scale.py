"""Scale-out figures -> benchmarks/results/scale.json.

    .venv/bin/python benchmarks/scale.py [--users 192] [--reps 2] [--dataset ml-100k]

Ray vs local persona generation on this machine, same users, same engine (compact, batch 16,
personas from the training events of the leave-one-out split, real MiniLM item space):
- local: the default runner, one process, one llama.cpp context with all cores' threads;
- ray_2x1: a local Ray cluster, 2 actors x 1 CPU (one model per actor, 1 thread each);
- ray_1x2: 1 actor x 2 CPUs (Ray's overhead alone, same threads as local).
Each arm runs ``--reps`` times, alternating; the figure is the median personas/s, with its ratio
to local measured in the same script. Ray's wall time includes planning, actor start and model
load (a cold job); the cluster start itself is timed separately. Raw llama.cpp prompt/decode speed
of the same GGUF is the physical reference. The job also checks that Ray wrote the same personas.

Worker-count scaling of the refresh fleet, overload behaviour, per-stage cost vs input size and
the cost model are later parts of the scale-out issue; they are not in this file yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from persona_engine import load, raw_llama_speed  # noqa: E402

ARMS = {"local": None, "ray_2x1": (2, 1.0), "ray_1x2": (1, 2.0)}


def key(p) -> tuple:
    return tuple(i.cluster for i in p.interests), frozenset(e.cluster for e in p.explore)


def run_arm(arm, split, space, transitions, users, threads) -> tuple[dict, dict]:
    import ray

    from personarec.personas.backends.base import build_backend
    from personarec.personas.config import PersonasConfig, RayConfig
    from personarec.personas.generate import PersonaEngine, generate_personas
    from personarec.personas.ray_runner import generate_personas_ray
    from personarec.personas.store.base import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "p.db"))
        if ARMS[arm] is None:
            config = PersonasConfig(history_stage="valid", batch_size=16, backend_config={"n_threads": threads})
            t = time.perf_counter()
            backend = build_backend("embedded", config.backend_config)
            engine = PersonaEngine(split, space, backend, config, transitions=transitions, seed=42)
            report = generate_personas(split, space, backend, users, store, config, engine=engine, show_progress=False)
            backend.close()
            wall = time.perf_counter() - t
        else:
            actors, cpus = ARMS[arm]
            config = PersonasConfig(history_stage="valid", batch_size=16, ray=RayConfig(actors=actors, cpus_per_actor=cpus))
            ray.init(num_cpus=threads, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            t = time.perf_counter()
            report = generate_personas_ray(split, space, users, store, config, transitions=transitions, seed=42, show_progress=False)
            wall = time.perf_counter() - t
            ray.shutdown()
        personas = {u: key(p) for u in report.user_ids if (p := store.get(u)) is not None}
        store.close()
    done = report.generated + report.fallbacks
    row = {"personas_per_s": round(done / wall, 3), "wall_s": round(wall, 1), "generated": report.generated,
           "fallbacks": report.fallbacks, "actors": report.actors}  # fmt: skip
    return row, personas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=192, help="users per arm (a seeded sample)")
    ap.add_argument("--reps", type=int, default=2, help="runs per arm, alternating")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="cores given to each arm")
    ap.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = ap.parse_args()

    import numpy as np
    import ray

    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.transitions import TransitionStats

    split = load(args.dataset)
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    users = [int(u) for u in np.random.default_rng(0).permutation(split.n_users)[: args.users]]
    t = time.perf_counter()
    ray.init(num_cpus=args.threads, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    cluster_start = time.perf_counter() - t
    ray.shutdown()

    runs: dict[str, list[dict]] = {a: [] for a in ARMS}
    outputs: dict[str, dict] = {}
    for rep in range(args.reps):
        for arm in ARMS:
            row, personas = run_arm(arm, split, space, transitions, users, args.threads)
            runs[arm].append(row)
            outputs.setdefault(arm, personas)
            print(f"rep {rep} {arm}: {row}", flush=True)
    local_rate = statistics.median(r["personas_per_s"] for r in runs["local"])
    arms = {}
    for arm, rows in runs.items():
        rate = statistics.median(r["personas_per_s"] for r in rows)
        same = sum(outputs[arm].get(u) == k for u, k in outputs["local"].items()) / max(len(outputs["local"]), 1)
        arms[arm] = {"personas_per_s": round(rate, 3), "ratio_to_local": round(rate / local_rate, 3),
                     "same_personas_as_local": round(same, 4), "runs": rows}  # fmt: skip
    result = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "dataset": args.dataset, "users": len(users), "reps": args.reps, "threads": args.threads,
        "raw_llama_q8_0": raw_llama_speed(args.threads, "Q8_0"),
        "ray_cluster_start_s": round(cluster_start, 1),
        "personas": arms,
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({a: {k: v for k, v in r.items() if k != "runs"} for a, r in arms.items()}, indent=1))


if __name__ == "__main__":
    main()
