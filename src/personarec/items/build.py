"""Split -> :class:`ItemSpace`: embed item texts, cluster them in two levels, name the clusters,
give every item a unique semantic ID. ``run_items`` is the pipeline stage (writes ``RUN_DIR/items``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from personarec.config import RunConfig
from personarec.data.splits import Split
from personarec.errors import DataError, EmptyDatasetError
from personarec.items.clusters import hierarchical_kmeans
from personarec.items.config import ItemsConfig
from personarec.items.embed import TextEmbedder
from personarec.items.naming import RenameHook, item_terms, name_clusters
from personarec.items.semantic_ids import RQKMeansConfig, semantic_ids
from personarec.items.space import ItemSpace
from personarec.run import RunDir


def build_item_space(
    split: Split,
    config: ItemsConfig | None = None,
    cache_dir: str | Path | None = None,
    *,
    rename: RenameHook | None = None,
    show_progress: bool = True,
) -> ItemSpace:
    """Build the item space of ``split``'s catalogue (row ``j`` = ``split.item_ids[j]``).

    ``cache_dir`` overrides the embedding cache root; ``rename`` is the optional cluster renaming
    hook (see :mod:`personarec.items.naming`), called once for the coarse and once for the fine level.
    """
    config = config or ItemsConfig()
    n = split.n_items
    if n == 0:
        raise EmptyDatasetError("the split has no items to embed")
    if len(split.catalogue) != n:
        raise DataError(f"catalogue has {len(split.catalogue)} rows for {n} items; the split is inconsistent")
    seed = config.resolved_seed()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    embedder = TextEmbedder(config, cache_dir)
    embeddings, embed_stats = embedder.embed(split.catalogue.texts(), show_progress=show_progress)
    timings["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    clustering = hierarchical_kmeans(
        embeddings, config.coarse_size(n), config.fine_size(n), niter=config.kmeans_iter, seed=seed
    )
    timings["cluster"] = time.perf_counter() - t

    t = time.perf_counter()
    frame = split.catalogue.frame
    terms, facets = item_terms(frame)
    titles = frame["title"].to_list()
    # training interactions only: the representative member of a cluster is its most popular one
    popularity = np.bincount(split.train["item_idx"].to_numpy(), minlength=n) if "item_idx" in split.train.columns else None
    naming = dict(popularity=popularity, style=config.naming)
    coarse_names, coarse_keywords = name_clusters(
        clustering.coarse, clustering.n_coarse, terms, facets,
        n_keywords=config.n_keywords, level="coarse", titles=titles, rename=rename, **naming,
    )  # fmt: skip
    fine_names, fine_keywords = name_clusters(
        clustering.fine, clustering.n_fine, terms, facets,
        n_keywords=config.n_keywords, level="fine", titles=titles,
        parent_names=[coarse_names[p] for p in clustering.fine_parent], rename=rename, **naming,
    )  # fmt: skip
    timings["name"] = time.perf_counter() - t

    t = time.perf_counter()
    rq_config = RQKMeansConfig(
        levels=config.rq_levels, codes=config.codes_per_level(n), niter=config.kmeans_iter, seed=seed
    )
    ids, rq, rq_stats = semantic_ids(embeddings, rq_config)
    timings["semantic_ids"] = time.perf_counter() - t

    meta: dict[str, Any] = {
        "model": embedder.model_id,
        "model_source": embedder.source,
        "dim": int(embeddings.shape[1]),
        "n_items": n,
        "n_coarse": clustering.n_coarse,
        "n_fine": clustering.n_fine,
        "config": config.model_dump(mode="json"),
        "seed": seed,
        "embedding": embed_stats.as_dict(),
        "semantic_ids": {"levels": rq_config.levels, "codes": rq_config.codes, **rq_stats.as_dict()},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "renamed": rename is not None,
        "dataset": split.protocol.dataset,
    }
    return ItemSpace(
        item_ids=np.asarray(split.item_ids, dtype=object),
        embeddings=embeddings,
        fine=clustering.fine,
        coarse=clustering.coarse,
        semantic_ids=ids,
        fine_names=fine_names,
        coarse_names=coarse_names,
        fine_parent=clustering.fine_parent,
        fine_keywords=fine_keywords,
        meta=meta,
        coarse_keywords=coarse_keywords,
        fine_centroids=clustering.fine_centroids,
        coarse_centroids=clustering.coarse_centroids,
        rq_codebooks=np.stack(rq.codebooks).astype(np.float32),
    )


def items_config(cfg: RunConfig) -> ItemsConfig:
    """The ``[items]`` section of a run config; the run's seed fills an unset items seed."""
    config = cfg.section("items", ItemsConfig)
    assert isinstance(config, ItemsConfig)
    if config.seed is None:
        config = config.model_copy(update={"seed": cfg.seed})
    return config


def run_items(cfg: RunConfig, run: RunDir, split: Split, *, rename: RenameHook | None = None) -> ItemSpace:
    """Pipeline stage: build the item space for ``split`` and save it to ``run.path / "items"``."""
    config = items_config(cfg)
    with run.stage("items", model=config.model) as entry:
        space = build_item_space(split, config, rename=rename)
        out = space.save(run.file("items", "space.json").parent)
        entry.update(
            artifacts=str(out),
            n_items=space.n_items,
            n_coarse=space.n_coarse,
            n_fine=space.n_fine,
            embedded=space.meta["embedding"]["n_computed"],
            from_cache=space.meta["embedding"]["n_cached"],
            semantic_id_collisions=space.meta["semantic_ids"]["collisions"],
            codebook_utilisation=space.meta["semantic_ids"]["utilisation"],
        )
    return space
