"""The refresh fleet under load (part of ``benchmarks/scale.py --parts fleet``).

Real parts only: a redis-server (AOF, ``appendfsync always``), N ``personarec`` refresh worker
processes (the LLM writer: the compact engine on the shipped SmolLM2 GGUF, llama.cpp) started
by the same ``worker_pool`` that ``personarec workers`` runs, and the store's own
``append_events`` (what ``POST /v1/events`` calls) as the event source, open loop from this
process. Setup: the dataset's leave-one-out split and the real MiniLM item space, cached under
``.cache/bench-scale``.

1. **Throughput vs worker count**: for 1, 2 and 4 workers (threads = cores // workers, at least
   1), once every worker is ready, one event for each of K distinct users lands at once (no
   debounce); the figure is K / time until all K jobs are done.
2. **Overload**: events arrive at 0.5x, 1x, 2x and 4x the best arm's personas/s (users drawn in
   proportion to their history length, so busy users' events coalesce; 10 % of users start with
   no persona, the rest with a fallback (statistics-only) persona, so every persona written during
   the run is counted as LLM-written or fallback), for ``--fleet-seconds`` each, under the default debounce, with
   the queue bounded at ``--max-depth``; 2x and 4x again unbounded. Sampled every second: queue
   depth and age of the oldest job. Reported: events sent / acknowledged / stored / lost, jobs
   shed, personas written, refresh lag (the workers' histogram: mean and bucket percentiles), the
   growth rate of the oldest job's age over the second half of the run (> 0: lag grows), and the
   share of users whose persona covers their last event, new vs existing users.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-scale"


def prepare_run(dataset: str) -> Path:
    """A run directory with the split and the real item space (what workers load)."""
    from persona_engine import load

    from personarec.data.splits import save_split
    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig

    run = CACHE / dataset
    if not (run / "items" / "items.parquet").exists():
        split = load(dataset)
        save_split(split, run / "split")
        build_item_space(split, ItemsConfig(), show_progress=False).save(run / "items")
    return run


class Fleet:
    """One namespace of the Redis store + a pool of worker processes over it."""

    def __init__(self, run_dir: Path, redis_url: str, namespace: str, workers: int, cores: int, queue: dict) -> None:
        from personarec.personas.config import PersonasConfig
        from personarec.personas.store.redis import RedisStore
        from personarec.personas.store.url import StoreURL
        from personarec.serve.config import ServeConfig
        from personarec.serve.queue import QueueConfig, RefreshQueue
        from personarec.serve.server import worker_pool

        url = f"{redis_url}?namespace={namespace}"
        self.store = RedisStore(url)
        self.serve = ServeConfig(workers=workers, llm_threads=max(1, cores // workers), queue=QueueConfig(**queue))
        self.queue = RefreshQueue(self.store, self.serve.queue)
        self.pool = worker_pool(run_dir, self.serve, PersonasConfig(), StoreURL.parse(url), prefix=f"{namespace}-")
        self.workers = workers

    def start(self, timeout_s: float = 300.0) -> Fleet:
        self.pool.start()
        deadline = time.monotonic() + timeout_s
        while self.store.live_workers(time.time()) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not become ready")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        self.pool.shutdown()
        self.store.close()


def lag_summary(stats: dict[str, float]) -> dict:
    from personarec.serve.worker import LAG_BUCKETS

    n = stats.get("lag_count", 0.0)
    if not n:
        return {"n": 0}
    counts = [(b, stats.get(f"lag_bucket:{b}", 0.0)) for b in (*LAG_BUCKETS, math.inf)]

    def pct(q: float) -> float:
        cum = 0.0
        for b, c in counts:
            cum += c
            if cum >= q * n:
                return b
        return math.inf

    return {"n": int(n), "mean_s": round(stats["lag_sum"] / n, 2), "p50_le_s": pct(0.5), "p95_le_s": pct(0.95)}


def throughput(run_dir: Path, redis_url: str, users: list[str], base_len: dict, items: list[str], workers: int, cores: int) -> dict:
    fleet = Fleet(run_dir, redis_url, f"tp{workers}", workers, cores,
                  {"debounce_s": 0.0, "max_wait_s": 0.0, "poll_interval_s": 0.05, "max_depth": None}).start()  # fmt: skip
    try:
        spec = fleet.queue.spec()
        t = time.perf_counter()
        for i, u in enumerate(users):
            fleet.store.append_events(u, [(items[i % len(items)], int(time.time()), None)], base_len=base_len[u], enqueue=spec)
        while fleet.store.stats().get("refresh_jobs", 0.0) < len(users):
            time.sleep(0.1)
        wall = time.perf_counter() - t
        s = fleet.store.stats()
    finally:
        fleet.stop()
    return {"workers": workers, "llm_threads_each": max(1, cores // workers), "jobs": len(users),
            "personas_per_s": round(len(users) / wall, 3), "wall_s": round(wall, 1),
            "llm_personas": int(s.get("llm_personas", 0)), "fallbacks": int(s.get("fallbacks", 0))}  # fmt: skip


def overload(
    run_dir: Path, redis_url: str, name: str, rate: float, seconds: float, workers: int, cores: int,
    max_depth: int | None, population: dict, seed: int,
) -> dict:  # fmt: skip
    """Open-loop events at ``rate``/s for ``seconds``; see the module docstring."""
    users, weights, base_len, seeded, items = (population[k] for k in ("users", "weights", "base_len", "seeded", "items"))
    fleet = Fleet(run_dir, redis_url, name, workers, cores, {"max_depth": max_depth})
    for p in seeded.values():
        fleet.store.put(p)
    fleet.start()
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    picks = rng.choice(len(users), size=n, p=weights)
    sent: dict[str, int] = {}
    acked, queued_false, late = 0, 0, 0
    samples: list[dict] = []
    stop = threading.Event()

    def sampler() -> None:
        from personarec.personas.store.redis import RedisStore

        probe = RedisStore(fleet.store.url)
        t0 = time.perf_counter()
        while not stop.wait(1.0):
            q = probe.queue_stats(time.time())
            samples.append({"t": round(time.perf_counter() - t0, 1), "depth": q["depth"], "oldest_age_s": round(q["oldest_age_s"], 1)})
        probe.close()

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    start = time.perf_counter()
    for i, k in enumerate(picks):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            late += 1  # the generator fell behind (counted, the event is still sent)
        u = users[k]
        res = fleet.store.append_events(u, [(items[rng.integers(len(items))], int(time.time()), None)],
                                        base_len=base_len[u], enqueue=fleet.queue.spec())  # fmt: skip
        sent[u] = sent.get(u, 0) + 1
        acked += 1
        queued_false += not res.refresh_queued
    elapsed = time.perf_counter() - start
    stop.set()
    th.join(5)
    s = fleet.store.stats()
    stored = sum(len(fleet.store.events(u)) for u in sent)
    fresh_new, fresh_old, n_new, n_old = 0, 0, 0, 0
    for u in sent:
        p = fleet.store.get(u)
        fresh = p is not None and p.version >= fleet.store.user_state(u).last_seq
        if u in seeded:
            n_old, fresh_old = n_old + 1, fresh_old + fresh
        else:
            n_new, fresh_new = n_new + 1, fresh_new + fresh
    fleet.stop()
    half = [x for x in samples if x["t"] >= seconds / 2]
    slope = float(np.polyfit([x["t"] for x in half], [x["oldest_age_s"] for x in half], 1)[0]) if len(half) >= 3 else None
    return {
        "rate_events_per_s": round(rate, 3), "seconds": round(elapsed, 1), "workers": workers, "max_depth": max_depth,
        "events": {"sent": int(n), "acknowledged": acked, "stored": stored, "lost": int(n) - stored, "generator_late": late},
        "users_with_events": len(sent), "events_minus_distinct_users": int(n) - len(sent),
        "refresh_not_queued": queued_false, "shed": int(s.get("shed", 0)), "shed_evicted": int(s.get("shed_evicted", 0)),
        "personas_written": int(s.get("llm_personas", 0) + s.get("fallbacks", 0)),
        "llm_personas": int(s.get("llm_personas", 0)), "fallbacks": int(s.get("fallbacks", 0)),
        "lag": lag_summary(s),
        "depth_max": max((x["depth"] for x in samples), default=0), "depth_end": samples[-1]["depth"] if samples else 0,
        "oldest_age_end_s": samples[-1]["oldest_age_s"] if samples else 0,
        "oldest_age_growth_s_per_s": None if slope is None else round(slope, 3),
        "fresh_share": {"new_users": round(fresh_new / n_new, 3) if n_new else None,
                        "users_with_persona": round(fresh_old / n_old, 3) if n_old else None},
        "samples_every_5s": compact(samples),
    }  # fmt: skip


def compact(samples: list[dict], every_s: float = 5.0) -> dict[str, list]:
    """Queue samples as columns, one per ``every_s`` (the JSON stays readable)."""
    kept, next_t = [], 0.0
    for x in samples:
        if x["t"] >= next_t:
            kept.append(x)
            next_t = x["t"] + every_s - 0.5
    return {k: [x[k] for x in kept] for k in ("t", "depth", "oldest_age_s")}


def population(run_dir: Path, seed: int = 0, new_share: float = 0.1) -> dict:
    """Users weighted by activity; ``1 - new_share`` of them start with a (fallback) persona."""
    from personarec.personas.config import PersonasConfig
    from personarec.personas.store.sqlite import SQLiteStore
    from personarec.serve.assets import ServingAssets
    from personarec.serve.config import ServeConfig
    from personarec.serve.writers import build_writer

    assets = ServingAssets.load(run_dir, stage=PersonasConfig().history_stage, with_model=False)
    users = [str(u) for u in assets.split.user_ids]
    base_len = {u: assets.base_len(u) for u in users}
    lengths = np.array([base_len[u] for u in users], dtype=float)
    rng = np.random.default_rng(seed)
    new = set(rng.choice(users, size=int(len(users) * new_share), replace=False).tolist())
    writer = build_writer("fallback", assets, PersonasConfig(), ServeConfig())
    seeded = {}
    with tempfile.TemporaryDirectory() as tmp:
        empty = SQLiteStore(Path(tmp) / "empty.db")
        for u in users:
            if u not in new and (res := writer.write(assets.live_history(u, empty))).persona is not None:
                seeded[u] = res.persona
        empty.close()
    return {"users": users, "weights": lengths / lengths.sum(), "base_len": base_len, "seeded": seeded,
            "items": [str(i) for i in assets.split.item_ids]}  # fmt: skip


def run(dataset: str, jobs: int, seconds: float, max_depth: int, cores: int, worker_counts: tuple[int, ...] = (1, 2, 4)) -> dict:
    from tests.serve.redis_server import RedisServer

    run_dir = prepare_run(dataset)
    pop = population(run_dir)
    rng = np.random.default_rng(1)
    tp_users = [pop["users"][i] for i in rng.permutation(len(pop["users"]))[:jobs]]
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            scaling = []
            for n in worker_counts:
                row = throughput(run_dir, redis.url, tp_users, pop["base_len"], pop["items"], n, cores)
                scaling.append(row)
                print(f"fleet throughput {row}", flush=True)
            best = max(scaling, key=lambda r: r["personas_per_s"])
            mu = best["personas_per_s"]
            runs = []
            for mult, depth in ((0.5, max_depth), (1, max_depth), (2, max_depth), (4, max_depth), (2, None), (4, None)):
                name = f"ov{mult}x{'b' if depth else 'u'}"
                row = overload(run_dir, redis.url, name, mult * mu, seconds, best["workers"], cores, depth, pop, seed=int(mult * 10))
                row["multiple_of_throughput"] = mult
                runs.append(row)
                print(f"fleet overload {mult}x depth={depth}: " + str({k: v for k, v in row.items() if k != "samples"}), flush=True)
        finally:
            redis.stop()
    base = scaling[0]["personas_per_s"]
    for row in scaling:
        row["ratio_to_1_worker"] = round(row["personas_per_s"] / base, 3)
    # overloaded: the oldest job's age grows (> 0.1 s per s over the second half) or jobs are shed
    over = [r["rate_events_per_s"] for r in runs if r["max_depth"] and ((r["oldest_age_growth_s_per_s"] or 0) > 0.1 or r["shed"])]
    steady = [r["rate_events_per_s"] for r in runs if r["max_depth"] and r["rate_events_per_s"] not in over]
    return {
        "dataset": dataset, "cores": cores, "store": "redis-server (AOF, appendfsync always), loopback",
        "writer": "llm (compact engine, SmolLM2-135M Q8_0, llama.cpp)",
        "scaling": scaling, "sustainable_personas_per_s": mu, "overload": runs,
        "overloaded_from_events_per_s": min(over) if over else None,
        "steady_up_to_events_per_s": max(steady) if steady else None,
    }  # fmt: skip
