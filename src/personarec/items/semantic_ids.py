"""Semantic IDs by residual k-means (RQ-KMeans), as used by TIGER/PLUM-style generative retrieval.

Level 1 clusters the embeddings into ``K`` codes; level ``l+1`` clusters what level ``l`` left
unexplained (the residual ``x - centroid``). An item's ID is its ``L`` codes, coarse to fine,
so items that share a prefix are semantically close. Items whose ``L`` codes coincide (always the
case for identical texts) get a final digit, ``0, 1, 2, ...`` in item order, that makes every ID
unique; without collisions that digit is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from personarec.items.kmeans import kmeans


class RQKMeansConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    levels: int = Field(3, ge=1, le=8)
    codes: int = Field(64, ge=2, le=4096)
    niter: int = Field(25, ge=1, le=500)
    seed: int = 42


@dataclass
class CodebookStats:
    """How well the codebooks are used: the share of codes that any item got, per level."""

    codes_per_level: int
    utilisation: list[float] = field(default_factory=list)  # used codes / K, per level
    used_codes: list[int] = field(default_factory=list)
    perplexity: list[float] = field(default_factory=list)  # exp(entropy) of code usage, per level
    unique_prefixes: int = 0  # distinct L-code prefixes
    colliding_items: int = 0  # items sharing their L codes with another item (before the last digit)
    max_suffix: int = 0  # largest final digit
    collisions: int = 0  # duplicate full IDs after the final digit (0 by construction)
    relative_residual: list[float] = field(default_factory=list)  # ||residual|| / ||x|| after each level

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class RQKMeans:
    """``fit`` codebooks on embeddings; ``encode`` any vectors with them."""

    def __init__(self, config: RQKMeansConfig | None = None) -> None:
        self.config = config or RQKMeansConfig()
        self.codebooks: list[np.ndarray] = []

    @classmethod
    def from_config(cls, config: dict[str, Any] | RQKMeansConfig | None = None) -> Self:
        if isinstance(config, dict):
            config = RQKMeansConfig.model_validate(config)
        return cls(config)

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump()

    def fit(self, x: np.ndarray) -> Self:
        residual = np.array(x, dtype=np.float32, copy=True)
        self.codebooks = []
        for level in range(self.config.levels):
            centroids, codes = kmeans(
                residual, self.config.codes, niter=self.config.niter, seed=self.config.seed + 1000 * level
            )
            if len(centroids) < self.config.codes:  # fewer items than codes: pad with unused codes
                pad = np.zeros((self.config.codes - len(centroids), residual.shape[1]), dtype=np.float32)
                centroids = np.vstack([centroids, pad])
            self.codebooks.append(centroids)
            residual -= centroids[codes]
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes ``int32 [n, levels]`` (nearest centroid level by level, on the residual)."""
        if not self.codebooks:
            raise RuntimeError("RQKMeans.encode before fit")
        residual = np.array(x, dtype=np.float32, copy=True)
        out = np.empty((len(residual), len(self.codebooks)), dtype=np.int32)
        for level, centroids in enumerate(self.codebooks):
            codes = _nearest(residual, centroids)
            out[:, level] = codes
            residual -= centroids[codes]
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction: the sum of each level's centroid."""
        codes = np.asarray(codes)
        return sum(cb[codes[:, level]] for level, cb in enumerate(self.codebooks[: codes.shape[1]]))


def _nearest(x: np.ndarray, centroids: np.ndarray, block: int = 8192) -> np.ndarray:
    c_sq = (centroids.astype(np.float32) ** 2).sum(axis=1)
    out = np.empty(len(x), dtype=np.int32)
    for s in range(0, len(x), block):
        xb = x[s : s + block]
        out[s : s + block] = np.argmin(c_sq[None, :] - 2.0 * xb @ centroids.T, axis=1)
    return out


def add_uniqueness_digit(codes: np.ndarray) -> np.ndarray:
    """Append a column that numbers items with identical codes 0, 1, 2, ... (in item order)."""
    codes = np.asarray(codes, dtype=np.int32)
    n = len(codes)
    if n == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int32)
    order = np.lexsort((np.arange(n),) + tuple(codes[:, j] for j in range(codes.shape[1] - 1, -1, -1)))
    sorted_codes = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = np.any(sorted_codes[1:] != sorted_codes[:-1], axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    digit = np.empty(n, dtype=np.int32)
    digit[order] = np.arange(n) - group_start
    return np.hstack([codes, digit[:, None]])


def codebook_stats(codes: np.ndarray, ids: np.ndarray, k: int, x: np.ndarray | None = None, rq: RQKMeans | None = None) -> CodebookStats:
    stats = CodebookStats(codes_per_level=k)
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=k)
        p = counts[counts > 0] / counts.sum()
        stats.used_codes.append(int((counts > 0).sum()))
        stats.utilisation.append(round(float((counts > 0).sum()) / k, 4))
        stats.perplexity.append(round(float(np.exp(-(p * np.log(p)).sum())), 2))
    _, inverse, group_sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    stats.unique_prefixes = int(len(group_sizes))
    stats.colliding_items = int((group_sizes[np.asarray(inverse).ravel()] > 1).sum())
    stats.max_suffix = int(ids[:, -1].max()) if len(ids) else 0
    stats.collisions = int(len(ids) - len(np.unique(ids, axis=0)))
    if x is not None and rq is not None:
        norm = float(np.linalg.norm(x)) or 1.0
        residual = np.array(x, dtype=np.float32, copy=True)
        for level, cb in enumerate(rq.codebooks):
            residual -= cb[codes[:, level]]
            stats.relative_residual.append(round(float(np.linalg.norm(residual)) / norm, 4))
    return stats


def semantic_ids(x: np.ndarray, config: RQKMeansConfig | None = None) -> tuple[np.ndarray, RQKMeans, CodebookStats]:
    """Fit RQ-KMeans on ``x`` and return unique IDs ``int32 [n, levels + 1]``, the model, and stats."""
    rq = RQKMeans(config).fit(x)
    codes = rq.encode(x)
    ids = add_uniqueness_digit(codes)
    return ids, rq, codebook_stats(codes, ids, rq.config.codes, x, rq)
