"""Benchmark: text_sasrec scoring with the inference item table reused vs projected per call.

Run: ``.venv/bin/python benchmarks/text_sasrec_scoring.py [--quick] [--threads 1]``
Writes ``benchmarks/results/text_sasrec_scoring.json``.

text_sasrec's item vectors are ``W text - W b`` (+ ID embeddings): a ``[n_items, 384] x [384, H]``
projection of the whole catalogue. Before the table was cached, every scoring call (one serving
request, one validation batch) computed it at least twice (output layer and input embeddings). Timed, on
one thread, for catalogues the size of P5 Beauty (12,101 items) and larger:

- ``score_sequence`` of one user (what the API does per request) and the scoring of a 256-user
  batch (an evaluation or validation batch), with the table reused (``cached``) and rebuilt once
  before every call (``projected``), as medians, and their ratio. ``projected`` is a lower bound on
  the cost before the cache, which projected the catalogue once for the output layer and once more
  for the input embeddings of every chunk of users;
- ID-only SASRec at the same hidden size (its table is the embedding matrix itself: the floor);
- the physical reference: one catalogue projection alone (the matmul the cache saves).

The models are fitted for one epoch on a synthetic split in which every item occurs (random
unit text vectors of MiniLM's 384 dimensions): scoring cost depends on the shapes, not on what the
weights learned, so no dataset or embedding model is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from personarec.data.preprocess import PreprocessConfig  # noqa: E402
from personarec.data.records import Catalogue, Dataset, Interactions  # noqa: E402
from personarec.data.splits import Split, make_split  # noqa: E402
from personarec.items.space import ItemSpace  # noqa: E402
from personarec.recommend.base import build_recommender  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "text_sasrec_scoring.json"
TEXT_DIM = 384  # all-MiniLM-L6-v2
HISTORY = 50  # events per scored user (= max_len: the longest sequence a request scores)
BATCH_USERS = 256


def median_ms(fn: Callable[[], Any], repeats: int, before: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn`` in ms over ``repeats`` calls (``before`` runs untimed first)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def synthetic_world(n_items: int, seed: int = 0) -> tuple[Split, ItemSpace]:
    """A split in which every item occurs once (four events a user, so training is cheap: only a
    quarter of the events are training targets), and an item space of random unit text vectors."""
    rng = np.random.default_rng(seed)
    per_user = 4
    n_users = n_items // per_user
    items = rng.permutation(n_items)[: n_users * per_user]
    frame = pl.DataFrame(
        {
            "user_id": np.repeat([f"u{u}" for u in range(n_users)], per_user),
            "item_id": [f"i{i}" for i in items],
            "timestamp": np.tile(np.arange(per_user, dtype=np.int64), n_users),
        }
    )
    catalogue = Catalogue.from_frame(pl.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]}))
    dataset = Dataset(name="synthetic", interactions=Interactions.from_frame(frame), catalogue=catalogue)
    split = make_split(dataset, PreprocessConfig(dedup="none", min_user_interactions=0))
    text = rng.normal(size=(split.n_items, TEXT_DIM)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    fine = (np.arange(split.n_items) % 64).astype(np.int32)
    space = ItemSpace(
        item_ids=split.item_ids, embeddings=text, fine=fine, coarse=fine // 8,
        semantic_ids=np.stack([fine, np.arange(split.n_items)], axis=1).astype(np.int32),
        fine_names=[f"cluster {c}" for c in range(64)], coarse_names=[f"group {c}" for c in range(8)],
        fine_parent=(np.arange(64) // 8).astype(np.int32),
    )  # fmt: skip
    return split, space


def measure(n_items: int, hidden: int, threads: int, repeats: int) -> dict[str, Any]:
    split, space = synthetic_world(n_items)
    settings = dict(hidden=hidden, max_len=HISTORY, max_epochs=1, early_stopping=False, batch_size=64,
                    num_threads=threads, show_progress=False, seed=0)  # fmt: skip
    sasrec = build_recommender("sasrec", settings).fit(split)
    text = build_recommender("text_sasrec", settings).fit(split, items=space)
    rng = np.random.default_rng(1)
    one = rng.integers(0, split.n_items, size=HISTORY)
    batch = [rng.integers(0, split.n_items, size=HISTORY) for _ in range(BATCH_USERS)]
    net = text.net

    def forget() -> None:
        net.frozen_table = None

    row: dict[str, Any] = {"n_items": split.n_items, "hidden": hidden}
    with torch.no_grad():
        row["projection_ms"] = median_ms(lambda: net._project_items(), repeats)
    for name, call in {
        "request": lambda m: m.score_sequence(one),
        "batch256": lambda m: m._score_seqs(batch),
    }.items():
        reps = repeats if name == "request" else max(3, repeats // 5)
        cached = median_ms(lambda: call(text), reps)
        projected = median_ms(lambda: call(text), reps, before=forget)
        row[name] = {
            "text_sasrec_cached_ms": cached,
            "text_sasrec_projected_ms": projected,
            "speedup": projected / cached,
            "sasrec_ms": median_ms(lambda: call(sasrec), reps),
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small catalogue, few repeats (smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the serving worker's setting)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [2_000] if args.quick else [12_101, 50_000]
    repeats = 5 if args.quick else 41
    rows = []
    for n in sizes:
        t = time.perf_counter()
        rows.append(measure(n, hidden=128, threads=args.threads, repeats=repeats))
        r = rows[-1]
        print(f"{r['n_items']:>7} items: projection {r['projection_ms']:.1f} ms; request "
              f"{r['request']['text_sasrec_projected_ms']:.1f} -> {r['request']['text_sasrec_cached_ms']:.1f} ms "
              f"(x{r['request']['speedup']:.1f}, SASRec {r['request']['sasrec_ms']:.1f}); batch of {BATCH_USERS} "
              f"{r['batch256']['text_sasrec_projected_ms']:.0f} -> {r['batch256']['text_sasrec_cached_ms']:.0f} ms "
              f"(x{r['batch256']['speedup']:.2f}, SASRec {r['batch256']['sasrec_ms']:.0f}) [{time.perf_counter() - t:.0f}s]")  # fmt: skip
    result = {
        "benchmark": "text_sasrec_scoring",
        "command": "benchmarks/text_sasrec_scoring.py" + (" --quick" if args.quick else ""),
        "threads": args.threads,
        "history_length": HISTORY,
        "text_dim": TEXT_DIM,
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                    "torch": torch.__version__},  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
