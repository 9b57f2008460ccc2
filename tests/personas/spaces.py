"""A small real item space for persona tests: ML-100k items clustered by their genre labels.

Building the embedding-based space (items helper) takes tens of seconds; persona logic only needs
*an* item space with unique fine-cluster names, so tests use this deterministic genre one.
"""

from __future__ import annotations

import numpy as np

from personarec.data.splits import Split
from personarec.items.space import ItemSpace


def genre_space(split: Split, max_genres: int = 2) -> ItemSpace:
    genres = split.catalogue.frame["genres"].to_list()
    keys = [" & ".join(sorted(g)[:max_genres]) if g else "Unlabelled" for g in genres]
    fine_names = sorted(set(keys))
    fine_index = {n: i for i, n in enumerate(fine_names)}
    fine = np.array([fine_index[k] for k in keys], dtype=np.int32)
    coarse_names = sorted({n.split(" & ")[0] for n in fine_names})
    coarse_index = {n: i for i, n in enumerate(coarse_names)}
    fine_parent = np.array([coarse_index[n.split(" & ")[0]] for n in fine_names], dtype=np.int32)
    coarse = fine_parent[fine]
    vocab = sorted({x for g in genres for x in g})
    emb = np.zeros((len(keys), len(vocab) + 1), dtype=np.float32)
    for i, g in enumerate(genres):
        for x in g:
            emb[i, vocab.index(x)] = 1.0
        emb[i, -1] = 0.1
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rank = np.zeros(len(keys), dtype=np.int32)
    seen: dict[int, int] = {}
    for i, f in enumerate(fine):
        rank[i] = seen.get(int(f), 0)
        seen[int(f)] = rank[i] + 1
    return ItemSpace(
        item_ids=split.item_ids,
        embeddings=emb,
        fine=fine,
        coarse=coarse.astype(np.int32),
        semantic_ids=np.stack([coarse, fine, rank], axis=1).astype(np.int32),
        fine_names=fine_names,
        coarse_names=coarse_names,
        fine_parent=fine_parent,
        meta={"kind": "genre-test-space"},
    )
