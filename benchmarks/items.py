"""Item-space benchmark on MovieLens latest-small: embeddings, clusters, semantic IDs, load scale.

One command: ``.venv/bin/python benchmarks/items.py`` -> ``benchmarks/results/items.json``.

Measures, on the items of the default ML-latest-small split (the pipeline's own path):
- embedding throughput, items/s: cold (empty cache, model already loaded) and cached (second run,
  median of ``--repeats``), and their ratio;
- two-level clustering time, naming time, RQ-KMeans time (medians of ``--repeats``);
- cluster quality against the MovieLens genre sets: NMI / AMI of the fine (and coarse) clusters
  vs the full genre-combination label, NMI vs the first-listed genre (MovieLens lists genres
  alphabetically, so this is a coarse proxy), mean NMI against each genre's yes/no indicator, and
  genre purity; each next to a random assignment with the same cluster sizes (median of 5);
- an ablation (``--ablation``, on by default): the same clustering on embeddings of the text
  *without* the genres (title + tags), since the default text contains the genre names;
- semantic IDs: codebook utilisation and perplexity per level, items needing the final digit,
  duplicate IDs after it;
- the 25M-row load figures of ``benchmarks/load_scale.py`` (run as a subprocess; its JSON merged
  under ``load_scale``; ``--load-scale skip`` records ``"skipped"``).

The machine is shared: the load average at start and end is recorded with the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "items.json"
LOAD_SCALE = ROOT / "benchmarks" / "load_scale.py"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any, float]:
    """Median wall seconds, all wall seconds, the last output, median CPU seconds (all threads)."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), [round(x, 4) for x in times], out, statistics.median(cpu)


def genre_labels(frame) -> dict[str, Any]:
    genres = [[g for g in (gs or []) if g != "(no genres listed)"] for gs in frame["genres"].to_list()]
    combo = np.unique(["|".join(sorted(g)) or "none" for g in genres], return_inverse=True)[1]
    first = np.unique([g[0] if g else "none" for g in genres], return_inverse=True)[1]
    vocab = sorted({g for gs in genres for g in gs})
    indicators = {v: np.array([v in gs for gs in genres], dtype=np.int64) for v in vocab}
    return {"genres": genres, "combo": combo, "first": first, "indicators": indicators}


def purity(clusters: np.ndarray, genres: list[list[str]]) -> float:
    """Share of items carrying their cluster's most common genre (size-weighted)."""
    hits = 0
    for c in np.unique(clusters):
        members = np.flatnonzero(clusters == c)
        counts: dict[str, int] = {}
        for i in members:
            for g in genres[i]:
                counts[g] = counts.get(g, 0) + 1
        top = max(counts.values()) if counts else 0
        hits += top
    return hits / len(clusters)


def quality(clusters: np.ndarray, labels: dict[str, Any]) -> dict[str, float]:
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    return {
        "nmi_genre_combination": round(normalized_mutual_info_score(labels["combo"], clusters), 4),
        "ami_genre_combination": round(adjusted_mutual_info_score(labels["combo"], clusters), 4),
        "nmi_first_genre": round(normalized_mutual_info_score(labels["first"], clusters), 4),
        "mean_nmi_per_genre_indicator": round(
            float(np.mean([normalized_mutual_info_score(y, clusters) for y in labels["indicators"].values()])), 4
        ),
        "genre_purity": round(purity(clusters, labels["genres"]), 4),
    }


def random_baseline(clusters: np.ndarray, labels: dict[str, Any], seeds: int = 5) -> dict[str, float]:
    """Same cluster sizes, members drawn at random: the scale against which NMI is read."""
    runs = [quality(np.random.default_rng(s).permutation(clusters), labels) for s in range(seeds)]
    return {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}


def _head(split, limit: int):
    """The split's first ``limit`` items (smoke tests of this script only)."""
    from dataclasses import replace

    from personarec.data.records import Catalogue

    return replace(split, item_ids=split.item_ids[:limit], catalogue=Catalogue(split.catalogue.frame.head(limit)))


def run_load_scale(mode: str) -> Any:
    if mode == "skip":
        return "skipped"
    if not LOAD_SCALE.exists():
        return "pending"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load_scale.json"
        print("running benchmarks/load_scale.py (25M generated rows) ...", flush=True)
        proc = subprocess.run([sys.executable, str(LOAD_SCALE), "--out", str(out)], cwd=ROOT, text=True,
                              capture_output=True)  # fmt: skip
        if proc.returncode != 0 or not out.exists():
            return {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats for the medians of fast steps")
    parser.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                        help="also cluster embeddings of the text without genres")  # fmt: skip
    parser.add_argument("--load-scale", choices=["run", "skip"], default="run")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--limit", type=int, default=None, help="first N items only (smoke test; not for results)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    from personarec.data.movielens import load_ml_latest_small
    from personarec.data.records import Catalogue
    from personarec.data.registry import shared_data_dir
    from personarec.data.splits import make_split
    from personarec.items.clusters import hierarchical_kmeans
    from personarec.items.config import ItemsConfig
    from personarec.items.embed import TextEmbedder
    from personarec.items.naming import item_terms, name_clusters
    from personarec.items.semantic_ids import RQKMeansConfig, semantic_ids

    data_dir = shared_data_dir() / "ml-latest-small"
    if not (data_dir / "ratings.csv").exists():
        sys.exit(f"ML-latest-small not found at {data_dir}")
    result: dict[str, Any] = {
        "dataset": "ml-latest-small",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_start": [round(x, 2) for x in os.getloadavg()]},
    }  # fmt: skip
    split = make_split(load_ml_latest_small(data_dir))
    if args.limit:
        split = _head(split, args.limit)
    config = ItemsConfig(seed=42)
    n = split.n_items
    texts = split.catalogue.texts()
    result["items"] = {"n_items": n, "limited": bool(args.limit), "n_distinct_texts": len(set(texts)), "split": split.protocol.split}

    with tempfile.TemporaryDirectory() as cache:
        # -- embeddings: cold then cached ------------------------------------------------
        embedder = TextEmbedder(config, cache)
        t = time.perf_counter()
        embedder.model()
        model_load = time.perf_counter() - t
        print(f"embedding {n} items cold ...", flush=True)
        t, c = time.perf_counter(), time.process_time()
        emb, cold_stats = embedder.embed(texts)
        cold, cold_cpu = time.perf_counter() - t, time.process_time() - c
        cached, cached_runs, (_, cached_stats), _ = timed(
            lambda: TextEmbedder(config, cache).embed(texts, show_progress=False), args.repeats
        )
        result["embedding"] = {
            "model": embedder.model_id,
            "dim": int(emb.shape[1]),
            "batch_size": config.batch_size,
            "model_load_seconds": round(model_load, 3),
            "cold_seconds": round(cold, 3),
            "cold_items_per_s": round(cold_stats.n_computed / cold, 1),
            "cold_cpu_seconds": round(cold_cpu, 1),
            # CPU time is what the encoder costs regardless of other jobs on a shared machine;
            # on an idle machine with T threads, wall throughput approaches T x this figure.
            "cold_items_per_cpu_second": round(cold_stats.n_computed / cold_cpu, 1),
            "cold_computed": cold_stats.n_computed,
            "cached_seconds_median": round(cached, 4),
            "cached_seconds_runs": cached_runs,
            "cached_items_per_s": round(n / cached, 1),
            "cached_computed": cached_stats.n_computed,
            "cached_over_cold_speedup": round(cold / cached, 1),
        }
        print(json.dumps(result["embedding"]), flush=True)

        ablation_emb = None
        if args.ablation:
            bare = Catalogue.from_frame(split.catalogue.frame.drop("genres")).texts()
            print("embedding the same items without genres (ablation) ...", flush=True)
            ablation_emb, _ = TextEmbedder(config, cache).embed(bare)

    # -- clusters -------------------------------------------------------------------------
    n_coarse, n_fine = config.coarse_size(n), config.fine_size(n)
    cl_time, cl_runs, clustering, cl_cpu = timed(
        lambda: hierarchical_kmeans(emb, n_coarse, n_fine, niter=config.kmeans_iter, seed=42), args.repeats
    )
    terms, facets = item_terms(split.catalogue.frame)
    t = time.perf_counter()
    fine_names, _ = name_clusters(clustering.fine, clustering.n_fine, terms, facets, n_keywords=config.n_keywords)
    name_time = time.perf_counter() - t
    sizes = np.bincount(clustering.fine)
    labels = genre_labels(split.catalogue.frame)
    result["clusters"] = {
        "n_coarse": clustering.n_coarse,
        "n_fine": clustering.n_fine,
        "fine_size_min_median_max": [int(sizes.min()), float(np.median(sizes)), int(sizes.max())],
        "seconds_median": round(cl_time, 3),
        "seconds_runs": cl_runs,
        "cpu_seconds_median": round(cl_cpu, 3),
        "naming_seconds": round(name_time, 3),
        "names_unique": len(set(fine_names)) == len(fine_names),
        "example_names": fine_names[:12],
        "quality_fine": quality(clustering.fine, labels),
        "quality_fine_random_same_sizes": random_baseline(clustering.fine, labels),
        "quality_coarse": quality(clustering.coarse, labels),
        "quality_coarse_random_same_sizes": random_baseline(clustering.coarse, labels),
    }
    if ablation_emb is not None:
        abl = hierarchical_kmeans(ablation_emb, n_coarse, n_fine, niter=config.kmeans_iter, seed=42)
        result["clusters"]["quality_fine_text_without_genres"] = quality(abl.fine, labels)
    print(json.dumps(result["clusters"]), flush=True)

    # -- semantic IDs ---------------------------------------------------------------------
    rq_config = RQKMeansConfig(levels=config.rq_levels, codes=config.codes_per_level(n), niter=config.kmeans_iter, seed=42)
    rq_time, rq_runs, (ids, _, stats), rq_cpu = timed(lambda: semantic_ids(emb, rq_config), args.repeats)
    result["semantic_ids"] = {
        "levels": rq_config.levels,
        "codes_per_level": rq_config.codes,
        "seconds_median": round(rq_time, 3),
        "seconds_runs": rq_runs,
        "cpu_seconds_median": round(rq_cpu, 3),
        "unique_ids": int(len(np.unique(ids, axis=0))),
        **stats.as_dict(),
    }
    print(json.dumps(result["semantic_ids"]), flush=True)

    result["load_scale"] = run_load_scale(args.load_scale)
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
