"""Build a small but real run directory for serving tests and the benchmark.

The item space is derived from the catalogue's genres (fine cluster = first genre, coarse =
genre family) so the tests do not depend on the embedding model; everything else is the
project's real code (split, MostPopular model, persona hybrid, save/load).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from personarec.data.splits import Split, save_split
from personarec.items.space import ItemSpace


def genre_space(split: Split, seed: int = 0) -> ItemSpace:
    genres = split.catalogue.frame["genres"].to_list()
    first = [(g[0] if g else "unknown") for g in genres]
    names = sorted(set(first))
    fine = np.array([names.index(g) for g in first], dtype=np.int32)
    coarse_of = np.array([0 if i % 2 == 0 else 1 for i in range(len(names))], dtype=np.int32)
    coarse = coarse_of[fine]
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(split.n_items, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sem = np.stack([coarse, fine, np.arange(split.n_items)], axis=1).astype(np.int32)
    return ItemSpace(
        item_ids=split.item_ids, embeddings=emb, fine=fine, coarse=coarse, semantic_ids=sem, fine_names=names,
        coarse_names=["genres A", "genres B"], fine_parent=coarse_of, fine_keywords=[[n] for n in names],
        meta={"source": "tests: first genre"},
    )  # fmt: skip


#: The persona model the serving tests serve (the default model when trained): the base model's
#: list with the persona's interests boosted and explore slots, so persona changes show in lists.
HYBRID = {"interest_boost": 0.1, "explore_quota": 0.2}


def build_run_dir(directory: Path, split: Split, model: str = "popular", persona_hybrid: bool = True) -> Path:
    """Split, genre item space, ``model`` and (``persona_hybrid``) a persona hybrid over it."""
    from personarec.recommend.base import build_recommender

    d = Path(directory)
    save_split(split, d / "split")
    space = genre_space(split)
    space.save(d / "items")
    base = build_recommender(model).fit(split)
    base.save(d / "models" / model)
    if persona_hybrid:
        hybrid = build_recommender("persona_hybrid", {**HYBRID, "base": {"name": model}})
        hybrid.fit(split, items=space, base=base).save(d / "models" / "persona_hybrid")
    return d
