"""Data at scale: per-stage cost vs input size (part of ``benchmarks/scale.py --parts data``).

The ML-25M-shaped generator of ``load_scale.py`` (long-tailed activity, Zipf popularity, the
real file's columns; users scale with rows, the catalogue stays 62,423 movies) writes files of
1 M, 5 M and 25 M rows into a temporary directory (deleted afterwards). Through the real code:

- **data**: load (``load_ml_csv_release``) + split (dedup, 5-core, leave-one-out), per size;
- **explore prior**: ``TransitionStats.fit`` on the training histories (item EASE on the 15,000
  most popular items + cluster statistics over 400 random clusters: the item EASE dominates and
  does not depend on the clusters), per size;
- **items**: embedding (MiniLM, cold: an empty cache; then the same texts again from the cache)
  and two-level k-means, for catalogues of 4 k, 16 k and 62 k items (the largest file's titles);
- **SASRec** (the default config: 200 events, hidden 64, full-softmax CE): one epoch's time per
  size, estimated as the mean step time over the first ``sasrec_steps`` batches (batches come in
  a random order of length buckets, so the prefix is a random sample) x the epoch's batch count;
- **personas on Ray**: ``personarec personas generate --engine ray``'s runner on a local cluster
  (2 actors x 1 CPU) over the largest split: two jobs (16 and 64 users), whose difference is the
  marginal personas/s without the per-job fixed cost; compare with the ``ray`` part's ML-100k rate.

Growth per stage is the log-log slope of time vs input size between the smallest and largest
size (1 = linear; a slope above 1.15 is reported as worse than linear).
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from pathlib import Path

import numpy as np

CATALOGUE_SIZES = (4_000, 16_000, 62_423)


class _Budget(Exception):
    """Raised inside SASRec's training loop once the step budget is spent."""


def sasrec_epoch(split, steps: int) -> dict:
    import torch

    from personarec.recommend.sasrec import SASRec, SASRecConfig

    class Timed(SASRec):
        def training_loss(self, inputs, targets, users):  # noqa: ANN001 - SASRec's signature
            self.steps_done += 1
            if self.steps_done == 1:
                self.t_first = time.perf_counter()
            if self.steps_done > steps:
                self.t_end = time.perf_counter()
                raise _Budget
            return super().training_loss(inputs, targets, users)

    torch.set_num_threads(2)
    model = Timed(SASRecConfig(max_epochs=1, early_stopping=False, show_progress=False))
    model.steps_done = 0
    t = time.perf_counter()
    try:
        model.fit(split)
    except _Budget:
        pass
    setup = model.t_first - t
    done = min(model.steps_done, steps)
    step_s = (getattr(model, "t_end", time.perf_counter()) - model.t_first) / max(done, 1)
    lengths = split.history("train").lengths()
    batches = int(math.ceil((lengths >= 2).sum() / SASRecConfig().batch_size))
    return {"setup_s": round(setup, 2), "steps_timed": done, "step_s": round(step_s, 3), "batches_per_epoch": batches,
            "epoch_s_estimate": round(step_s * batches + setup, 1)}  # fmt: skip


def items_stage(texts: list[str], cache_root: Path) -> list[dict]:
    """Cold embedding (a fresh cache per size, under ``cache_root``), cached re-embedding, k-means."""
    from personarec.items.config import ItemsConfig
    from personarec.items.embed import TextEmbedder
    from personarec.items.clusters import hierarchical_kmeans

    config = ItemsConfig()
    rows = []
    for n in CATALOGUE_SIZES:
        sub = texts[:n]
        embedder = TextEmbedder(config, cache_root / str(n))
        t = time.perf_counter()
        emb, _ = embedder.embed(sub, show_progress=False)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        embedder.embed(sub, show_progress=False)
        cached = time.perf_counter() - t
        t = time.perf_counter()
        hierarchical_kmeans(emb, config.coarse_size(n), config.fine_size(n), niter=config.kmeans_iter, seed=0)
        cluster = time.perf_counter() - t
        rows.append({"items": n, "embed_cold_s": round(cold, 1), "embed_texts_per_s": round(n / cold, 1),
                     "embed_cached_s": round(cached, 2), "kmeans_s": round(cluster, 2),
                     "fine_clusters": config.fine_size(n)})  # fmt: skip
        print(f"items {rows[-1]}", flush=True)
    return rows


def ray_personas(split, users: tuple[int, int], cache_dir: Path) -> dict:
    """Two Ray jobs (a small and a larger sample) on one local cluster: the difference gives the
    marginal personas/s, free of each job's fixed cost (putting the split into Ray's object
    store, actor start, model load)."""
    import ray

    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.config import PersonasConfig, RayConfig
    from personarec.personas.ray_runner import generate_personas_ray
    from personarec.personas.store.base import open_store
    from personarec.personas.transitions import TransitionStats

    space = build_item_space(split, ItemsConfig(), cache_dir=cache_dir, show_progress=False)  # embeddings cached
    prior = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    order = np.random.default_rng(0).permutation(split.n_users)
    config = PersonasConfig(history_stage="valid", batch_size=16, ray=RayConfig(actors=2, cpus_per_actor=1.0))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    jobs = []
    try:
        for n in users:
            sample = [int(u) for u in order[:n]]
            with tempfile.TemporaryDirectory() as tmp:
                store = open_store(str(Path(tmp) / "p.db"))
                t = time.perf_counter()
                report = generate_personas_ray(split, space, sample, store, config, transitions=prior, seed=0, show_progress=False)
                wall = time.perf_counter() - t
                store.close()
            jobs.append({"users": n, "wall_s": round(wall, 1), "generated": report.generated, "fallbacks": report.fallbacks})
    finally:
        ray.shutdown()
    (a, b) = jobs
    marginal = (b["users"] - a["users"]) / (b["wall_s"] - a["wall_s"])
    return {"jobs": jobs, "marginal_personas_per_s": round(marginal, 3),
            "fixed_cost_per_job_s": round(a["wall_s"] - a["users"] / marginal, 1),
            "n_fine_clusters": space.n_fine,
            "mean_history_length": round(float(split.history("valid").lengths()[order[: users[1]]].mean()), 1)}  # fmt: skip


def slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or min(ys) <= 0:
        return None
    return round(math.log(ys[-1] / ys[0]) / math.log(xs[-1] / xs[0]), 2)


def generated_split(rows: int):
    """Generate ``rows`` ML-25M-shaped rows, then load and split them with the real code (timed)."""
    from load_scale import generate

    from personarec.data.movielens import load_ml_csv_release
    from personarec.data.splits import make_split

    with tempfile.TemporaryDirectory(prefix="personarec-scale-") as tmp:
        t = time.perf_counter()
        generate(Path(tmp), rows)
        gen = time.perf_counter() - t
        t = time.perf_counter()
        ds = load_ml_csv_release("ml-25m-synthetic", tmp)
        load = time.perf_counter() - t
        t = time.perf_counter()
        split = make_split(ds)
        cut = time.perf_counter() - t
    return split, {"generate_s": round(gen, 1), "load_s": round(load, 1), "split_s": round(cut, 1)}


def size_row(rows: int, sasrec_steps: int) -> tuple[dict, object]:
    from personarec.personas.transitions import TransitionStats

    split, times = generated_split(rows)
    gc.collect()
    fine = np.random.default_rng(0).integers(0, 400, size=split.n_items)  # clusters only shape the cluster stats
    t = time.perf_counter()
    TransitionStats.fit(split.history("train"), fine, 400)
    prior = time.perf_counter() - t
    row = {"rows": rows, "users": split.n_users, "items": split.n_items, "train_events": split.protocol.n_train,
           **times, "explore_prior_fit_s": round(prior, 1), "sasrec": sasrec_epoch(split, sasrec_steps)}  # fmt: skip
    print(f"data {row}", flush=True)
    return row, split


def growth(result: dict) -> dict:
    per_size, items = result.get("sizes", []), result.get("items", [])
    xs = [r["rows"] for r in per_size]
    out = {
        "load (rows)": slope(xs, [r["load_s"] for r in per_size]),
        "split (rows)": slope(xs, [r["split_s"] for r in per_size]),
        "explore prior fit (rows)": slope(xs, [r["explore_prior_fit_s"] for r in per_size]),
        "sasrec epoch (rows)": slope(xs, [r["sasrec"]["epoch_s_estimate"] for r in per_size]),
        "sasrec step (rows)": slope(xs, [r["sasrec"]["step_s"] for r in per_size]),
        "embedding (items)": slope([r["items"] for r in items], [r["embed_cold_s"] for r in items]),
        "k-means (items)": slope([r["items"] for r in items], [r["kmeans_s"] for r in items]),
    }
    return out


def run(sizes: list[int], stages: list[str], previous: dict | None = None, sasrec_steps: int = 20,
        ray_users: tuple[int, int] = (16, 64)) -> dict:
    """``stages``: any of sizes, items, ray; results of stages not run are kept from ``previous``."""
    result = dict(previous or {})
    split = None
    if "sizes" in stages:
        result["sizes"] = []
        for rows in sorted(sizes):
            row, split = size_row(rows, sasrec_steps)
            result["sizes"].append(row)
            gc.collect()
    if "items" in stages or "ray" in stages:
        if split is None:  # sizes run in ascending order: its last split is the largest
            split, _ = generated_split(max(sizes))
        texts = list(split.catalogue.texts())  # what the items stage embeds (title + genres ...)
        texts += [f"{t} II" for t in texts][: max(0, CATALOGUE_SIZES[-1] - len(texts))]  # the unrated rest
        with tempfile.TemporaryDirectory(prefix="personarec-emb-") as cache:
            if "items" in stages:
                result["items"] = items_stage(texts, Path(cache))
            if "ray" in stages:
                result["ray_personas"] = ray_personas(split, ray_users, Path(cache) / str(CATALOGUE_SIZES[-1]))
                print(f"ray {result['ray_personas']}", flush=True)
    result["generator"] = "benchmarks/load_scale.py generate(): ML-25M shape, users scale with rows, 62,423-movie catalogue"
    result["loglog_growth"] = growth(result)
    result["worse_than_linear"] = sorted(k for k, v in result["loglog_growth"].items() if v is not None and v > 1.15)
    return result
