"""The ServingStore contract, run against every implementation (SQLite file, real Redis).

Times are passed explicitly (``now``), so lease expiry and debouncing are tested without sleeping.
"""

from __future__ import annotations

from personarec.personas.schema import PersonaEdits
from personarec.serve.queue import QueueConfig, RefreshQueue
from personarec.personas.store.base import AppendResult, EnqueueSpec
from tests.serve.personas_fixtures import make_persona

T0 = 1_700_000_000.0


def spec(now: float, debounce: float = 2.0, max_wait: float = 10.0, max_depth: int | None = None) -> EnqueueSpec:
    return EnqueueSpec(debounce_s=debounce, max_wait_s=max_wait, now=now, max_depth=max_depth)


def ev(*items: str):
    return [(it, 100 + i, 4.0 if i % 2 else None) for i, it in enumerate(items)]


def test_version_guard(serving_store):
    s = serving_store
    assert s.put(make_persona("u", 5, summary="five"))
    assert not s.put(make_persona("u", 3, summary="three"))
    assert s.get("u").summary == "five"
    assert s.put(make_persona("u", 7))
    assert list(s.user_ids()) == ["u"] and "u" in s and len(s) == 1


def test_events_numbered_after_base_history(serving_store):
    s = serving_store
    assert s.append_events("u", ev("a", "b"), base_len=10, enqueue=None) == AppendResult(12, refresh_queued=False)
    assert s.append_events("u", ev("c"), base_len=10, enqueue=None).last_seq == 13
    got = s.events("u")
    assert [e.seq for e in got] == [11, 12, 13]
    assert [e.item_id for e in got] == ["a", "b", "c"]
    assert got[1].rating == 4.0 and got[0].rating is None and got[0].timestamp == 100
    assert [e.seq for e in s.events("u", after_seq=12)] == [13]
    st = s.user_state("u")
    assert (st.last_seq, st.base_len, st.erased) == (13, 10, False)
    assert s.user_state("nobody") is None and s.events("nobody") == []
    assert s.queued_job("u") is None  # no enqueue requested


def test_many_events_one_debounced_job(serving_store):
    s = serving_store
    for i in range(5):
        s.append_events("u", ev(f"i{i}"), base_len=0, enqueue=spec(T0 + i))
    job = s.queued_job("u")
    assert job["target_seq"] == 5
    assert job["due_at"] == T0 + 4 + 2.0  # pushed back by each event
    assert s.queue_stats(T0 + 5)["depth"] == 1
    assert s.claim("w1", 30, now=T0 + 5) is None  # still inside the quiet period
    got = s.claim("w1", 30, now=T0 + 6.5)
    assert got is not None and got.user_id == "u" and got.target_seq == 5 and got.first_at == T0


def test_debounce_capped_by_max_wait(serving_store):
    s = serving_store
    for i in range(20):
        s.append_events("u", ev("x"), base_len=0, enqueue=spec(T0 + i, debounce=2.0, max_wait=10.0))
    assert s.queued_job("u")["due_at"] == T0 + 10.0


def test_users_without_persona_first(serving_store):
    s = serving_store
    s.put(make_persona("old", 1))
    s.append_events("old", ev("a"), base_len=1, enqueue=spec(T0))
    s.append_events("new", ev("a"), base_len=0, enqueue=spec(T0 + 1))
    assert s.claim("w", 30, now=T0 + 100).user_id == "new"
    assert s.claim("w", 30, now=T0 + 100).user_id == "old"
    assert s.claim("w", 30, now=T0 + 100) is None


def test_lease_expiry_reclaim_and_idempotent_complete(serving_store):
    s = serving_store
    s.append_events("u", ev("a", "b"), base_len=0, enqueue=spec(T0, debounce=0))
    j1 = s.claim("w1", 5, now=T0 + 1)
    assert j1.attempts == 1
    assert s.queue_stats(T0 + 2) == {"depth": 1.0, "leased": 1.0, "due": 0.0, "oldest_age_s": 2.0}
    assert s.claim("w2", 5, now=T0 + 3) is None  # leased
    assert s.renew(j1, 5, now=T0 + 4)  # now leased until T0 + 9
    assert s.claim("w2", 5, now=T0 + 8) is None
    j2 = s.claim("w2", 5, now=T0 + 10)  # w1 presumed dead
    assert j2 is not None and j2.owner == "w2" and j2.attempts == 2
    assert not s.renew(j1, 5, now=T0 + 10)
    # the presumed-dead worker finishes late: its persona is valid (same history) but the job
    # stays with w2; w2's identical write is accepted again (equal version), then the job is gone
    assert s.complete(j1, make_persona("u", 2, summary="w1"), now=T0 + 11)
    assert s.queued_job("u") is not None
    assert s.complete(j2, make_persona("u", 2, summary="w2"), now=T0 + 12)
    assert s.queued_job("u") is None and s.get("u").summary == "w2"


def test_events_during_refresh_release_job_for_another_round(serving_store):
    s = serving_store
    s.append_events("u", ev("a"), base_len=0, enqueue=spec(T0, debounce=0))
    job = s.claim("w", 30, now=T0 + 1)
    s.append_events("u", ev("b"), base_len=0, enqueue=spec(T0 + 2, debounce=1))
    assert s.complete(job, make_persona("u", job.target_seq), now=T0 + 3)
    left = s.queued_job("u")
    assert left is not None and left["target_seq"] == 2 and left["owner"] is None
    assert left["first_at"] == T0 + 2  # the lag of the newer event counts from its arrival
    again = s.claim("w", 30, now=T0 + 4)
    assert again.target_seq == 2 and again.attempts == 1
    assert s.complete(again, make_persona("u", 2), now=T0 + 5)
    assert s.queued_job("u") is None and s.get("u").version == 2


def test_stale_read_enqueue_does_not_delay(serving_store):
    s = serving_store
    s.append_events("u", ev("a"), base_len=0, enqueue=spec(T0, debounce=2))
    s.enqueue("u", spec(T0 + 1, debounce=2), touch=False)
    assert s.queued_job("u")["due_at"] == T0 + 2
    # a user known only from the offline history: the job is created with that base length
    assert s.enqueue("offline", spec(T0), touch=False, base_len=7)
    assert s.queued_job("offline")["target_seq"] == 7


def test_delete_user_erases_everything_and_discards_inflight(serving_store):
    s = serving_store
    s.put(make_persona("u", 3))
    s.put_edits("u", PersonaEdits(blocked_topics=["x"]))
    s.append_events("u", ev("a", "b"), base_len=3, enqueue=spec(T0, debounce=0))
    job = s.claim("w", 30, now=T0 + 1)
    s.append_events("v", ev("a"), base_len=0, enqueue=spec(T0, debounce=0))
    assert s.delete_user("u")
    assert s.get("u") is None and s.get_edits("u") is None and s.events("u") == [] and s.queued_job("u") is None
    st = s.user_state("u")
    assert st.erased and st.last_seq == 0 and st.base_len == 0
    assert not s.complete(job, make_persona("u", 5), now=T0 + 2)  # in-flight refresh discarded
    assert s.get("u") is None and "u" not in set(s.user_ids())
    assert s.queue_stats(T0 + 3)["depth"] == 1  # v's job untouched
    # new events after erasure start a fresh history, without the offline one
    assert s.append_events("u", ev("c"), base_len=3, enqueue=None).last_seq == 1


def test_queue_policy_backoff_and_drop(serving_store):
    s = serving_store
    q = RefreshQueue(s, QueueConfig(debounce_s=0, lease_s=30, max_attempts=2, retry_backoff_s=100))
    s.append_events("u", ev("a"), base_len=0, enqueue=q.spec())
    job = q.claim("w")
    assert q.fail(job, {"llm_errors": 1})
    assert q.claim("w") is None  # backing off for 100 s
    assert s.queued_job("u")["due_at"] > job.lease_until - 30 + 99
    import time

    again = s.claim("w", 30, now=time.time() + 200)
    assert again.attempts == 2
    assert not q.fail(again, {"llm_errors": 1})  # dropped
    assert s.queued_job("u") is None
    assert s.stats()["llm_errors"] == 2


def test_stats_counters(serving_store):
    s = serving_store
    s.incr_stats({"a": 1, "b": 0.5})
    s.incr_stats({"a": 2})
    assert s.stats() == {"a": 3.0, "b": 0.5}


def test_bounded_queue_sheds_new_jobs_but_keeps_events_and_coalesces(serving_store):
    s = serving_store
    for i, u in enumerate(["a", "b"]):
        s.put(make_persona(u, 1))
        assert s.append_events(u, ev("x"), base_len=1, enqueue=spec(T0 + i, max_depth=2)).refresh_queued
    s.put(make_persona("c", 1))
    shed = s.append_events("c", ev("x", "y"), base_len=1, enqueue=spec(T0 + 2, max_depth=2))
    assert shed == AppendResult(3, refresh_queued=False)  # stored, not queued
    assert [e.item_id for e in s.events("c")] == ["x", "y"] and s.queued_job("c") is None
    assert not s.enqueue("c", spec(T0 + 3, max_depth=2), touch=False)  # a stale read is shed too
    # an existing job is always updated: coalescing never grows the queue
    assert s.append_events("a", ev("z"), base_len=1, enqueue=spec(T0 + 4, max_depth=2)).refresh_queued
    assert s.queued_job("a")["target_seq"] == 3
    stats = s.queue_stats(T0 + 5)
    assert stats["depth"] == 2 and stats["oldest_age_s"] == 5.0
    assert s.stats() == {"shed": 1.0, "shed_on_read": 1.0}
    # room again: the shed user's next event schedules a refresh covering every stored event
    job = s.claim("w", 30, now=T0 + 100)
    s.complete(job, make_persona(job.user_id, job.target_seq), now=T0 + 101)
    assert s.append_events("c", ev("w"), base_len=1, enqueue=spec(T0 + 102, max_depth=2)).refresh_queued
    assert s.queued_job("c")["target_seq"] == 4


def test_bounded_queue_user_without_persona_evicts_latest_due(serving_store):
    s = serving_store
    for i, u in enumerate(["early", "late"]):
        s.put(make_persona(u, 1))
        s.append_events(u, ev("x"), base_len=1, enqueue=spec(T0 + i, debounce=0, max_depth=2))
    assert s.append_events("new", ev("x"), base_len=0, enqueue=spec(T0 + 2, debounce=0, max_depth=2)).refresh_queued
    assert s.queued_job("late") is None and s.queued_job("early") is not None
    assert s.stats() == {"shed": 1.0, "shed_evicted": 1.0}
    assert s.queue_stats(T0 + 3)["depth"] == 2
    # with only leased or persona-less jobs left, a new persona-less user is shed: the bound holds
    s.claim("w", 30, now=T0 + 3)  # the persona-less job goes first
    s.claim("w", 30, now=T0 + 3)
    assert not s.append_events("new2", ev("x"), base_len=0, enqueue=spec(T0 + 4, max_depth=2)).refresh_queued
    assert s.queue_stats(T0 + 5)["depth"] == 2 and s.stats()["shed"] == 2.0


def test_oldest_age_follows_the_oldest_pending_event(serving_store):
    s = serving_store
    assert s.queue_stats(T0)["oldest_age_s"] == 0.0
    s.append_events("u", ev("a"), base_len=0, enqueue=spec(T0, debounce=0))
    s.append_events("v", ev("a"), base_len=0, enqueue=spec(T0 + 5, debounce=0))
    assert s.queue_stats(T0 + 10)["oldest_age_s"] == 10.0
    job = s.claim("w", 30, now=T0 + 10)
    assert job.user_id == "u"
    s.append_events("u", ev("b"), base_len=0, enqueue=spec(T0 + 11, debounce=0))
    s.complete(job, make_persona("u", job.target_seq), now=T0 + 12)
    assert s.queue_stats(T0 + 12)["oldest_age_s"] == 7.0  # v (T0 + 5); u's newer event is from T0 + 11
    s.delete_user("v")
    assert s.queue_stats(T0 + 12)["oldest_age_s"] == 1.0


def test_bounded_queue_evicts_a_job_whose_lease_expired(serving_store):
    s = serving_store
    s.put(make_persona("p1", 1))
    s.append_events("p1", ev("x"), base_len=1, enqueue=spec(T0, debounce=0, max_depth=1))
    assert s.claim("w", 5, now=T0 + 1).user_id == "p1"  # leased until T0 + 6, then presumed dead
    assert not s.append_events("n1", ev("x"), base_len=0, enqueue=spec(T0 + 2, max_depth=1)).refresh_queued
    assert s.append_events("n2", ev("x"), base_len=0, enqueue=spec(T0 + 10, max_depth=1)).refresh_queued
    assert s.queued_job("p1") is None and s.stats() == {"shed": 2.0, "shed_evicted": 1.0}


def test_stale_read_refusals_are_counted_apart(serving_store):
    s = serving_store
    s.append_events("a", ev("x"), base_len=0, enqueue=spec(T0, max_depth=1))
    for i in range(3):
        assert not s.enqueue("b", spec(T0 + i, max_depth=1), touch=False, base_len=4)
    assert s.stats() == {"shed_on_read": 3.0}


def test_a_reclaim_after_an_expired_lease_covers_the_events_of_that_lease(serving_store):
    s = serving_store
    s.append_events("u", ev("a"), base_len=0, enqueue=spec(T0, debounce=0))
    s.claim("w1", 5, now=T0 + 1)
    s.append_events("u", ev("b"), base_len=0, enqueue=spec(T0 + 2, debounce=0))  # during w1's lease
    j2 = s.claim("w2", 30, now=T0 + 10)  # w1 presumed dead; w2 takes both events
    assert j2.target_seq == 2 and j2.first_at == T0
    s.append_events("u", ev("c"), base_len=0, enqueue=spec(T0 + 20, debounce=0))  # during w2's lease
    s.complete(j2, make_persona("u", 2), now=T0 + 21)
    left = s.queued_job("u")  # event c's round: its lag counts from c, not from b (which w2 covered)
    assert left["target_seq"] == 3 and left["first_at"] == T0 + 20 and s.queue_stats(T0 + 21)["oldest_age_s"] == 1.0


def test_worker_heartbeats_expire_and_a_clean_stop_leaves_at_once(serving_store):
    s = serving_store
    assert s.live_workers(T0) == 0
    s.heartbeat("host1-w0", T0 + 20)
    s.heartbeat("host2-w0", T0 + 20)
    s.heartbeat("host2-w0", T0 + 40)  # beats again
    assert s.live_workers(T0 + 10) == 2
    assert s.live_workers(T0 + 30) == 1  # host1-w0 stopped beating (killed): it drops out
    s.heartbeat("host2-w0", 0.0)  # clean stop
    assert s.live_workers(T0 + 10) == 1 and s.live_workers(T0 + 30) == 0
