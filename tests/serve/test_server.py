"""End-to-end tests against the real server process (uvicorn + worker processes, SQLite store).

The workers use the deterministic fallback writer here (fast); the LLM path is covered in
test_server_llm.py. Waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import os
import signal

import httpx
import numpy as np
import pytest

from personarec.serve.launch import ServerProcess
from personarec.personas.store.sqlite import SQLiteStore
from tests.serve.helpers import NO_AUTH, fresh_persona, post_events, wait_for
from tests.serve.run_fixture import genre_space

FAST = [NO_AUTH, "serve.queue.debounce_s=0.2", "serve.queue.max_wait_s=2", "serve.queue.poll_interval_s=0.05"]


@pytest.fixture(scope="module")
def server(serve_run_dir):
    srv = ServerProcess(serve_run_dir, args=["--workers", "1", "--writer", "fallback"], sets=FAST).start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


@pytest.fixture(scope="module")
def catalogue(ml100k_split):
    space = genre_space(ml100k_split)
    return ml100k_split, space


def users_and_clusters(split, space, user: str):
    """The user's history clusters, and items of the largest cluster they never touched."""
    u = split.user_index()[user]
    hist = split.history("test")[u]
    seen = set(space.fine[hist].tolist())
    sizes = np.bincount(space.fine, minlength=space.n_fine)
    unseen = [c for c in np.argsort(-sizes) if c not in seen and sizes[c] >= 25]
    return hist, seen, unseen


def pick_user(split, space, i: int) -> str:
    """A user with a short history and at least one sizeable unseen cluster."""
    lengths = split.history("test").lengths()
    order = np.argsort(lengths, kind="stable")
    for u in order[i * 7 :]:
        user = str(split.user_ids[u])
        if users_and_clusters(split, space, user)[2]:
            return user
    raise AssertionError("no suitable user")


def test_openapi_and_health(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/users/{user_id}/recommendations" in spec["paths"] and "/v1/events" in spec["paths"]
    h = server.health()
    assert h["status"] == "ok" and len(h["workers"]) == 1 and h["model"] == "persona_hybrid"


def best_position(items: list[dict], cluster: str) -> int:
    return next((i for i, it in enumerate(items) if it["cluster"] == cluster), len(items))


def test_events_refresh_persona_and_change_recommendations(server, catalogue):
    split, space = catalogue
    user = pick_user(split, space, 0)
    _, _, unseen = users_and_clusters(split, space, user)
    popularity = np.bincount(split.train["item_idx"].to_numpy(), minlength=split.n_items)
    target = max(unseen, key=lambda c: popularity[space.fine == c].max())  # its best title is popular
    name = space.fine_names[target]
    before = httpx.get(f"{server.url}/v1/users/{user}/recommendations?k=100&explore=0").json()
    p0 = fresh_persona(server.url, user)  # the first read queued a refresh (no persona yet)
    assert name not in {i["cluster"] for i in p0["persona"]["interests"]}
    mid = httpx.get(f"{server.url}/v1/users/{user}/recommendations?k=100&explore=0").json()
    # the user binges the cluster's least popular titles; its popular ones remain to recommend
    members = np.flatnonzero(space.fine == target)
    binge = [str(split.item_ids[j]) for j in members[np.argsort(popularity[members], kind="stable")][:12]]
    acked = post_events(server.url, user, binge)
    assert acked["last_seq"][user] == p0["last_seq"] + 12
    p1 = fresh_persona(server.url, user)
    assert p1["version"] == acked["last_seq"][user] > p0["version"]
    assert name in {i["cluster"] for i in p1["persona"]["interests"]}
    after = httpx.get(f"{server.url}/v1/users/{user}/recommendations?k=100&explore=0").json()
    assert after["persona_version"] == p1["version"] and not after["persona_stale"]
    assert before["persona_version"] is None and mid["persona_version"] == p0["version"]
    assert best_position(after["items"], name) < best_position(mid["items"], name)
    assert after["items"][best_position(after["items"], name)]["kind"] == "interest"
    assert not set(binge) & {i["item_id"] for i in after["items"]}  # seen items are not re-recommended
    assert all(i["explanation"] for i in after["items"])


def test_explore_quota(server, catalogue):
    split, space = catalogue
    user = pick_user(split, space, 1)
    p = fresh_persona_or_trigger(server.url, user)
    explore_topics = {t["cluster"] for t in p["persona"]["explore"]}
    body = httpx.get(f"{server.url}/v1/users/{user}/recommendations?k=10&explore=0.3").json()
    explored = [i for i in body["items"] if i["kind"] == "explore"]
    assert len(explored) == 3 and {i["cluster"] for i in explored} <= explore_topics
    body0 = httpx.get(f"{server.url}/v1/users/{user}/recommendations?k=10&explore=0").json()
    assert not [i for i in body0["items"] if i["kind"] == "explore"]


def fresh_persona_or_trigger(url: str, user: str) -> dict:
    httpx.get(f"{url}/v1/users/{user}/recommendations")  # stale read -> refresh queued
    return fresh_persona(url, user)


def test_put_edits_survive_refresh(server, catalogue):
    split, space = catalogue
    user = pick_user(split, space, 2)
    p0 = fresh_persona_or_trigger(server.url, user)
    interests = [i["cluster"] for i in p0["persona"]["interests"]]
    removed, blocked = interests[0], interests[1] if len(interests) > 1 else interests[0]
    _, seen, unseen = users_and_clusters(split, space, user)
    popularity = np.bincount(split.train["item_idx"].to_numpy(), minlength=split.n_items)
    added = space.fine_names[max(unseen, key=lambda c: popularity[space.fine == c].max())]
    edits = {"removed_interests": [removed], "added_topics": [added], "blocked_topics": [blocked]}
    r = httpx.put(f"{server.url}/v1/users/{user}/persona", json=edits)
    assert r.status_code == 200, r.text
    shown = {i["cluster"] for i in r.json()["persona"]["interests"]}
    assert removed not in shown and blocked not in shown and added in shown
    # new events -> a refresh writes a new persona; the edits still apply on read
    same_cluster = [str(split.item_ids[j]) for j in np.flatnonzero(space.fine == space.cluster_by_name()[removed])[-5:]]
    acked = post_events(server.url, user, same_cluster)
    p1 = fresh_persona(server.url, user)
    assert p1["version"] == acked["last_seq"][user] > p0["version"]
    assert p1["edits"] == {**edits, "summary_override": None}
    shown = {i["cluster"] for i in p1["persona"]["interests"]}
    assert removed not in shown and blocked not in shown and added in shown
    recs = httpx.get(f"{server.url}/v1/users/{user}/recommendations?k=30").json()["items"]
    assert blocked not in {i["cluster"] for i in recs}
    assert any(i["kind"] == "added_topic" and i["cluster"] == added for i in recs)
    bad = httpx.put(f"{server.url}/v1/users/{user}/persona", json={"added_topics": ["no such topic"]})
    assert bad.status_code == 422 and "/v1/topics" in bad.json()["detail"]


def test_delete_erases_everywhere(server, serve_run_dir, catalogue):
    split, space = catalogue
    user = pick_user(split, space, 3)
    items = [str(x) for x in split.item_ids[:3]]
    post_events(server.url, user, items[:2])
    fresh_persona(server.url, user)
    httpx.put(f"{server.url}/v1/users/{user}/persona", json={"blocked_topics": [space.fine_names[0]]})
    post_events(server.url, user, items[2:])  # a refresh is queued (debounced) at delete time
    r = httpx.delete(f"{server.url}/v1/users/{user}/persona")
    assert r.status_code == 204
    store = SQLiteStore(serve_run_dir / "personas.db")
    try:
        assert store.get(user) is None and store.get_edits(user) is None
        assert store.events(user) == [] and store.queued_job(user) is None
        st = store.user_state(user)
        assert st.erased and st.last_seq == 0
    finally:
        store.close()
    for path in ("persona", "recommendations"):
        r = httpx.get(f"{server.url}/v1/users/{user}/{path}")
        assert r.status_code == 404 and user in r.json()["detail"]
    assert httpx.delete(f"{server.url}/v1/users/{user}/persona").status_code == 404
    # later events start a new history without the erased (offline) one
    acked = post_events(server.url, user, items[:1])
    assert acked["last_seq"][user] == 1
    assert httpx.get(f"{server.url}/v1/users/{user}/recommendations").json()["history_length"] == 1


def test_unknown_user_404(server):
    r = httpx.get(f"{server.url}/v1/users/no-such-user/recommendations")
    assert r.status_code == 404 and "unknown user 'no-such-user'" in r.json()["detail"]
    assert httpx.get(f"{server.url}/v1/users/no-such-user/persona").status_code == 404
    assert httpx.put(f"{server.url}/v1/users/no-such-user/persona", json={}).status_code == 404


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("post", "/v1/events", "not json"),
        ("post", "/v1/events", {}),
        ("post", "/v1/events", {"events": []}),
        ("post", "/v1/events", {"events": [{"user_id": "u"}]}),
        ("post", "/v1/events", {"events": [{"user_id": "u", "item_id": "1", "timestamp": "yesterday"}]}),
        ("post", "/v1/events", {"events": [{"user_id": "u", "item_id": "1", "timestamp": -1}]}),
        ("post", "/v1/events", {"events": [{"user_id": "u", "item_id": "1", "timestamp": 10**30}]}),
        ("post", "/v1/events", {"events": [{"user_id": "", "item_id": "1", "timestamp": 1}]}),
        ("post", "/v1/events", {"events": [{"user_id": "u", "item_id": "1", "timestamp": 1, "x": 1}]}),
        ("post", "/v1/events", {"events": [{"user_id": "u", "item_id": "no-such-item", "timestamp": 1}]}),
        ("post", "/v1/events", '{"events": [{"user_id": "u", "item_id": "1", "timestamp": 1, "rating": NaN}]}'),
        ("get", "/v1/users/1/recommendations?k=0", None),
        ("get", "/v1/users/1/recommendations?k=abc", None),
        ("get", "/v1/users/1/recommendations?explore=2", None),
        ("put", "/v1/users/1/persona", {"added_topics": "Drama"}),
        ("put", "/v1/users/1/persona", [1, 2]),
    ],
)
def test_malformed_is_422(server, method, path, body):
    kwargs = {}
    if isinstance(body, str):
        kwargs = {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    r = httpx.request(method.upper(), server.url + path, **kwargs)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_metrics(server):
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "personarec_request_seconds_bucket", "personarec_queue_depth", "personarec_refresh_lag_seconds_bucket",
        "personarec_llm_errors_total", "personarec_fallbacks_total", "personarec_refreshes_total",
    ):  # fmt: skip
        assert name in text, name


def test_kill_worker_mid_job_completes_after_lease(serve_run_dir, catalogue, tmp_path):
    """kill -9 the worker while it holds a job: the lease expires, the respawned worker claims
    the job again, the persona includes every acknowledged event."""
    split, space = catalogue
    db = tmp_path / "kill.db"
    srv = ServerProcess(
        serve_run_dir,
        args=["--workers", "1", "--writer", "tests.serve.slow_writer:SlowFallbackWriter", "--store", f"sqlite:///{db}"],
        sets=[*FAST, "serve.queue.lease_s=2", "serve.queue.max_attempts=5"],
        env={"PERSONAREC_TEST_WRITER_DELAY": "3", "PYTHONPATH": os.getcwd()},
    ).start()
    try:
        user = pick_user(split, space, 4)
        items = [str(x) for x in split.item_ids[10:16]]
        acked = [post_events(srv.url, user, items[:3]), post_events(srv.url, user, items[3:])]
        store = SQLiteStore(db)
        job = wait_for(lambda: (j := store.queued_job(user)) and j["owner"] and j, 60, what="job claimed")
        victim = srv.health()["workers"][0]
        assert job["owner"].endswith(f":{victim}")
        os.kill(victim, signal.SIGKILL)
        p = fresh_persona(srv.url, user, timeout_s=90)
        assert p["version"] == acked[-1]["last_seq"][user]
        new_workers = srv.health()["workers"]
        assert new_workers and victim not in new_workers  # respawned
        assert [e.item_id for e in store.events(user)] == items  # every acknowledged event kept
        assert store.queued_job(user) is None
        assert store.stats()["refreshes"] >= 1
        store.close()
    finally:
        assert srv.stop() == 0, srv.log()[-3000:]


def test_graceful_shutdown_drains_inflight(serve_run_dir, catalogue, tmp_path):
    """SIGTERM while a worker holds a job: the job finishes before the server exits."""
    split, space = catalogue
    db = tmp_path / "drain.db"
    srv = ServerProcess(
        serve_run_dir,
        args=["--workers", "1", "--writer", "tests.serve.slow_writer:SlowFallbackWriter", "--store", f"sqlite:///{db}"],
        sets=FAST, env={"PERSONAREC_TEST_WRITER_DELAY": "2", "PYTHONPATH": os.getcwd()},
    ).start()  # fmt: skip
    user = pick_user(split, space, 5)
    acked = post_events(srv.url, user, [str(split.item_ids[20])])
    store = SQLiteStore(db)
    wait_for(lambda: (j := store.queued_job(user)) and j["owner"], 60, what="job claimed")
    assert srv.stop() == 0
    p = store.get(user)
    assert p is not None and p.version == acked["last_seq"][user]
    assert store.queued_job(user) is None
    store.close()
