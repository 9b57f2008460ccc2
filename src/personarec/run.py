"""The run directory: every artifact of a run in one folder, plus a manifest that says how it was made.

``manifest.json`` holds the resolved config, the dataset checksums, library versions, and one
entry per stage that ran (with its artifacts and wall time), so a run can be audited or redone.
"""

from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from personarec.config import RunConfig

TRACKED_LIBRARIES = (
    "personarec", "numpy", "polars", "pyarrow", "torch", "sentence-transformers", "transformers",
    "faiss-cpu", "scikit-learn", "llama-cpp-python", "peft", "fastapi", "redis", "pydantic",
)  # fmt: skip


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class RunDir:
    """A run's folder. Stages write artifacts under it and record themselves in the manifest."""

    def __init__(self, path: str | Path, config: RunConfig | None = None) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config
        if config is not None:
            self._update(config=json.loads(config.model_dump_json()), libraries=library_versions())

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text())
        return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "stages": {}}

    def _update(self, **fields: Any) -> None:
        m = self.manifest()
        m.update(fields)
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(m, indent=2, default=str))
        tmp.replace(self.manifest_path)

    def record(self, **fields: Any) -> None:
        """Set top-level manifest fields (e.g. the fingerprint of the persona store)."""
        self._update(**fields)

    def record_checksums(self, dataset: str, checksums: dict[str, str]) -> None:
        m = self.manifest()
        m.setdefault("datasets", {})[dataset] = checksums
        self._update(datasets=m["datasets"])

    @contextmanager
    def stage(self, name: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Time a stage and record it (with whatever it puts in the yielded dict)."""
        entry: dict[str, Any] = dict(info)
        start = time.perf_counter()
        yield entry
        entry["seconds"] = round(time.perf_counter() - start, 3)
        entry["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        m = self.manifest()
        m.setdefault("stages", {})[name] = entry
        self._update(stages=m["stages"])

    def file(self, *parts: str) -> Path:
        p = self.path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p
