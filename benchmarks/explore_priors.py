"""Explore priors without any LLM -> benchmarks/results/explore_priors.json.

    .venv/bin/python benchmarks/explore_priors.py [--datasets ml-100k ml-latest-small p5-beauty]

How often do the top 3 unseen clusters of an explore prior contain a cluster the user really went
to next? Each variant (prior x half-life of the user's cluster/item weights x EASE ridge x item-EASE
pruning) is scored
twice, by the library's own ``TransitionStats.candidates``:
- inner (used to choose the defaults; training data only): relations fitted on each user's
  training events minus the last 2, history = the same, future = those last 2 training events;
- held-out (reported, not used to choose): relations fitted on the training events, history =
  training events, future = validation + test events (as ``persona_engine.py`` scores personas).
A hit needs a future cluster outside the history; the baseline is the raw-count transition
baseline the persona evaluation uses (``TransitionStats.most_frequent``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {  # label: (prior, half-life of the user's weights, EASE ridge, item-EASE neighbours kept)
    "transitions_h20": ("transitions", 20.0, None, None),
    "transitions_h5": ("transitions", 5.0, None, None),
    "ease_l200_h20": ("ease", 20.0, 200.0, None),
    "ease_l200_h5": ("ease", 5.0, 200.0, None),
    "ease_l200_h2": ("ease", 2.0, 200.0, None),
    "ease_l50_h5": ("ease", 5.0, 50.0, None),
    "ease_l1000_h5": ("ease", 5.0, 1000.0, None),
    "item_ease_l50_h5": ("item_ease", 5.0, 50.0, 100),
    "item_ease_l200_h5": ("item_ease", 5.0, 200.0, 100),
    "item_ease_l500_h5": ("item_ease", 5.0, 500.0, 100),
    "item_ease_l200_h2": ("item_ease", 2.0, 200.0, 100),
    "item_ease_l200_h20": ("item_ease", 20.0, 200.0, 100),
    "item_ease_l200_h5_n400": ("item_ease", 5.0, 200.0, 400),
}


def drop_last(seqs, n: int):
    """The same users' sequences without their last ``n`` events (and those events)."""
    from personarec.data.splits import UserSequences

    lengths = seqs.lengths()
    keep = np.maximum(lengths - n, 0)
    mask = np.zeros(len(seqs.items), dtype=bool)
    for u in range(seqs.n_users):
        mask[seqs.indptr[u] : seqs.indptr[u] + keep[u]] = True
    indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    head = UserSequences(indptr=indptr, items=seqs.items[mask], timestamps=seqs.timestamps[mask])
    futures = [seqs[u][keep[u] :] for u in range(seqs.n_users)]
    return head, futures


def score(space, history, futures, k: int = 3) -> dict:
    from personarec.personas.history import cluster_stats
    from personarec.personas.transitions import TransitionStats, recency_weights

    def fit(prior, lam, neighbors):
        if prior == "item_ease":
            return TransitionStats.fit(history, space.fine, space.n_fine, item_lambda=lam, item_neighbors=neighbors)
        return TransitionStats.fit(history, space.fine, space.n_fine, ease_lambda=lam or 200.0, item_lambda=None)

    keys = {(p if p == "item_ease" else "cluster", lam, n) for p, _, lam, n in VARIANTS.values()}
    fits = {key: fit(*key) for key in keys}
    fits[None] = fits[("cluster", None, None)]
    hits = {label: 0 for label in [*VARIANTS, "baseline"]}
    n = novel = 0
    for u in range(history.n_users):
        items, fut = history[u], futures[u]
        if len(items) == 0 or len(fut) == 0:
            continue
        seen = {int(c) for c in space.fine[items]}
        target = {int(c) for c in space.fine[np.asarray(fut, dtype=np.int64)]} - seen
        n += 1
        novel += bool(target)
        hits["baseline"] += bool(target & set(fits[None].most_frequent(seen, k)))
        halves = {v[1] for v in VARIANTS.values()}
        weights = {h: {s.cluster: s.weight for s in cluster_stats(items, space, h, 0)} for h in halves}
        item_weights = {h: recency_weights(items, h) for h in halves}
        for label, (prior, half, lam, nb) in VARIANTS.items():
            stats = fits[(prior if prior == "item_ease" else "cluster", lam, nb)]
            top = stats.candidates(weights[half], k, prior=prior, items=item_weights[half])
            hits[label] += bool(target & set(top))
    base = hits["baseline"] / max(n, 1)
    return {"n_users": n, "novel_future_rate": round(novel / max(n, 1), 4),
            **{label: {"hit_rate": round(h / max(n, 1), 4), "ratio_to_baseline": round(h / n / base, 3) if base else None}
               for label, h in hits.items()}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small", "p5-beauty"])
    ap.add_argument("--out", type=Path, default=RESULTS / "explore_priors.json")
    args = ap.parse_args()
    from persona_engine import load

    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig

    result: dict = {"command": "python benchmarks/explore_priors.py " + " ".join(sys.argv[1:]), "variants": {
        k: {"prior": p, "half_life": h, "ease_lambda": lam, "item_neighbors": nb} for k, (p, h, lam, nb) in VARIANTS.items()}, "datasets": {}}  # fmt: skip
    for name in args.datasets:
        t = time.perf_counter()
        split = load(name)
        space = build_item_space(split, ItemsConfig(), show_progress=False)
        train = split.history("train")
        inner_history, inner_futures = drop_last(train, 2)
        valid, test = split.targets("valid"), split.targets("test")
        held_out = [np.concatenate([valid[u], test[u]]) for u in range(split.n_users)]
        result["datasets"][name] = {
            "n_fine": space.n_fine,
            "inner": score(space, inner_history, inner_futures),
            "held_out": score(space, train, held_out),
            "seconds": round(time.perf_counter() - t, 1),
        }
        print(name, json.dumps(result["datasets"][name]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
