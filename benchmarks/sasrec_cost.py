"""Benchmark: what one SASRec training step and one validation pass cost on a real catalogue.

Run: ``.venv/bin/python benchmarks/sasrec_cost.py [--dataset p5-sports] [--threads 1] [--quick]``
Writes ``benchmarks/results/sasrec_cost.json``.

On a catalogue of tens of thousands of items the two costs of an epoch are (a) the training
softmax, which scores every item at every training position, and (b) the per-epoch validation
pass, full ranking for every validation user. Timed here, on the dataset's own split and
history lengths, medians over repeats, on one thread by default (one search trial per core):

- a training step (forward, backward, Adam) with ``loss = softmax`` against
  ``loss = sampled_softmax`` (256 negatives), at hidden 64 and 256, on the same batches;
- the validation pass as it ran before (batches in user-index order, each padded to its longest
  history, the last block computed for every position) against :meth:`SASRec.validation_ndcg`
  (users batched by history length, the last block for the latest position only), and the
  physical floor under it: the ``[users, H] x [H, items]`` matmul alone.

The weights are freshly initialised: cost depends on the shapes, not on what was learned, and the
NDCG both passes return is checked to be the same.
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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from personarec.data.registry import load_dataset  # noqa: E402
from personarec.data.splits import Split, make_split  # noqa: E402
from personarec.recommend.base import build_recommender, mask_seen, ndcg_gains, target_ranks  # noqa: E402
from personarec.recommend.sasrec import SASRec, _length_buckets, left_pad  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sasrec_cost.json"


def median_s(fn: Callable[[], Any], repeats: int, warm_up: bool = True) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` calls, after one untimed warm-up (skipped
    for calls long enough to warm themselves up: a whole validation pass)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fresh_model(split: Split, **settings: Any) -> SASRec:
    model = build_recommender("sasrec", dict(settings, show_progress=False, seed=0))
    assert isinstance(model, SASRec)
    model.exclude_seen = bool(split.protocol.exclude_seen)
    model._build(split.n_items)
    return model


def training_steps(split: Split, hidden: int, threads: int, n_steps: int) -> dict[str, Any]:
    """Median seconds of one training step with each loss, on the same real batches."""
    row: dict[str, Any] = {"hidden": hidden}
    for loss in ("softmax", "sampled_softmax"):
        model = fresh_model(split, hidden=hidden, num_threads=threads, loss=loss, n_negatives=256)
        assert model.net is not None
        users, windows = model._training_windows(split.history("train"))
        lengths = np.array([len(w) for w in windows])
        batches = _length_buckets(lengths, model.cfg.batch_size, np.random.default_rng(0))[: n_steps + 1]
        optimiser = torch.optim.Adam(model.net.parameters(), lr=model.cfg.lr)
        model.net.train()
        times = []
        for i, idx in enumerate(batches):
            seqs = [windows[j] for j in idx]
            inputs = left_pad([s[:-1] for s in seqs], model.cfg.max_len)
            targets = left_pad([s[1:] for s in seqs], model.cfg.max_len)
            t = time.perf_counter()
            step_loss = model.training_loss(inputs, targets, torch.from_numpy(users[idx]))
            optimiser.zero_grad(set_to_none=True)
            step_loss.backward()
            optimiser.step()
            if i:  # the first step warms up
                times.append(time.perf_counter() - t)
        row[f"{loss}_step_ms"] = 1e3 * statistics.median(times)
        row["steps_per_epoch"] = len(_length_buckets(lengths, model.cfg.batch_size, np.random.default_rng(0)))
    row["speedup"] = row["softmax_step_ms"] / row["sampled_softmax_step_ms"]
    return row


def index_order_ndcg(model: SASRec, users: np.ndarray, split: Split) -> float:
    """The validation pass as it ran before: batches of consecutive user indices, every position
    of every block computed, the latest one scored."""
    history, targets, k = split.history("train"), split.targets("valid"), model.cfg.eval_k
    assert model.net is not None
    weights = model.net.item_weights()
    gains = []
    for b in range(0, len(users), model.cfg.infer_batch_size):
        batch = users[b : b + model.cfg.infer_batch_size]
        with torch.no_grad():
            hidden, _ = model.encode([history[int(u)][-model.cfg.max_len :] for u in batch])
            scores = (hidden[:, -1] @ weights.T).numpy()
        if model.exclude_seen:
            mask_seen(scores, batch, history)
        gains.append(ndcg_gains(target_ranks(scores, targets.items[targets.indptr[batch]]), k))
    return float(np.concatenate(gains).mean())


def validation_pass(split: Split, hidden: int, threads: int, repeats: int) -> dict[str, Any]:
    model = fresh_model(split, hidden=hidden, num_threads=threads)
    assert model.net is not None
    model.net.eval()
    users, history, targets = split.eval_users("valid"), split.history("train"), split.targets("valid")
    ndcg: dict[str, float] = {}

    def before() -> None:
        ndcg["before"] = index_order_ndcg(model, users, split)

    def now() -> None:
        ndcg["now"] = model.validation_ndcg(users, history, targets)

    with torch.no_grad():
        queries = torch.randn(len(users), hidden)
        weights = model.net.item_weights()
    row = {
        "hidden": hidden, "users": int(len(users)), "items": int(split.n_items),
        "before_s": median_s(before, repeats, warm_up=False),
        "now_s": median_s(now, repeats, warm_up=False),
        "matmul_floor_s": median_s(lambda: torch.mm(queries, weights.T), repeats),
    }  # fmt: skip
    if abs(ndcg["before"] - ndcg["now"]) > 1e-6:
        raise AssertionError(f"the two passes disagree: {ndcg}")
    row["ndcg_both"] = ndcg["now"]
    row["speedup"] = row["before_s"] / row["now_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="p5-sports", help="a registered dataset in ../shared/datasets")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="ML-100k, few repeats (smoke run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    dataset = "ml-100k" if args.quick else args.dataset
    torch.set_num_threads(args.threads)
    split = make_split(load_dataset(dataset, download=False))
    lengths = split.history("train").lengths()
    steps, repeats = (5, 1) if args.quick else (30, 2)
    rows = {"training_step": [], "validation_pass": []}
    for hidden in (64, 256):
        r = training_steps(split, hidden, args.threads, steps)
        rows["training_step"].append(r)
        print(f"hidden {hidden}: step softmax {r['softmax_step_ms']:.0f} ms, sampled {r['sampled_softmax_step_ms']:.0f} ms "
              f"(x{r['speedup']:.1f}; {r['steps_per_epoch']} steps an epoch)")  # fmt: skip
        v = validation_pass(split, hidden, args.threads, repeats)
        rows["validation_pass"].append(v)
        print(f"hidden {hidden}: validation {v['before_s']:.1f} s -> {v['now_s']:.1f} s (x{v['speedup']:.1f}; "
              f"matmul floor {v['matmul_floor_s']:.2f} s)")  # fmt: skip
    result = {
        "benchmark": "sasrec_cost",
        "command": "benchmarks/sasrec_cost.py" + (" --quick" if args.quick else f" --dataset {dataset} --threads {args.threads}"),
        "dataset": dataset, "n_users": int(split.n_users), "n_items": int(split.n_items),
        "train_history_length": {"mean": float(lengths.mean()), "median": float(np.median(lengths)), "max": int(lengths.max())},
        "threads": args.threads, **rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                    "torch": torch.__version__},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
