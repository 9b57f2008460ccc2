"""Benchmark: what scoring a batch of users with EASE costs, row-major weights against column-major.

Run: ``.venv/bin/python benchmarks/ease_cost.py [--dataset p5-sports] [--l2 100] [--threads 1]``
Writes ``benchmarks/results/ease_cost.json``.

EASE scores a batch as ``H @ B``: a sparse history matrix times the dense ``n_items²`` weights, so
each history item adds one row of ``B``. EASE's fit used to leave ``B`` column-major (the Gram
matrix of a CSC product is), and then every row of ``B`` is gathered with an ``n_items`` stride.
Timed here on the dataset's own test histories (EASE fitted on its training events): one batch of
the harness's size (1,024 users) with ``B`` as :class:`personarec.recommend.ease.EASE` now keeps
it (row-major) and as it was (column-major), medians over repeats, and the physical reference:
the multiply-adds one batch needs (history nonzeros x items) and the rate each layout reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# BLAS threads are fixed when numpy loads (EASE's fit inverts an n_items² matrix)
_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from personarec.data.registry import load_dataset  # noqa: E402
from personarec.data.splits import make_split  # noqa: E402
from personarec.recommend.base import build_recommender, history_matrix  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ease_cost.json"
BATCH = 1024  # users per batch in the evaluation harness


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="p5-sports")
    ap.add_argument("--l2", type=float, default=100.0, help="EASE's l2 (Sports' validation choice: 100)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (set before numpy loads)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    split = make_split(load_dataset(args.dataset, download=False))
    t0 = time.perf_counter()
    model = build_recommender("ease", {"l2": args.l2}).fit(split)
    fit_s = time.perf_counter() - t0
    history = split.history("test")
    users = split.eval_users("test")
    batch = users[:BATCH]
    h = history_matrix(batch, history, split.n_items)
    layouts = {"row_major": model.weights, "column_major": np.asfortranarray(model.weights)}
    out: dict = {}
    reference = None
    for name, weights in layouts.items():
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            scores = np.asarray(h @ weights, dtype=np.float32)
            times.append(time.perf_counter() - t)
        if reference is None:
            reference = scores
        assert np.array_equal(scores, reference), "both layouts must give the same scores"
        seconds = statistics.median(times)
        out[name] = {"batch_seconds": seconds, "users_per_s": len(batch) / seconds,
                     "gflops": 2 * h.nnz * split.n_items / seconds / 1e9,
                     "all_test_users_seconds_estimate": seconds * len(users) / len(batch)}  # fmt: skip
        print(f"{name}: {seconds * 1000:.0f} ms per {len(batch)} users, {out[name]['gflops']:.2f} GFLOP/s", flush=True)
    doc = {
        "benchmark": "ease_cost", "dataset": args.dataset, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": f"benchmarks/ease_cost.py --dataset {args.dataset} --l2 {args.l2:g} --threads {args.threads}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "threads": args.threads, "note": "shared machine: other jobs ran at the same time"},
        "n_items": split.n_items, "n_test_users": int(len(users)), "batch_users": int(len(batch)),
        "batch_history_nonzeros": int(h.nnz), "weights_gb": model.weights.nbytes / 1e9, "fit_seconds": fit_s,
        "layouts": out, "column_over_row": out["column_major"]["batch_seconds"] / out["row_major"]["batch_seconds"],
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(f"column-major / row-major: x{doc['column_over_row']:.0f}; wrote {args.out}")


if __name__ == "__main__":
    main()
