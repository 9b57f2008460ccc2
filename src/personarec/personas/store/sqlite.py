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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from personarec.personas.schema import Persona, PersonaEdits
from personarec.personas.store.base import AppendResult, EnqueueSpec, RefreshJob, ServingStore, StoredEvent, UserState

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
CREATE TABLE IF NOT EXISTS users (
    user_id  TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    base_len INTEGER NOT NULL,
    epoch    INTEGER NOT NULL DEFAULT 0,
    erased   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS erasures (
    user_id   TEXT PRIMARY KEY,
    erased_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    user_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    ts      INTEGER NOT NULL,
    rating  REAL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refresh_queue (
    user_id     TEXT PRIMARY KEY,
    target_seq  INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    due_at      REAL NOT NULL,
    first_at    REAL NOT NULL,
    next_first_at REAL,
    owner       TEXT,
    lease_until REAL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS refresh_queue_order ON refresh_queue (priority, due_at);
CREATE TABLE IF NOT EXISTS workers (
    worker_id  TEXT PRIMARY KEY,
    seen_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    name  TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""

_JOB_COLUMNS = "user_id, target_seq, epoch, owner, lease_until, attempts, first_at, priority"


class SQLiteStore(ServingStore):
    """Personas, edits, events, the refresh queue and counters in one SQLite file (``path``; ``":memory:"`` is not supported
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
            # deleted rows are overwritten with zeros, not left in free pages (erasure, see purge)
            con.execute("PRAGMA secure_delete=ON")
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
        n = 0
        for table in ("personas", "edits", "events", "refresh_queue"):
            n += con.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,)).rowcount
        # A tombstone (id + erased flag, nothing else) so the offline history is not served again
        # and refreshes that were in flight when the user was erased are discarded (epoch + 1).
        cur = con.execute(
            "UPDATE users SET last_seq = 0, base_len = 0, epoch = epoch + 1, erased = 1 WHERE user_id = ?", (user_id,)
        )
        if cur.rowcount == 0:
            con.execute("INSERT INTO users (user_id, last_seq, base_len, epoch, erased) VALUES (?, 0, 0, 1, 1)", (user_id,))
        con.execute(
            "INSERT INTO erasures (user_id, erased_at) VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE SET erased_at = excluded.erased_at",
            (user_id, time.time()),
        )
        return n > 0

    def purge(self, *, wait: bool = True) -> None:
        """Checkpoint the WAL into the (secure-deleted) main file and truncate it: until then the
        WAL still holds the page images of the erased rows. A reader holding an old snapshot makes
        the checkpoint incomplete; it is retried for up to the busy timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if busy:
            raise sqlite3.OperationalError(f"{self.path}: WAL checkpoint blocked by readers for {self.timeout_s} s")

    def erasures(self, since: float = 0.0) -> list[tuple[str, float]]:
        rows = self.conn.execute(
            "SELECT user_id, erased_at FROM erasures WHERE erased_at >= ? ORDER BY erased_at, user_id", (since,)
        ).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def user_ids(self) -> Iterator[str]:
        rows = self.conn.execute("SELECT user_id FROM personas ORDER BY user_id").fetchall()
        return iter([r[0] for r in rows])

    def __contains__(self, user_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM personas WHERE user_id = ?", (user_id,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM personas").fetchone()[0])

    # -- events -----------------------------------------------------------------------------------
    def _ensure_user(self, con: sqlite3.Connection, user_id: str, base_len: int) -> UserState:
        row = con.execute("SELECT last_seq, base_len, epoch, erased FROM users WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            con.execute("INSERT INTO users (user_id, last_seq, base_len) VALUES (?, ?, ?)", (user_id, base_len, base_len))
            return UserState(last_seq=base_len, base_len=base_len)
        return UserState(last_seq=row[0], base_len=row[1], epoch=row[2], erased=bool(row[3]))

    def append_events(
        self,
        user_id: str,
        events: Sequence[tuple[str, int, float | None]],
        *,
        base_len: int,
        enqueue: EnqueueSpec | None,
    ) -> AppendResult:
        with self._tx() as con:
            state = self._ensure_user(con, user_id, base_len)
            first = state.last_seq + 1
            con.executemany(
                "INSERT INTO events (user_id, seq, item_id, ts, rating) VALUES (?, ?, ?, ?, ?)",
                [(user_id, first + i, item, int(ts), rating) for i, (item, ts, rating) in enumerate(events)],
            )
            last = state.last_seq + len(events)
            con.execute("UPDATE users SET last_seq = ? WHERE user_id = ?", (last, user_id))
            queued = False
            if enqueue is not None and events:
                queued = self._enqueue(con, user_id, enqueue, touch=True, base_len=base_len)
            return AppendResult(last_seq=last, refresh_queued=queued)

    def events(self, user_id: str, after_seq: int = 0) -> list[StoredEvent]:
        rows = self.conn.execute(
            "SELECT seq, item_id, ts, rating FROM events WHERE user_id = ? AND seq > ? ORDER BY seq",
            (user_id, after_seq),
        ).fetchall()
        return [StoredEvent(seq=r[0], item_id=r[1], timestamp=r[2], rating=r[3]) for r in rows]

    def user_state(self, user_id: str) -> UserState | None:
        row = self.conn.execute(
            "SELECT last_seq, base_len, epoch, erased FROM users WHERE user_id = ?", (user_id,)
        ).fetchone()
        return None if row is None else UserState(last_seq=row[0], base_len=row[1], epoch=row[2], erased=bool(row[3]))

    # -- refresh queue ----------------------------------------------------------------------------
    def enqueue(self, user_id: str, spec: EnqueueSpec, *, touch: bool = True, base_len: int = 0) -> bool:
        with self._tx() as con:
            return self._enqueue(con, user_id, spec, touch=touch, base_len=base_len)

    def _enqueue(self, con: sqlite3.Connection, user_id: str, spec: EnqueueSpec, *, touch: bool, base_len: int) -> bool:
        state = self._ensure_user(con, user_id, base_len)
        has_persona = con.execute("SELECT 1 FROM personas WHERE user_id = ?", (user_id,)).fetchone() is not None
        priority = 1 if has_persona else 0
        if not self._admit(con, user_id, priority, spec, touch):
            return False
        due = spec.now + min(spec.debounce_s, spec.max_wait_s)
        # Debounce: each new event pushes the refresh back by debounce_s, but never past
        # max_wait_s after the first pending event (a steady stream cannot starve a user).
        # Without ``touch`` (a stale read) an existing job keeps its due time.
        due_expr = "MIN(refresh_queue.first_at + ?, excluded.due_at)" if touch else "refresh_queue.due_at"
        params: list = [user_id, state.last_seq, state.epoch, priority, due, spec.now]
        if touch:
            params.append(spec.max_wait_s)
        params.append(spec.now)
        con.execute(
            "INSERT INTO refresh_queue (user_id, target_seq, epoch, priority, due_at, first_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET "
            "target_seq = MAX(refresh_queue.target_seq, excluded.target_seq), epoch = excluded.epoch, "
            "priority = MIN(refresh_queue.priority, excluded.priority), "
            f"due_at = {due_expr}, "
            "next_first_at = CASE WHEN refresh_queue.owner IS NOT NULL AND excluded.target_seq > refresh_queue.target_seq "
            "AND refresh_queue.next_first_at IS NULL THEN ? ELSE refresh_queue.next_first_at END",
            params,
        )
        return True

    def _admit(self, con: sqlite3.Connection, user_id: str, priority: int, spec: EnqueueSpec, touch: bool) -> bool:
        """The bounded queue's admission rule (see ``EnqueueSpec``); counts what it sheds
        (``shed`` for an event, ``shed_on_read`` for a stale read). A job whose lease expired
        counts as queued, hence evictable; ties go to the greatest user id (as Redis does)."""
        if spec.max_depth is None or con.execute("SELECT 1 FROM refresh_queue WHERE user_id = ?", (user_id,)).fetchone():
            return True
        if con.execute("SELECT COUNT(*) FROM refresh_queue").fetchone()[0] < spec.max_depth:
            return True
        victim = None
        if priority == 0:
            victim = con.execute(
                "SELECT user_id FROM refresh_queue WHERE priority = 1 AND (owner IS NULL OR lease_until < ?) "
                "ORDER BY due_at DESC, user_id DESC LIMIT 1",
                (spec.now,),
            ).fetchone()
        if victim is None:
            self._incr(con, {"shed" if touch else "shed_on_read": 1.0})
            return False
        con.execute("DELETE FROM refresh_queue WHERE user_id = ?", (victim[0],))
        self._incr(con, {"shed": 1.0, "shed_evicted": 1.0})
        return True

    def claim(self, owner: str, lease_s: float, now: float) -> RefreshJob | None:
        with self._tx() as con:
            row = con.execute(
                "SELECT user_id FROM refresh_queue WHERE due_at <= ? AND (owner IS NULL OR lease_until < ?) "
                "ORDER BY priority, due_at LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            job = con.execute(
                # this claim covers every event so far, including any from an earlier, expired lease
                "UPDATE refresh_queue SET owner = ?, lease_until = ?, attempts = attempts + 1, next_first_at = NULL "
                "WHERE user_id = ? "
                f"RETURNING {_JOB_COLUMNS}",
                (owner, now + lease_s, row[0]),
            ).fetchone()
        return RefreshJob(*job)

    def renew(self, job: RefreshJob, lease_s: float, now: float) -> bool:
        with self._tx() as con:
            cur = con.execute(
                "UPDATE refresh_queue SET lease_until = ? WHERE user_id = ? AND owner = ?",
                (now + lease_s, job.user_id, job.owner),
            )
            return cur.rowcount > 0

    def _finish(self, con: sqlite3.Connection, job: RefreshJob, remove: bool, retry_at: float | None) -> None:
        row = con.execute(
            "SELECT owner, target_seq, next_first_at FROM refresh_queue WHERE user_id = ?", (job.user_id,)
        ).fetchone()
        if row is None or row[0] != job.owner:
            return  # erased, or the lease expired and another worker owns the job now
        if remove and row[1] <= job.target_seq:
            con.execute("DELETE FROM refresh_queue WHERE user_id = ?", (job.user_id,))
            return
        newer = row[1] > job.target_seq
        con.execute(
            "UPDATE refresh_queue SET owner = NULL, lease_until = NULL, "
            "attempts = CASE WHEN ? THEN 0 ELSE attempts END, "
            "first_at = CASE WHEN ? AND next_first_at IS NOT NULL THEN next_first_at ELSE first_at END, "
            "next_first_at = CASE WHEN ? THEN NULL ELSE next_first_at END, "
            "due_at = COALESCE(?, due_at) WHERE user_id = ?",
            (newer, newer, newer, retry_at, job.user_id),
        )

    def complete(self, job: RefreshJob, persona: Persona | None, now: float, stats: dict[str, float] | None = None) -> bool:
        with self._tx() as con:
            written = False
            state = con.execute("SELECT epoch FROM users WHERE user_id = ?", (job.user_id,)).fetchone()
            if persona is not None and state is not None and state[0] == job.epoch:
                written = self._put(con, persona)
            self._finish(con, job, remove=True, retry_at=None)
            self._incr(con, stats)
            return written

    def release(self, job: RefreshJob, retry_at: float, stats: dict[str, float] | None = None) -> None:
        with self._tx() as con:
            self._finish(con, job, remove=False, retry_at=retry_at)
            self._incr(con, stats)

    def drop(self, job: RefreshJob, stats: dict[str, float] | None = None) -> None:
        with self._tx() as con:
            self._finish(con, job, remove=True, retry_at=None)
            self._incr(con, stats)

    def queue_stats(self, now: float) -> dict[str, float]:
        row = self.conn.execute(
            "SELECT COUNT(*), "
            "COALESCE(SUM(owner IS NOT NULL AND lease_until >= ?), 0), "
            "COALESCE(SUM(due_at <= ? AND (owner IS NULL OR lease_until < ?)), 0), MIN(first_at) FROM refresh_queue",
            (now, now, now),
        ).fetchone()
        return {
            "depth": float(row[0]),
            "leased": float(row[1]),
            "due": float(row[2]),
            "oldest_age_s": max(0.0, now - row[3]) if row[3] is not None else 0.0,
        }

    def queued_job(self, user_id: str) -> dict[str, float] | None:
        cur = self.conn.execute(
            "SELECT target_seq, epoch, priority, due_at, first_at, owner, lease_until, attempts "
            "FROM refresh_queue WHERE user_id = ?",
            (user_id,),
        )
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    # -- worker liveness ------------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, until: float) -> None:
        with self._tx() as con:
            if until <= 0:
                con.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
                return
            con.execute(
                "INSERT INTO workers (worker_id, seen_until) VALUES (?, ?) "
                "ON CONFLICT(worker_id) DO UPDATE SET seen_until = excluded.seen_until",
                (worker_id, until),
            )
            con.execute("DELETE FROM workers WHERE seen_until < ?", (until - 86_400,))  # long-dead entries

    def live_workers(self, now: float) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM workers WHERE seen_until >= ?", (now,)).fetchone()[0])

    # -- counters ---------------------------------------------------------------------------------
    @staticmethod
    def _incr(con: sqlite3.Connection, stats: dict[str, float] | None) -> None:
        if stats:
            con.executemany(
                "INSERT INTO stats (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                list(stats.items()),
            )

    def incr_stats(self, stats: dict[str, float]) -> None:
        with self._tx() as con:
            self._incr(con, stats)

    def stats(self) -> dict[str, float]:
        return dict(self.conn.execute("SELECT name, value FROM stats").fetchall())
