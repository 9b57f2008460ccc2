"""The item space: embeddings, two-level semantic clusters with names, and semantic IDs.

This is the artifact that ``personarec items build`` writes to ``RUN_DIR/items/`` and that
personas, recommenders and serving read. Every array is aligned with the split's item index
(row ``j`` = ``split.item_ids[j]``).

Files:
- ``embeddings.npy``  float32 [n_items, dim], L2-normalised
- ``items.parquet``   item_idx, item_id, fine_cluster, coarse_cluster, semantic_id (list[int])
- ``clusters.parquet`` cluster_id, level ('fine' | 'coarse'), parent (coarse id for fine, -1),
  name, size, keywords (list[str])
- ``space.json``      model name, dims, config used, build statistics
- optional (present when built by :func:`personarec.items.build.build_item_space`):
  ``fine_centroids.npy`` / ``coarse_centroids.npy`` float32 [n_clusters, dim] (unit norm) and
  ``rq_codebooks.npy`` float32 [levels, codes, dim], so new items can be placed without a rebuild.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from personarec.errors import DataError


@dataclass(frozen=True)
class ItemSpace:
    item_ids: np.ndarray  # object [n_items]
    embeddings: np.ndarray  # float32 [n_items, dim], unit norm
    fine: np.ndarray  # int32 [n_items] fine cluster id (0..n_fine-1)
    coarse: np.ndarray  # int32 [n_items] coarse cluster id (0..n_coarse-1)
    semantic_ids: np.ndarray  # int32 [n_items, levels + 1]; last column makes each row unique
    fine_names: list[str]  # index = fine cluster id; unique across the catalogue
    coarse_names: list[str]  # index = coarse cluster id
    fine_parent: np.ndarray  # int32 [n_fine] coarse id of each fine cluster
    fine_keywords: list[list[str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    coarse_keywords: list[list[str]] = field(default_factory=list)
    fine_centroids: np.ndarray | None = None  # float32 [n_fine, dim], unit norm
    coarse_centroids: np.ndarray | None = None  # float32 [n_coarse, dim], unit norm
    rq_codebooks: np.ndarray | None = None  # float32 [levels, codes, dim]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_fine(self) -> int:
        return len(self.fine_names)

    @property
    def n_coarse(self) -> int:
        return len(self.coarse_names)

    def members(self, fine_cluster: int) -> np.ndarray:
        """Item indices of one fine cluster."""
        return np.flatnonzero(self.fine == fine_cluster)

    def cluster_by_name(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.fine_names)}

    def semantic_id_str(self, item: int) -> str:
        return "-".join(str(int(c)) for c in self.semantic_ids[item])

    def children(self, coarse_cluster: int) -> np.ndarray:
        """Fine cluster ids under one coarse cluster."""
        return np.flatnonzero(self.fine_parent == coarse_cluster)

    def assign_fine(self, vectors: np.ndarray) -> np.ndarray:
        """Nearest fine cluster for new unit-norm vectors (e.g. items added after the build)."""
        if self.fine_centroids is None:
            raise DataError("this item space has no fine centroids; rebuild it with `personarec items build`")
        return np.argmax(np.asarray(vectors, dtype=np.float32) @ self.fine_centroids.T, axis=1).astype(np.int32)

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "embeddings.npy", self.embeddings.astype(np.float32, copy=False))
        pl.DataFrame(
            {
                "item_idx": np.arange(self.n_items, dtype=np.int32),
                "item_id": self.item_ids.tolist(),
                "fine_cluster": self.fine.astype(np.int32),
                "coarse_cluster": self.coarse.astype(np.int32),
                "semantic_id": self.semantic_ids.astype(np.int32).tolist(),
            }
        ).write_parquet(d / "items.parquet")
        n_fine, n_coarse = self.n_fine, self.n_coarse
        fine_sizes = np.bincount(self.fine, minlength=n_fine)
        coarse_sizes = np.bincount(self.coarse, minlength=n_coarse)
        keywords = self.fine_keywords or [[] for _ in range(n_fine)]
        coarse_keywords = self.coarse_keywords or [[] for _ in range(n_coarse)]
        pl.DataFrame(
            {
                "cluster_id": list(range(n_fine)) + list(range(n_coarse)),
                "level": ["fine"] * n_fine + ["coarse"] * n_coarse,
                "parent": self.fine_parent.astype(int).tolist() + [-1] * n_coarse,
                "name": self.fine_names + self.coarse_names,
                "size": fine_sizes.tolist() + coarse_sizes.tolist(),
                "keywords": keywords + coarse_keywords,
            },
            schema_overrides={"keywords": pl.List(pl.Utf8)},
        ).write_parquet(d / "clusters.parquet")
        (d / "space.json").write_text(json.dumps(self.meta, indent=2, default=str))
        for name in ("fine_centroids", "coarse_centroids", "rq_codebooks"):
            value = getattr(self, name)
            if value is not None:
                np.save(d / f"{name}.npy", np.asarray(value, dtype=np.float32))
            else:
                (d / f"{name}.npy").unlink(missing_ok=True)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> ItemSpace:
        d = Path(directory)
        if not (d / "items.parquet").exists():
            raise DataError(f"no item space in {d}; run `personarec items build` first")
        items = pl.read_parquet(d / "items.parquet").sort("item_idx")
        clusters = pl.read_parquet(d / "clusters.parquet")
        fine = clusters.filter(pl.col("level") == "fine").sort("cluster_id")
        coarse = clusters.filter(pl.col("level") == "coarse").sort("cluster_id")
        return cls(
            item_ids=np.asarray(items["item_id"].to_list(), dtype=object),
            embeddings=np.load(d / "embeddings.npy"),
            fine=items["fine_cluster"].to_numpy().astype(np.int32),
            coarse=items["coarse_cluster"].to_numpy().astype(np.int32),
            semantic_ids=np.asarray(items["semantic_id"].to_list(), dtype=np.int32),
            fine_names=fine["name"].to_list(),
            coarse_names=coarse["name"].to_list(),
            fine_parent=fine["parent"].to_numpy().astype(np.int32),
            fine_keywords=fine["keywords"].to_list(),
            meta=json.loads((d / "space.json").read_text()) if (d / "space.json").exists() else {},
            coarse_keywords=coarse["keywords"].to_list(),
            fine_centroids=_optional(d / "fine_centroids.npy"),
            coarse_centroids=_optional(d / "coarse_centroids.npy"),
            rq_codebooks=_optional(d / "rq_codebooks.npy"),
        )


def _optional(path: Path) -> np.ndarray | None:
    return np.load(path) if path.exists() else None
