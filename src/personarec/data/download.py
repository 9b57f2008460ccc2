"""Download an official dataset archive, verify its checksum, unpack it into the cache.

The archive is streamed to a temporary file next to its destination (never held in memory),
hashed while it streams, and compared with the publisher's md5 / sha256 from the
:class:`~personarec.data.registry.DatasetSpec` (or the publisher's ``.md5`` file). A mismatch
deletes the file and raises :class:`DataError`: nothing unverified is ever unpacked. Unpacking
goes to a temporary folder that is renamed into place, so an interrupted run leaves no half
dataset behind.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from personarec.errors import DataError

if TYPE_CHECKING:
    from personarec.data.registry import DatasetSpec

CHUNK = 1 << 20


def fetch_published_md5(url: str, archive_name: str, *, timeout: float = 30.0) -> str:
    """Parse a publisher checksum file: ``MD5 (name) = hex`` (BSD) or ``hex  name`` (GNU)."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DataError(f"cannot fetch the published checksum {url}: {exc}") from None
    lines = response.text.splitlines()
    for line in [ln for ln in lines if archive_name in ln] or lines:
        match = re.search(r"\b([0-9a-fA-F]{32})\b", line)
        if match:
            return match.group(1).lower()
    raise DataError(f"no md5 for {archive_name} in {url}")


def stream_to_file(url: str, dest: Path, *, timeout: float = 60.0, show_progress: bool = True) -> dict[str, str]:
    """Stream ``url`` into ``dest`` with a progress bar; returns its md5 and sha256."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0) or None
            progress = None
            if show_progress:
                from personarec.cli_common import progress as make_progress

                progress = make_progress()
                progress.start()
                task = progress.add_task(f"download {dest.name}", total=total)
            try:
                with open(dest, "wb") as fh:
                    for block in response.iter_bytes(CHUNK):
                        fh.write(block)
                        md5.update(block)
                        sha256.update(block)
                        if progress is not None:
                            progress.update(task, advance=len(block))
            finally:
                if progress is not None:
                    progress.stop()
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: {exc}") from None
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def verify(digests: dict[str, str], *, md5: str | None, sha256: str | None, what: str) -> None:
    expected = {k: v.lower() for k, v in (("md5", md5), ("sha256", sha256)) if v}
    if not expected:
        raise DataError(f"{what}: no published checksum to verify the download against; refusing to use it")
    for algo, value in expected.items():
        if digests[algo] != value:
            raise DataError(f"{what}: {algo} mismatch (expected {value}, got {digests[algo]}); the file was removed")


def _safe_members(names: list[str], into: Path) -> None:
    root = into.resolve()
    for name in names:
        target = (into / name).resolve()
        if root != target and root not in target.parents:
            raise DataError(f"archive member {name!r} would be written outside {into}")


def unpack(archive: Path, into: Path) -> None:
    """Unpack a zip or tar(.gz) archive, refusing members that escape ``into``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf.namelist(), into)
            zf.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            _safe_members(tf.getnames(), into)
            tf.extractall(into, filter="data")
    else:
        raise DataError(f"{archive.name}: not a zip or tar archive")


def download_dataset(
    spec: DatasetSpec, root: str | Path, *, timeout: float = 60.0, show_progress: bool = True
) -> Path:
    """Fetch ``spec.url`` into ``root/spec.folder`` (checksum-checked); returns that folder."""
    if spec.url is None:
        raise DataError(f"dataset {spec.name!r} has no download URL; pass --data-dir")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / spec.folder
    if target.exists() and (target / spec.marker).exists():
        return target
    archive_name = spec.url.rsplit("/", 1)[-1] or f"{spec.name}.archive"
    md5 = spec.md5
    if md5 is None and spec.sha256 is None and spec.md5_url:
        md5 = fetch_published_md5(spec.md5_url, archive_name, timeout=timeout)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{spec.folder}.") as tmp:
        tmp_dir = Path(tmp)
        archive = tmp_dir / archive_name
        digests = stream_to_file(spec.url, archive, timeout=timeout, show_progress=show_progress)
        try:
            verify(digests, md5=md5, sha256=spec.sha256, what=f"{spec.url}")
        except DataError:
            archive.unlink(missing_ok=True)
            raise
        unpacked = tmp_dir / "unpacked"
        unpacked.mkdir()
        unpack(archive, unpacked)
        archive.unlink()
        source = unpacked / spec.archive_root if spec.archive_root else unpacked
        if not (source / spec.marker).exists():
            raise DataError(f"{archive_name} has no {spec.archive_root or '.'}/{spec.marker}")
        if target.exists():
            shutil.rmtree(target)
        source.rename(target)
    return target
