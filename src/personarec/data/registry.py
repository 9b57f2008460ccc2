"""Dataset registry: a name -> how to find the files and how to read them.

Lookup order for the files: ``--data-dir`` if given; the shared offline copy
(``$PERSONAREC_SHARED_DATA`` or ``../shared/datasets`` next to the checkout); the user cache
(``~/.cache/personarec/datasets``); finally a checksum-checked download when ``download`` is on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from personarec.data.parsing import ReadReport
from personarec.data.records import Dataset
from personarec.errors import DataError

Loader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Loader
    folder: str  # folder name under shared/ or the cache
    marker: str  # a file that must exist in the folder
    url: str | None = None  # official archive, for download
    md5: str | None = None  # official checksum of the archive (publisher's)
    sha256: str | None = None
    archive_root: str | None = None  # folder inside the archive


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec


def shared_data_dir() -> Path:
    env = os.environ.get("PERSONAREC_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "datasets"
        if (parent / "pyproject.toml").exists() and candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "datasets"


def cache_dir() -> Path:
    return Path(os.environ.get("PERSONAREC_CACHE", Path.home() / ".cache" / "personarec"))


def locate(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Return the directory holding ``name``'s files, downloading it if allowed and needed."""
    spec = get_spec(name)
    if data_dir is not None:
        d = Path(data_dir)
        for candidate in (d, d / spec.folder):
            if (candidate / spec.marker).exists():
                return candidate
        raise DataError(f"--data-dir {d} has no {spec.marker} (looked in {d} and {d / spec.folder})")
    for root in (shared_data_dir(), cache_dir() / "datasets"):
        if (root / spec.folder / spec.marker).exists():
            return root / spec.folder
    if not download or spec.url is None:
        raise DataError(
            f"dataset {name!r} not found locally (shared copy {shared_data_dir()}, cache {cache_dir()}) "
            + ("and downloading is off; pass --data-dir" if spec.url else "and it has no download URL; pass --data-dir")
        )
    from personarec.data.download import download_dataset

    return download_dataset(spec, cache_dir() / "datasets")


def get_spec(name: str) -> DatasetSpec:
    _ensure_builtin()
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
) -> Dataset:
    """Locate and load a registered dataset by name."""
    spec = get_spec(name)
    directory = locate(name, data_dir, download)
    return spec.loader(directory, skip_bad_rows=skip_bad_rows, report=report)


def _ensure_builtin() -> None:
    if REGISTRY:
        return
    from personarec.data import movielens

    register(DatasetSpec(
        "ml-100k", movielens.load_ml100k, "ml-100k", "u.data",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723", archive_root="ml-100k",
    ))  # fmt: skip
    register(DatasetSpec(
        "ml-latest-small", movielens.load_ml_latest_small, "ml-latest-small", "ratings.csv",
        url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip", archive_root="ml-latest-small",
    ))  # fmt: skip
