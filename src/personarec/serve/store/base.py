"""The persona store interface: SQLite (embedded default) and Redis (shared) implement it.

Personas are versioned by the last event they include; ``put`` with an older version than the
stored one is refused (returns False), so a slow refresh can never overwrite a newer persona.
User edits are stored apart from generated personas and applied on read, so they survive
refreshes. ``delete_user`` erases everything the store holds about a user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from personarec.errors import ConfigError
from personarec.personas.schema import Persona, PersonaEdits


class PersonaStore(ABC):
    """Where personas live between the batch/refresh workers and the request path."""

    @abstractmethod
    def get(self, user_id: str) -> Persona | None:
        """The latest generated persona (without user edits applied)."""

    @abstractmethod
    def put(self, persona: Persona) -> bool:
        """Store unless a persona with a newer ``version`` is already there. True if written."""

    @abstractmethod
    def get_edits(self, user_id: str) -> PersonaEdits | None: ...

    @abstractmethod
    def put_edits(self, user_id: str, edits: PersonaEdits) -> None: ...

    @abstractmethod
    def delete_user(self, user_id: str) -> bool:
        """Erase the user's persona, edits and anything else this store keeps about them."""

    @abstractmethod
    def user_ids(self) -> Iterator[str]: ...

    def __contains__(self, user_id: str) -> bool:
        return self.get(user_id) is not None

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def open_store(url: str) -> PersonaStore:
    """``sqlite:///path/to/file.db`` (or a bare path) -> SQLite; ``redis://host:port/db`` -> Redis."""
    if url.startswith("redis://") or url.startswith("rediss://"):
        from personarec.serve.store.redis import RedisStore

        return RedisStore(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    elif "://" in url:
        raise ConfigError(f"unknown store URL {url!r}; use sqlite:///path.db or redis://host:port/0")
    from personarec.serve.store.sqlite import SQLiteStore

    return SQLiteStore(url)
