"""Evaluation harness benchmark: full ranking over a 10^5-item catalogue, memory-bounded.

Run: ``.venv/bin/python benchmarks/evaluate.py [--users N] [--items N] [--repeats R]``
Writes ``benchmarks/results/evaluate.json``.

Synthetic but shaped like the real thing: a factor model (64-d user and item factors, the score
block of a batch is one matmul) over ``--items`` items, ``--users`` evaluated users with 20
history items each (Zipf popularity) and one held-out target, and an item space (32-d embeddings,
200 fine clusters) so every metric family runs. Measured:

1. ``evaluate_models`` wall time (median of ``--repeats``) and traced peak memory (tracemalloc,
   one extra run) for two caps on ranking working memory (rank_memory_mb): the batch size follows from the cap;
2. the metric computation alone: vectorised families vs a per-user Python loop that computes the
   same accuracy + novelty values (baseline, same script, same data), on the same top-k lists.
The dense ``[users, items]`` float32 score matrix an unbatched evaluation would hold is *computed*
(users x items x 4 bytes), not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from personarec.data.protocol import ProtocolCard  # noqa: E402
from personarec.data.records import Catalogue  # noqa: E402
from personarec.data.splits import Split  # noqa: E402
from personarec.evaluate.harness import effective_batch_size, evaluate_models  # noqa: E402
from personarec.evaluate.metrics import EvalData, UserBatch, build_metric  # noqa: E402
from personarec.items.space import ItemSpace  # noqa: E402
from personarec.recommend.base import Recommender  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "evaluate.json"


class FactorModel(Recommender):
    """Dot-product scores from fixed random factors: the cost profile of MF / two-tower models."""

    name = "factor-bench"

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        super().__init__()
        self.u, self.v = users, items
        self.n_items = len(items)

    def fit(self, split, **context):
        return self

    def score(self, users, history):
        return self.u[users] @ self.v.T


def synthetic(n_users: int, n_items: int, seed: int = 0) -> tuple[Split, ItemSpace, FactorModel]:
    import polars as pl

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p /= p.sum()
    hist = rng.choice(n_items, size=(n_users, 20), p=p).astype(np.int32)
    target = rng.choice(n_items, size=n_users, p=p).astype(np.int32)
    users = np.repeat(np.arange(n_users, dtype=np.int32), 20)
    train = pl.DataFrame({"user_idx": users, "item_idx": hist.ravel(), "timestamp": np.tile(np.arange(20), n_users), "rating": np.ones(n_users * 20, np.float32)})
    test = pl.DataFrame({"user_idx": np.arange(n_users, dtype=np.int32), "item_idx": target, "timestamp": np.full(n_users, 99), "rating": np.ones(n_users, np.float32)})
    item_ids = np.array([f"i{j}" for j in range(n_items)], dtype=object)
    split = Split(
        user_ids=np.array([f"u{j}" for j in range(n_users)], dtype=object), item_ids=item_ids,
        catalogue=Catalogue.from_frame(pl.DataFrame({"item_id": item_ids.tolist()})),
        train=train, valid=train.head(0), test=test,
        protocol=ProtocolCard(dataset="synthetic-factor", split="one held-out event per user (synthetic)",
                              n_users=n_users, n_items=n_items, n_train=train.height, n_test=test.height),
    )  # fmt: skip
    emb = rng.normal(size=(n_items, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    fine = rng.integers(0, 200, n_items).astype(np.int32)
    space = ItemSpace(
        item_ids=item_ids, embeddings=emb, fine=fine, coarse=(fine // 20).astype(np.int32),
        semantic_ids=np.stack([fine, np.arange(n_items)], 1).astype(np.int32),
        fine_names=[f"c{c}" for c in range(200)], coarse_names=[f"g{c}" for c in range(10)],
        fine_parent=(np.arange(200) // 20).astype(np.int32),
    )  # fmt: skip
    model = FactorModel(rng.normal(size=(n_users, 64)).astype(np.float32), rng.normal(size=(n_items, 64)).astype(np.float32))
    return split, space, model


def python_loop_metrics(recs: np.ndarray, users: np.ndarray, data: EvalData, k: int) -> dict[str, float]:
    """Baseline: accuracy + novelty at one k, one user at a time with Python sets."""
    info = -np.log2(np.maximum(data.popularity, 1) / data.n_history_users)
    ndcg = recall = mrr = nov = 0.0
    for row, u in enumerate(users):
        targets = set(data.targets[u].tolist())
        top = recs[row, :k].tolist()
        hits = [i for i, item in enumerate(top) if item in targets]
        dcg = sum(1 / np.log2(i + 2) for i in hits)
        idcg = sum(1 / np.log2(i + 2) for i in range(min(len(targets), k)))
        ndcg += dcg / idcg
        recall += len(hits) / len(targets)
        mrr += 1 / (hits[0] + 1) if hits else 0.0
        nov += float(np.mean([info[i] for i in top]))
    n = len(users)
    return {"ndcg": ndcg / n, "recall": recall / n, "mrr": mrr / n, "novelty": nov / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    split, space, model = synthetic(args.users, args.items)
    out: dict = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "workload": {"users": args.users, "items": args.items, "history_per_user": 20, "targets_per_user": 1,
                     "ks": [5, 10, 20], "factor_dim": 64, "embedding_dim": 32, "fine_clusters": 200},  # fmt: skip
        "unbatched_score_matrix_mb": round(args.users * args.items * 4 / 2**20, 1),
        "runs": [],
    }
    result = None
    for cap in (64, 256):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = evaluate_models(split, {"factor": model}, "test", (5, 10, 20), space, 4096,
                                     rank_memory_mb=cap, n_boot=200, show_progress=False)  # fmt: skip
            times.append(time.perf_counter() - t)
        tracemalloc.start()
        evaluate_models(split, {"factor": model}, "test", (5, 10, 20), space, 4096, rank_memory_mb=cap, n_boot=200, show_progress=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        run = {
            "rank_memory_mb": cap,
            "batch_users": effective_batch_size(4096, args.items, cap),
            "median_s": round(statistics.median(times), 3),
            "times_s": [round(x, 3) for x in times],
            "users_per_s": round(args.users / statistics.median(times), 1),
            "rank_s": result.timings["factor"]["rank_s"],
            "metrics_s": result.timings["factor"]["metrics_s"],
            "traced_peak_mb": round(peak / 2**20, 1),
        }
        out["runs"].append(run)
        print(json.dumps(run))

    # metric computation alone, on the same lists: vectorised families vs the per-user Python loop
    assert result is not None
    data = EvalData.from_split(split, "test", (10,), space)
    recs, users = result.recs["factor"], result.users
    families = [build_metric(n) for n in ("accuracy", "novelty")]
    vec_times, loop_times = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        batch = UserBatch(users, recs, data)
        vec = {}
        for f in families:
            vec.update({c: float(v.mean()) for c, v in f.per_user(batch).items()})
        vec_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        loop = python_loop_metrics(recs, users, data, 10)
        loop_times.append(time.perf_counter() - t)
    for name in ("ndcg", "recall", "mrr", "novelty"):
        assert abs(vec[f"{name}@10"] - loop[name]) < 1e-9, (name, vec[f"{name}@10"], loop[name])
    all_times = []
    all_families = [build_metric(n) for n in ("accuracy", "coverage", "diversity", "novelty", "serendipity", "exploration")]
    for _ in range(args.repeats):
        t = time.perf_counter()
        batch = UserBatch(users, recs, EvalData.from_split(split, "test", (5, 10, 20), space))
        for f in all_families:
            f.per_user(batch)
            f.global_(recs, users, batch.data)
        all_times.append(time.perf_counter() - t)
    out["metrics_only"] = {
        "users": len(users),
        "vectorised_accuracy_novelty_median_s": round(statistics.median(vec_times), 5),
        "python_loop_accuracy_novelty_median_s": round(statistics.median(loop_times), 5),
        "speedup": round(statistics.median(loop_times) / statistics.median(vec_times), 1),
        "values_agree": True,
        "all_six_families_3_ks_median_s": round(statistics.median(all_times), 4),
    }
    print(json.dumps(out["metrics_only"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
