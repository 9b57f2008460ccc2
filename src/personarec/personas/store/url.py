"""The one parser of persona-store locations: ``sqlite:///path.db``, a bare path, ``redis://...``,
``parquet:///dir`` (a batch sink of parquet shards).

Every stage names its store by a string in config (``personas.store``, ``serve.store``); this type
turns it into a scheme, a normalised URL and (SQLite) a file, so the rule "a bare path is a SQLite
file in the run directory" lives in one place instead of ``"://" in url`` checks in every verb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from personarec.errors import ConfigError

if TYPE_CHECKING:
    from personarec.personas.store.base import PersonaStore


@dataclass(frozen=True)
class StoreURL:
    scheme: Literal["sqlite", "redis", "parquet"]
    url: str  # sqlite:////abs/path.db, parquet:////abs/dir (resolved: 4 slashes) or the redis URL as given
    path: Path | None = None  # the SQLite file or the parquet folder

    @classmethod
    def parse(cls, text: str | StoreURL, base_dir: str | Path | None = None) -> StoreURL:
        """A bare or relative SQLite path is resolved against ``base_dir`` (the run directory)."""
        if isinstance(text, StoreURL):
            return text
        text = str(text).strip()
        if text.startswith(("redis://", "rediss://")):
            return cls("redis", text)
        scheme = "sqlite"
        if text.startswith("sqlite:///"):
            text = text[len("sqlite:///") :]
        elif text.startswith("parquet:///"):
            scheme, text = "parquet", text[len("parquet:///") :]
        elif "://" in text or not text:
            raise ConfigError(
                f"unknown store URL {text!r}; use sqlite:///path.db, a file path, redis://host:port/0 or parquet:///dir"
            )
        if not text:
            raise ConfigError("store URL has no path")
        path = Path(text)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        path = path.resolve()
        return cls(scheme, f"{scheme}:///{path}", path)

    @property
    def name(self) -> str:
        """Short stable key: the file name of a SQLite store, the URL of a Redis one."""
        return self.path.name if self.path is not None else self.url

    def exists(self) -> bool:
        """Whether the store may hold data: a SQLite file exists; a Redis store is assumed to (only
        a connection could tell)."""
        return self.path.exists() if self.path is not None else True

    def open(self) -> PersonaStore:
        if self.scheme == "redis":
            from personarec.personas.store.redis import RedisStore

            return RedisStore(self.url)
        if self.scheme == "parquet":
            from personarec.personas.store.parquet import ParquetPersonaStore

            return ParquetPersonaStore(self.path)  # type: ignore[arg-type]
        from personarec.personas.store.sqlite import SQLiteStore

        return SQLiteStore(self.path)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.url
