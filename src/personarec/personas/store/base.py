"""The persona store interface: SQLite (embedded default) and Redis (shared) implement it.

Personas are versioned by the last event they include; ``put`` with an older version than the
stored one is refused (returns False), so a slow refresh can never overwrite a newer persona.
User edits are stored apart from generated personas and applied on read, so they survive
refreshes. ``delete_user`` erases everything the store holds about a user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from personarec.personas.schema import Persona, PersonaEdits

if TYPE_CHECKING:
    from personarec.personas.store.url import StoreURL


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

    def status(self, user_id: str) -> tuple[int, bool] | None:
        """``(version, fallback)`` of the stored persona, or None: all a resume check needs (a
        store that can answer without reading the persona text overrides it)."""
        p = self.get(user_id)
        return None if p is None else (p.version, p.provenance.fallback)

    def purge(self, *, wait: bool = True) -> None:  # noqa: B027 - optional hook
        """Make what ``delete_user`` removed unrecoverable from the store's files too (SQLite's WAL,
        Redis's append-only file), not just invisible to queries. ``wait=False`` may finish in the
        background. A store that erases in place (the parquet sink rewrites shards) needs nothing."""

    def erasures(self, since: float = 0.0) -> list[tuple[str, float]]:
        """``(user_id, erased_at)`` of every user erased at or after ``since`` (Unix seconds): what a
        holder of an export made before ``since`` must delete from its copy. Oldest first."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


@dataclass(frozen=True)
class StoredEvent:
    """One acknowledged interaction; ``seq`` numbers a user's events 1, 2, ... after the base
    (offline) history, so a persona's ``version`` is the ``seq`` of the last event it includes."""

    seq: int
    item_id: str
    timestamp: int
    rating: float | None = None


@dataclass(frozen=True)
class UserState:
    """What the store knows about a user besides the persona: ``last_seq`` (0 = nothing yet),
    ``base_len`` (events that came from the offline history), ``epoch`` (bumped by erasure so
    in-flight refreshes of the erased user are discarded) and ``erased`` (the offline history
    must no longer be used for this user)."""

    last_seq: int = 0
    base_len: int = 0
    epoch: int = 0
    erased: bool = False


@dataclass(frozen=True)
class EnqueueSpec:
    """How an event batch schedules a refresh (see :mod:`personarec.serve.queue`).

    ``max_depth`` bounds the queue (queued + leased jobs; None = unbounded). A new job that finds
    the queue full is shed (counted as ``shed``; ``shed_on_read`` for a stale read's request),
    unless its user has no persona yet: then the job of a user who has one, not leased (or whose
    lease expired) and due last, is shed instead (``shed``, ``shed_evicted``; ties: the greatest
    user id). A job that already exists for the user is always updated (coalescing never grows
    the queue).
    """

    debounce_s: float
    max_wait_s: float
    now: float
    max_depth: int | None = None


@dataclass(frozen=True)
class AppendResult:
    """What ``append_events`` did: the user's last ``seq`` and whether a refresh is now queued
    (False when none was asked for, or when the bounded queue shed it)."""

    last_seq: int
    refresh_queued: bool


@dataclass(frozen=True)
class RefreshJob:
    """A claimed refresh: rebuild ``user_id``'s persona from events up to ``target_seq``."""

    user_id: str
    target_seq: int
    epoch: int
    owner: str
    lease_until: float
    attempts: int
    first_at: float  # when the oldest event not yet in a persona was acknowledged
    priority: int


class ServingStore(PersonaStore):
    """A persona store that also keeps events, the refresh queue and counters, so that the API
    and the worker processes share exactly one durable place (SQLite file or Redis).

    Operations that must not interleave (append + enqueue, claim, complete + persona write,
    erasure) are single atomic operations of the backend (one SQL transaction / one Lua script).
    """

    # -- events ---------------------------------------------------------------------------------
    @abstractmethod
    def append_events(
        self,
        user_id: str,
        events: Sequence[tuple[str, int, float | None]],
        *,
        base_len: int,
        enqueue: EnqueueSpec | None,
    ) -> AppendResult:
        """Store ``(item_id, timestamp, rating)`` events durably and (optionally) schedule a
        refresh, atomically. ``base_len`` is the user's offline history length, used only the
        first time a user is seen (and ignored after an erasure). The events are stored even when
        the bounded queue sheds the refresh: a later event or stale read schedules it again."""

    @abstractmethod
    def events(self, user_id: str, after_seq: int = 0) -> list[StoredEvent]:
        """The user's stored events with ``seq > after_seq``, oldest first."""

    @abstractmethod
    def user_state(self, user_id: str) -> UserState | None:
        """None for a user the store has never seen."""

    # -- refresh queue primitives (policy lives in serve/queue.py) ------------------------------
    @abstractmethod
    def enqueue(self, user_id: str, spec: EnqueueSpec, *, touch: bool = True, base_len: int = 0) -> bool:
        """Schedule a refresh up to the user's ``last_seq``; de-duplicated per user. ``touch``
        re-arms the debounce of an existing job; without it an existing job is left alone.
        Returns True if a job is now queued or leased for the user (False: shed, queue full)."""

    @abstractmethod
    def claim(self, owner: str, lease_s: float, now: float) -> RefreshJob | None:
        """Lease the most urgent due job (users without a persona first, then by due time);
        jobs whose lease expired are claimable again."""

    @abstractmethod
    def renew(self, job: RefreshJob, lease_s: float, now: float) -> bool:
        """Extend a lease still held by ``job.owner``."""

    @abstractmethod
    def complete(self, job: RefreshJob, persona: Persona | None, now: float, stats: dict[str, float] | None = None) -> bool:
        """Write ``persona`` (version-guarded, skipped if the user was erased since the claim),
        add ``stats`` to the counters and finish the job: it is removed unless newer events
        arrived meanwhile, in which case it is released for another round. Returns True if the
        persona was written."""

    @abstractmethod
    def release(self, job: RefreshJob, retry_at: float, stats: dict[str, float] | None = None) -> None:
        """Give a job back after a failure; it becomes due again at ``retry_at``."""

    @abstractmethod
    def drop(self, job: RefreshJob, stats: dict[str, float] | None = None) -> None:
        """Remove a job that failed too often (a later event schedules a new one)."""

    @abstractmethod
    def queue_stats(self, now: float) -> dict[str, float]:
        """``depth`` (queued + leased jobs), ``leased`` (live leases), ``due`` (claimable now) and
        ``oldest_age_s`` (seconds since the oldest job's first pending event; 0 when empty)."""

    @abstractmethod
    def queued_job(self, user_id: str) -> dict[str, float] | None:
        """The user's queued/leased job as a dict (for tests and the erasure check)."""

    # -- worker liveness ------------------------------------------------------------------------------
    @abstractmethod
    def heartbeat(self, worker_id: str, until: float) -> None:
        """Record that ``worker_id`` is alive until ``until`` (unix seconds); ``until=0`` removes
        it (a clean stop). A worker that dies stops beating and drops out once ``until`` passes,
        so the count stays right for a fleet on one store, crashes included."""

    @abstractmethod
    def live_workers(self, now: float) -> int:
        """Workers whose last heartbeat has not expired at ``now``."""

    # -- counters ---------------------------------------------------------------------------------
    @abstractmethod
    def incr_stats(self, stats: dict[str, float]) -> None: ...

    @abstractmethod
    def stats(self) -> dict[str, float]: ...


def is_store_outage(exc: BaseException) -> bool:
    """True for errors that mean the store is unreachable or busy (retry later, answer 503), not a
    bug: SQLite's locked/unable-to-open errors, Redis connection and timeout errors, OS errors."""
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):  # a bad statement is an OperationalError too: a bug
        return any(m in str(exc).lower() for m in ("locked", "busy", "unable to open", "disk i/o", "readonly"))
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError))


def is_store_full(exc: BaseException) -> bool:
    """True when the store's disk (or quota) is full: the write was refused and nothing of it
    stored; the operator must free space (answered 507, not retried blindly)."""
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
        return True
    try:
        import redis
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(("OOM", "MISCONF"))


def open_store(url: str | StoreURL) -> PersonaStore:
    """``sqlite:///path/to/file.db`` (or a bare path) -> SQLite; ``redis://host:port/db`` -> Redis;
    ``parquet:///dir`` -> a parquet sink (batch output only)."""
    from personarec.personas.store.url import StoreURL

    return StoreURL.parse(url).open()


def open_serving_store(url: str | StoreURL) -> ServingStore:
    """The store of the API and refresh workers: SQLite or Redis (events, queue, counters)."""
    from personarec.errors import ConfigError

    store = open_store(url)
    if not isinstance(store, ServingStore):
        store.close()
        raise ConfigError(f"store {url}: serving needs sqlite:///file.db or redis://host:port/0, not a parquet sink")
    return store
