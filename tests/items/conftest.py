"""Item-space fixtures: ML-100k embedded once per session into a temporary embedding cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from personarec.items.config import ItemsConfig

SEED = 7


@pytest.fixture(scope="session")
def items_cache(request, tmp_path_factory) -> Path:
    """A private embedding cache root; tests never touch ~/.cache.

    It lives in pytest's own cache folder (``.pytest_cache``, reset by ``--cache-clear``) so that
    repeated runs on a busy 2-core machine do not re-embed ML-100k; a fresh checkout starts cold.
    Tests that need a cold cache use ``tmp_path``.
    """
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("personarec-embeddings"))
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def items_config() -> ItemsConfig:
    return ItemsConfig(seed=SEED)


@pytest.fixture(scope="session")
def ml100k_space(ml100k_split, items_config, items_cache):
    """The full item space of ML-100k (embeds 1,664 distinct texts once: seconds on 2 cores)."""
    from personarec.items.build import build_item_space

    return build_item_space(ml100k_split, items_config, cache_dir=items_cache, show_progress=False)
