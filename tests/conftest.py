"""Shared fixtures: the real datasets in ../shared/datasets (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from personarec.data.registry import shared_data_dir  # noqa: E402


def _dataset_dir(name: str, marker: str) -> Path:
    d = shared_data_dir() / name
    if not (d / marker).exists():
        pytest.skip(f"real dataset {name} not found at {d} (set PERSONAREC_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return _dataset_dir("ml-100k", "u.data")


@pytest.fixture(scope="session")
def ml_latest_small_dir() -> Path:
    return _dataset_dir("ml-latest-small", "ratings.csv")


@pytest.fixture(scope="session")
def ml100k(ml100k_dir):
    from personarec.data.movielens import load_ml100k

    return load_ml100k(ml100k_dir)


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    from personarec.data.splits import make_split

    return make_split(ml100k)
