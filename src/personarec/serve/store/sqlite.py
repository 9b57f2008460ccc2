"""SQLite persona store: the embedded default (one file, WAL mode, safe across processes).

Why SQLite: the API process and the refresh worker processes share one file without a server;
WAL lets readers (the request path) proceed while a worker writes. Every write is one
transaction, and the version guard is a single ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``
statement, so two concurrent refreshes can never let the older persona win.

Thread safety: one connection per thread (``threading.local``); connections are opened lazily so
an instance may be created before ``fork``/``spawn`` and reopened in the child.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from personarec.personas.schema import Persona, PersonaEdits
from personarec.serve.store.base import PersonaStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS personas (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data    TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS edits (
    user_id TEXT PRIMARY KEY,
    data    TEXT NOT NULL
);
"""


class SQLiteStore(PersonaStore):
    """Personas and user edits in one SQLite file (``path``; ``":memory:"`` is not supported
    because each thread needs its own connection to the same database)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.synchronous = synchronous
        self._local = threading.local()
        self._pid = os.getpid()
        self.conn.executescript(self.schema())

    # -- connection handling ------------------------------------------------------------------
    def schema(self) -> str:
        """DDL run once per open; subclasses (events, queue) extend it."""
        return SCHEMA

    @property
    def conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or self._pid != os.getpid():
            self._pid = os.getpid()
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={self.synchronous}")
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            self._local.con = con
        return con

    @contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; ``BEGIN IMMEDIATE`` takes the write lock up front so read-then-write
        sequences cannot interleave with another process's writes."""
        con = self.conn
        con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- personas -------------------------------------------------------------------------------
    def get(self, user_id: str) -> Persona | None:
        row = self.conn.execute("SELECT data FROM personas WHERE user_id = ?", (user_id,)).fetchone()
        return Persona.model_validate_json(row[0]) if row else None

    def put(self, persona: Persona) -> bool:
        with self._tx() as con:
            return self._put(con, persona)

    @staticmethod
    def _put(con: sqlite3.Connection, persona: Persona) -> bool:
        # Equal versions overwrite (an idempotent re-run, or an LLM persona replacing a fallback
        # built from the same history); older versions never do.
        cur = con.execute(
            "INSERT INTO personas (user_id, version, data, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(user_id) DO UPDATE SET version = excluded.version, data = excluded.data, "
            "updated_at = excluded.updated_at WHERE excluded.version >= personas.version",
            (persona.user_id, persona.version, persona.model_dump_json(), time.time()),
        )
        return cur.rowcount > 0

    def get_edits(self, user_id: str) -> PersonaEdits | None:
        row = self.conn.execute("SELECT data FROM edits WHERE user_id = ?", (user_id,)).fetchone()
        return PersonaEdits.model_validate_json(row[0]) if row else None

    def put_edits(self, user_id: str, edits: PersonaEdits) -> None:
        with self._tx() as con:
            con.execute(
                "INSERT INTO edits (user_id, data) VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE SET data = excluded.data",
                (user_id, edits.model_dump_json()),
            )

    def delete_user(self, user_id: str) -> bool:
        with self._tx() as con:
            return self._delete(con, user_id)

    def _delete(self, con: sqlite3.Connection, user_id: str) -> bool:
        n = con.execute("DELETE FROM personas WHERE user_id = ?", (user_id,)).rowcount
        n += con.execute("DELETE FROM edits WHERE user_id = ?", (user_id,)).rowcount
        return n > 0

    def user_ids(self) -> Iterator[str]:
        rows = self.conn.execute("SELECT user_id FROM personas ORDER BY user_id").fetchall()
        return iter([r[0] for r in rows])

    def __contains__(self, user_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM personas WHERE user_id = ?", (user_id,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM personas").fetchone()[0])
