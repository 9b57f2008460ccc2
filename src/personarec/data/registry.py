"""Dataset registry: a name -> how to find the files and how to read them.

Lookup order for the files: ``--data-dir`` if given; the shared offline copy
(``$PERSONAREC_SHARED_DATA`` or ``../shared/datasets`` next to the checkout); the user cache
(``$PERSONAREC_CACHE/datasets``, default ``~/.cache/personarec/datasets``); finally a
checksum-checked download when ``download`` is on (see :mod:`personarec.data.download`).

``tabular`` is the odd one out: its files are named by the ``[data.tabular]`` column mapping,
relative to ``--data-dir`` (or the working directory).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from personarec.data.parsing import ReadReport
from personarec.data.records import Dataset
from personarec.errors import DataError

Loader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's files live, how to fetch them, and which loader reads them."""

    name: str
    loader: Loader
    folder: str  # folder name under shared/ or the cache
    marker: str  # a file (or glob pattern) that must exist in the folder
    url: str | None = None  # official archive, for download
    md5: str | None = None  # official checksum of the archive (publisher's)
    sha256: str | None = None
    md5_url: str | None = None  # publisher's checksum file (``MD5 (x.zip) = ...``), when not pinned
    archive_root: str | None = None  # folder inside the archive
    takes_options: bool = False  # loader reads the ``data.tabular`` mapping
    description: str = ""


def _has_marker(directory: Path, marker: str) -> bool:
    if any(ch in marker for ch in "*?["):
        return directory.is_dir() and any(directory.glob(marker))
    return (directory / marker).exists()


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
    if spec.takes_options:
        return Path(data_dir) if data_dir is not None else Path.cwd()
    if data_dir is not None:
        d = Path(data_dir)
        for candidate in (d, d / spec.folder):
            if _has_marker(candidate, spec.marker):
                return candidate
        found = sorted(p.name for p in d.iterdir()) if d.is_dir() else "(not a directory)"
        raise DataError(f"--data-dir {d} has no {spec.marker} (looked in {d} and {d / spec.folder}); found: {found}")
    for root in (shared_data_dir(), cache_dir() / "datasets"):
        if _has_marker(root / spec.folder, spec.marker):
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
    options: dict[str, Any] | None = None,
) -> Dataset:
    """Locate and load a registered dataset by name (``options``: the ``data.tabular`` mapping)."""
    spec = get_spec(name)
    directory = locate(name, data_dir, download)
    if spec.takes_options:
        return spec.loader(directory, skip_bad_rows=skip_bad_rows, report=report, options=options)
    return spec.loader(directory, skip_bad_rows=skip_bad_rows, report=report)


def known_datasets() -> dict[str, str]:
    """Name -> one-line description, for ``--help`` and error messages."""
    _ensure_builtin()
    return {name: spec.description for name, spec in sorted(REGISTRY.items())}


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"


def _ensure_builtin() -> None:
    if REGISTRY:
        return
    from personarec.data import amazon, movielens, office, p5, tabular

    register(DatasetSpec(
        "ml-100k", movielens.load_ml100k, "ml-100k", "u.data",
        url=f"{_GROUPLENS}/ml-100k.zip", md5="0e33842e24a9c977be4e0107933c0723", archive_root="ml-100k",
        description="MovieLens 100K (u.data / u.item)",
    ))  # fmt: skip
    register(DatasetSpec(
        "ml-latest-small", movielens.load_ml_latest_small, "ml-latest-small", "ratings.csv",
        url=f"{_GROUPLENS}/ml-latest-small.zip", md5_url=f"{_GROUPLENS}/ml-latest-small.zip.md5",
        archive_root="ml-latest-small", description="MovieLens latest-small (CSV)",
    ))  # fmt: skip
    register(DatasetSpec(
        "ml-1m", movielens.load_ml1m, "ml-1m", "ratings.dat",
        url=f"{_GROUPLENS}/ml-1m.zip", md5="c4d9eecfca2ab87c1945afe126590906", archive_root="ml-1m",
        description="MovieLens 1M (ratings.dat / movies.dat, '::'-separated)",
    ))  # fmt: skip
    for size, md5 in (("20m", "cd245b17a1ae2cc31bb14903e1204af3"), ("25m", "6b51fb2759a8657d3bfcbfc42b592ada"), ("32m", None)):
        name = f"ml-{size}"
        register(DatasetSpec(
            name, partial(movielens.load_ml_csv_release, name), name, "ratings.csv",
            url=f"{_GROUPLENS}/{name}.zip", md5=md5, md5_url=None if md5 else f"{_GROUPLENS}/{name}.zip.md5",
            archive_root=name, description=f"MovieLens {size.upper()} (CSV, same schema as latest-small)",
        ))  # fmt: skip
    register(DatasetSpec(
        "amazon", amazon.load_amazon, "amazon", "*.*",
        description="Amazon reviews 2018/2014: one ratings CSV or reviews JSON-lines file + optional meta_*.json "
        "(pass --data-dir; no published checksums, so no download)",
    ))  # fmt: skip
    for cat in ("beauty", "sports", "toys"):
        register(DatasetSpec(
            f"p5-{cat}", partial(p5.load_p5, name=f"p5-{cat}"), f"amazon-p5-{cat}", p5.SEQUENCE_FILE,
            description=f"P5 Amazon {cat} split (user_sequence.txt, timestamps = positions; item text from a "
            "RecBole *.item file next to it, e.g. Amazon_Beauty.item)",
        ))  # fmt: skip
    register(DatasetSpec(
        "amazon-office-2014", office.load_office, "amazon-office-2014", office.INDEX_FILE,
        description="Amazon 2014 Office Products 5-core (LRD's train/dev/test.csv; item text from Office.text: "
        "title, leaf category, brand)",
    ))  # fmt: skip
    register(DatasetSpec(
        "tabular", tabular.load_tabular, "", "", takes_options=True,
        description="any CSV/Parquet event log + catalogue, mapped by [data.tabular]",
    ))  # fmt: skip
