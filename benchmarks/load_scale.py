"""Load-scale benchmark: an ML-25M-sized ``ratings.csv`` through the real loader and preprocessing.

One command: ``.venv/bin/python benchmarks/load_scale.py`` (``--rows`` to try other sizes).

1. Generates, in a temporary directory (deleted afterwards, never committed), a ``ratings.csv``
   with the ML-25M schema ``userId,movieId,rating,timestamp`` (25,000,000 rows, 162,541 users,
   59,047 rated movies, long-tailed activity and popularity, like the real file) and a
   ``movies.csv`` with 62,423 movies. numpy + the pyarrow CSV writer, in chunks.
2. Runs a FRESH Python subprocess that loads it with ``personarec.data.movielens`` (the ML-25M
   loader) and cuts the default split (dedup, 5-core on users, leave-one-out), and reports the
   child's wall time per step and its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
   read inside the child, so the parent's generation buffers do not count).
3. Writes ``benchmarks/results/load_scale.json``. Stable keys (other benchmarks merge them):
   ``rows``, ``load_seconds``, ``peak_rss_mb``, ``file_mb``.
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

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "load_scale.json"
GOAL_MB = 4096

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from personarec.data.movielens import load_ml_csv_release
from personarec.data.splits import make_split
t_import = time.perf_counter()
ds = load_ml_csv_release("ml-25m-synthetic", sys.argv[1])
t_load = time.perf_counter()
rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
split = make_split(ds)
t_split = time.perf_counter()
print(json.dumps({
    "import_seconds": round(t_import - t0, 2),
    "load_seconds": round(t_load - t_import, 2),
    "split_seconds": round(t_split - t_load, 2),
    "loaded_rows": len(ds.interactions),
    "users": ds.interactions.n_users,
    "items": ds.interactions.n_items,
    "n_train": split.protocol.n_train, "n_valid": split.protocol.n_valid, "n_test": split.protocol.n_test,
    "peak_rss_after_load_mb": round(rss_after_load / 1024, 1),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def generate(directory: Path, rows: int, seed: int = 0, chunk: int = 2_000_000) -> dict[str, float]:
    """Write ratings.csv (sorted by user, like the real file) and movies.csv; returns sizes."""
    rng = np.random.default_rng(seed)
    n_users = max(1, round(162_541 * rows / 25_000_095))
    n_movies = 62_423
    # Activity: long-tailed per-user counts (min 20 like MovieLens), scaled to exactly `rows`.
    raw = rng.lognormal(mean=0.0, sigma=1.1, size=n_users)
    counts = np.maximum(20, np.floor(raw / raw.sum() * rows)).astype(np.int64)
    while counts.sum() != rows:  # nudge the largest users until the total is exact
        diff = rows - int(counts.sum())
        idx = np.argsort(-counts)[: abs(diff)] if abs(diff) < n_users else np.arange(n_users)
        counts[idx] += np.sign(diff) * max(1, abs(diff) // len(idx))
        counts = np.maximum(counts, 1)
    # Popularity: Zipf-like over the 59,047 rated movies (ids drawn from the catalogue's ids).
    movie_ids = np.sort(rng.choice(np.arange(1, 209_172), size=n_movies, replace=False))
    rated = np.sort(movie_ids[rng.permutation(n_movies)[:59_047]])  # index order == movieId order
    weights = 1.0 / (rng.permutation(len(rated)) + 1.0) ** 1.05  # popularity rank, shuffled over ids
    cdf = np.cumsum(weights / weights.sum())
    user_of_row = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), counts)
    items = np.searchsorted(cdf, rng.random(rows), side="right").clip(0, len(rated) - 1).astype(np.int32)
    # A user rates a movie once: sort the packed (user, item) keys, redraw repeats uniformly, repeat
    # (a handful of repeats may remain; the loader's dedup handles those like any real file's).
    key = (user_of_row.astype(np.int64) << 17) | items  # 59,047 items < 2**17
    del items, user_of_row
    for _ in range(3):
        key.sort()
        dup = np.flatnonzero(key[1:] == key[:-1]) + 1
        if len(dup) == 0:
            break
        key[dup] = (key[dup] >> 17 << 17) | rng.integers(0, len(rated), size=len(dup))
    key.sort()  # the real file is sorted by (userId, movieId)
    user_of_row = (key >> 17).astype(np.int32)
    items = rated[key & ((1 << 17) - 1)].astype(np.int32)
    del key
    start = rng.integers(789_652_009, 1_574_327_703, size=n_users)
    ratings_path = directory / "ratings.csv"
    levels = np.arange(1, 11, dtype=np.float32) / 2
    rating_p = np.array([1, 3, 2, 7, 5, 19, 13, 26, 9, 15], dtype=float)
    schema = pa.schema([("userId", pa.int32()), ("movieId", pa.int32()), ("rating", pa.float32()), ("timestamp", pa.int64())])
    with open(ratings_path, "wb") as fh:
        fh.write(b"userId,movieId,rating,timestamp\n")  # unquoted, like the real file
        writer = pacsv.CSVWriter(fh, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            users = user_of_row[lo:hi]
            ts = start[users - 1] + rng.integers(0, 86_400 * 400, size=hi - lo)
            rating = rng.choice(levels, size=hi - lo, p=rating_p / rating_p.sum())
            writer.write_table(pa.table({"userId": users, "movieId": items[lo:hi], "rating": rating, "timestamp": ts}))
        writer.close()
    genres = np.array(["Action", "Adventure", "Comedy", "Drama", "Romance", "Thriller", "Sci-Fi", "Horror"])
    movies = pa.table({
        "movieId": movie_ids.astype(np.int32),
        "title": [f"Movie {m} ({1900 + m % 120})" for m in movie_ids.tolist()],
        "genres": ["|".join(genres[[m % 8, (m // 8) % 8]].tolist()) for m in movie_ids.tolist()],
    })  # fmt: skip
    pacsv.write_csv(movies, directory / "movies.csv")
    return {"file_mb": round(ratings_path.stat().st_size / 2**20, 1), "users": n_users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=25_000_000)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--tmp", type=Path, default=None, help="where to generate (default: system temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="personarec-load-scale-", dir=args.tmp) as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        gen = generate(d, args.rows)
        gen_seconds = time.perf_counter() - t0
        print(f"generated {args.rows:,} rows ({gen['file_mb']} MB) in {gen_seconds:.1f}s; loading in a fresh process ...", flush=True)
        env = dict(os.environ, POLARS_MAX_THREADS=os.environ.get("POLARS_MAX_THREADS", "2"))
        proc = subprocess.run([sys.executable, "-c", CHILD, str(d)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"child failed with status {proc.returncode}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {
        "rows": args.rows,
        "load_seconds": child["load_seconds"],
        "peak_rss_mb": child["peak_rss_mb"],
        "file_mb": gen["file_mb"],
        "goal_peak_rss_mb": GOAL_MB,
        "within_goal": child["peak_rss_mb"] <= GOAL_MB,
        "generate_seconds": round(gen_seconds, 1),
        "measured": "fresh subprocess: load_ml_csv_release (ratings.csv + movies.csv) then make_split "
        "(dedup keep last, users >= 5 events, leave-one-out); peak_rss_mb = ru_maxrss of that child",
        **{k: v for k, v in child.items() if k not in ("load_seconds", "peak_rss_mb")},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "polars_max_threads": env["POLARS_MAX_THREADS"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
