"""The durable refresh queue: which users need a new persona, and which worker is on it.

The queue lives in the store (a SQLite table or Redis structures) so that it survives restarts
and is shared by the API and every worker process. Semantics:

- **de-duplicated per user**: one job per user, whatever the number of events;
- **debounced**: each event batch pushes the job's due time to ``now + debounce_s`` (a burst of
  events -> one refresh after a quiet period), capped at ``max_wait_s`` after the first pending
  event so a user who never stops clicking is still refreshed;
- **priority**: users with no persona at all go first;
- **bounded, with shedding**: at most ``max_depth`` jobs are queued or leased. When events arrive
  faster than personas can be written, a *new* job that finds the queue full is shed: its events
  are stored (none is lost) and the user keeps being served their current persona, marked stale
  (stale-while-revalidate). A user with no persona is never shed for one who has one: the job of a
  user with a persona that is due last is shed in its place. A shed refresh is scheduled again by
  the user's next event or stale read once there is room, and then covers every event since, so
  shedding delays a persona, it never loses what it would have contained. Counted in the store
  (``shed`` for events, ``shed_evicted``, ``shed_on_read`` for stale reads) and exported at
  ``/metrics`` with the queue depth and the age of the oldest job;
- **leases**: a worker claims a job for ``lease_s`` and renews it while working; if the worker
  dies, the lease expires and another worker claims the job again (at-least-once);
- **idempotent writes**: a persona's version is the ``seq`` of the last event it includes and the
  store never replaces a newer version, so processing a job twice is harmless.

This module holds the policy; the atomic primitives are the store's (``ServingStore``).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

import numpy as np

from personarec.personas.schema import Persona
from personarec.personas.store.base import EnqueueSpec, RefreshJob, ServingStore


class QueueConfig(BaseModel):
    """Timing of the refresh queue."""

    model_config = ConfigDict(extra="forbid")

    debounce_s: float = Field(2.0, ge=0.0, description="quiet period after the last event before a refresh")
    max_wait_s: float = Field(15.0, ge=0.0, description="a refresh starts at most this long after the first pending event")
    lease_s: float = Field(30.0, gt=0.0, description="a claimed job returns to the queue if not renewed within this time")
    max_attempts: int = Field(3, ge=1, description="failed attempts (LLM errors, crashes) before a job is dropped")
    retry_backoff_s: float = Field(5.0, ge=0.0, description="delay before retrying a failed job, doubled per attempt")
    poll_interval_s: float = Field(0.1, gt=0.0, description="how often an idle worker looks for work")
    max_depth: int | None = Field(
        10_000,
        ge=1,
        description="most refresh jobs queued or leased (None = unbounded); when full, new refreshes are shed "
        "(events are kept, the stale persona is served); size it as refresh throughput x the lag you accept",
    )


class RefreshQueue:
    """Policy over the store's queue primitives; cheap to create (no I/O in ``__init__``)."""

    def __init__(self, store: ServingStore, config: QueueConfig | None = None) -> None:
        self.store = store
        self.config = config or QueueConfig()

    def spec(self, now: float | None = None) -> EnqueueSpec:
        c = self.config
        return EnqueueSpec(
            debounce_s=c.debounce_s, max_wait_s=c.max_wait_s, now=time.time() if now is None else now, max_depth=c.max_depth
        )

    def push(self, user_id: str, *, base_len: int = 0, touch: bool = True) -> bool:
        """Schedule a refresh (``touch=False`` for stale reads: never delays an existing job)."""
        return self.store.enqueue(user_id, self.spec(), touch=touch, base_len=base_len)

    def claim(self, owner: str) -> RefreshJob | None:
        return self.store.claim(owner, self.config.lease_s, time.time())

    def renew(self, job: RefreshJob) -> bool:
        return self.store.renew(job, self.config.lease_s, time.time())

    def complete(self, job: RefreshJob, persona: Persona | None, stats: dict[str, float] | None = None) -> bool:
        return self.store.complete(job, persona, time.time(), stats)

    def fail(self, job: RefreshJob, stats: dict[str, float] | None = None) -> bool:
        """Retry later with exponential backoff; drop after ``max_attempts``. True if retried."""
        if job.attempts >= self.config.max_attempts:
            self.store.drop(job, stats)
            return False
        delay = self.config.retry_backoff_s * (2 ** (job.attempts - 1))
        self.store.release(job, time.time() + delay, stats)
        return True

    def stats(self) -> dict[str, float]:
        return self.store.queue_stats(time.time())


def refresh_count(users: np.ndarray, timestamps: np.ndarray, config: QueueConfig | None = None) -> int:
    """How many refreshes this queue's debounce runs for an event log if a worker is always free
    (capacity planning: the cost model turns a dataset's events into refreshes with it). A job
    fires at ``min(last event + debounce_s, first event + max_wait_s)``; a later event starts the
    next job. ``users``/``timestamps``: one entry per event, in any order."""
    c = config or QueueConfig()
    order = np.lexsort((timestamps, users))
    u, t = np.asarray(users)[order], np.asarray(timestamps, dtype=np.float64)[order]
    count, first, last, prev_user = 0, 0.0, 0.0, None
    for user, ts in zip(u.tolist(), t.tolist(), strict=True):
        if user != prev_user or ts >= min(last + c.debounce_s, first + c.max_wait_s):
            count, first, prev_user = count + 1, ts, user
        last = ts
    return count
