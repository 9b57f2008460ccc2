"""Scale-out figures -> benchmarks/results/scale.json (each part updates its own keys).

    .venv/bin/python benchmarks/scale.py [--parts ray,fleet,cost,data] [--dataset ml-100k]

Run one part at a time on a quiet machine (``--parts fleet``): they compete for the 2 cores.

**ray** (key ``personas``): Ray vs local persona generation on this machine, same users, same engine (compact, batch 16,
personas from the training events of the leave-one-out split, real MiniLM item space):
- local: the default runner, one process, one llama.cpp context with all cores' threads;
- ray_2x1: a local Ray cluster, 2 actors x 1 CPU (one model per actor, 1 thread each);
- ray_1x2: 1 actor x 2 CPUs (Ray's overhead alone, same threads as local).
Each arm runs ``--reps`` times, alternating; the figure is the median personas/s, with its ratio
to local measured in the same script. Ray's wall time includes planning, actor start and model
load (a cold job); the cluster start itself is timed separately. Raw llama.cpp prompt/decode speed
of the same GGUF is the physical reference. The job also checks that Ray wrote the same personas.

**fleet** (key ``fleet``): refresh throughput with 1, 2 and 4 worker processes on one real Redis,
and the overload behaviour (lag, shed counts, lost events) at 0.5x-4x the sustainable event rate;
see ``scale_fleet.py``.

**cost** (key ``cost_model``): cores and money for 1 M, 100 M and 1 B users, synchronous vs
asynchronous, from the measured figures; see ``cost_model.py`` (plot: ``results/cost_model.png``).

**data** (key ``data_scale``): per-stage cost vs input size on the ML-25M-sized generated file;
see ``scale_data.py``.
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
sys.path.insert(0, str(ROOT))  # tests.serve.redis_server: the throw-away redis-server

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


def ray_part(args) -> dict:
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
    print(json.dumps({a: {k: v for k, v in r.items() if k != "runs"} for a, r in arms.items()}, indent=1))
    return {
        "dataset": args.dataset, "users": len(users), "reps": args.reps, "threads": args.threads,
        "raw_llama_q8_0": raw_llama_speed(args.threads, "Q8_0"),
        "ray_cluster_start_s": round(cluster_start, 1),
        "personas": arms,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="ray,fleet,cost,data", help="comma-separated: ray, fleet, cost, data")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=192, help="ray: users per arm (a seeded sample)")
    ap.add_argument("--reps", type=int, default=2, help="ray: runs per arm, alternating")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="cores given to each arm")
    ap.add_argument("--fleet-jobs", type=int, default=96, help="fleet: refresh jobs per worker-count arm")
    ap.add_argument("--fleet-seconds", type=float, default=60.0, help="fleet: seconds of events per overload run")
    ap.add_argument("--max-depth", type=int, default=32, help="fleet: refresh queue bound of the overload runs")
    ap.add_argument("--gpu-output-tok-s", type=float, default=12_500.0,
                    help="cost: assumed output tokens/s of one H100 serving an 8B-class teacher with vLLM")  # fmt: skip
    ap.add_argument("--core-hour-usd", type=float, default=0.04, help="cost: assumed price of one CPU core-hour")
    ap.add_argument("--gpu-hour-usd", type=float, default=2.5, help="cost: assumed price of one H100-hour")
    ap.add_argument("--utilisation", type=float, default=0.7, help="cost: target utilisation of the async fleet")
    ap.add_argument("--requests-per-refresh", type=float, default=1.0,
                    help="cost: recommendation requests per coalesced refresh (sync writes one persona per request)")  # fmt: skip
    ap.add_argument("--data-rows", default="1000000,5000000,25000000", help="data: input sizes (rows) to time")
    ap.add_argument("--data-stages", default="sizes,items,ray", help="data: stages to (re)run; the others are kept")
    ap.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = ap.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"ray", "fleet", "cost", "data"}
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}")

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    commands = result.setdefault("commands", {})
    if "command" in result:  # the format before parts: the ray part's command
        commands.setdefault("ray", result.pop("command"))

    def save(part: str, update: dict) -> None:
        result.update(update)
        commands[part] = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
        out.write_text(json.dumps(result, indent=2) + "\n")

    if "ray" in parts:
        save("ray", ray_part(args))
    if "fleet" in parts:
        from scale_fleet import run as fleet_run

        save("fleet", {"fleet": fleet_run(args.dataset, args.fleet_jobs, args.fleet_seconds, args.max_depth, args.threads)})
    if "data" in parts:
        from scale_data import run as data_run

        stages = [x for x in args.data_stages.split(",") if x]
        save("data", {"data_scale": data_run([int(x) for x in args.data_rows.split(",")], stages, result.get("data_scale"))})
    if "cost" in parts:
        from cost_model import model, plot

        cost = model(args.gpu_output_tok_s, args.core_hour_usd, args.gpu_hour_usd, args.utilisation, args.requests_per_refresh)
        save("cost", {"cost_model": cost})
        plot(cost, RESULTS / "cost_model.png")
        for row in cost["table"]:
            print({k: v for k, v in row.items() if not k.startswith("usd")})


if __name__ == "__main__":
    main()
