"""Fast checks of the API logic in-process (the real-server tests are in test_server.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from personarec.personas.config import PersonasConfig
from personarec.serve.api import ApiState, create_app
from personarec.serve.assets import ServingAssets
from personarec.serve.config import ServeConfig
from personarec.personas.store.sqlite import SQLiteStore
from personarec.serve.worker import RefreshWorker
from personarec.serve.writers import build_writer


@pytest.fixture
def env(serve_run_dir, tmp_path):
    cfg = ServeConfig.model_validate({"queue": {"debounce_s": 0}, "auth": {"mode": "off"}})
    assets = ServingAssets.load(serve_run_dir)
    store = SQLiteStore(tmp_path / "s.db")
    client = TestClient(create_app(ApiState(store=store, assets=assets, config=cfg)))
    worker = RefreshWorker(store, assets, build_writer("fallback", assets, PersonasConfig(), cfg), cfg, "w")
    yield client, store, assets, worker
    store.close()


def test_flow(env):
    client, store, assets, worker = env
    user = str(assets.split.user_ids[0])
    r = client.get(f"/v1/users/{user}/recommendations?k=5")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["persona_version"] is None and body["persona_stale"] and len(body["items"]) == 5
    assert worker.run_once() == "fallback"  # the stale read queued a refresh (fallback writer)
    body = client.get(f"/v1/users/{user}/recommendations?k=5").json()
    assert body["persona_version"] == assets.base_len(user) and not body["persona_stale"]
    assert client.get("/v1/users/nobody/recommendations").status_code == 404
    assert client.post("/v1/events", json={"events": []}).status_code == 422
    assert client.post("/v1/events", json={"events": [{"user_id": user, "item_id": "nope", "timestamp": 1}]}).status_code == 422
    r = client.get("/metrics")
    assert "personarec_request_seconds_bucket" in r.text and "personarec_refresh_lag_seconds" in r.text
    # the refresh wrote a fallback persona: it is counted as one, never as an LLM persona
    assert metric(r.text, "personarec_fallbacks_total") == 1.0
    assert metric(r.text, "personarec_refreshes_total") == 1.0
    assert metric(r.text, "personarec_llm_personas_total") == 0.0
    client.post("/v1/events", json={"events": [{"user_id": user, "item_id": str(assets.split.item_ids[0]), "timestamp": 1}]})
    assert worker.run_once() == "fallback"
    assert metric(client.get("/metrics").text, "personarec_fallbacks_total") == 2.0


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_a_bug_is_a_500_with_a_request_id_and_a_store_outage_a_503(env, monkeypatch, caplog):
    import sqlite3

    client, store, assets, _ = env
    client = TestClient(client.app, raise_server_exceptions=False)  # answer as the server would
    user = str(assets.split.user_ids[0])

    def bug(user_id):
        raise KeyError("a bug")

    monkeypatch.setattr(store, "get_edits", bug)
    r = client.get(f"/v1/users/{user}/recommendations")
    assert r.status_code == 500 and r.json()["request_id"] == r.headers["x-request-id"]
    assert r.json()["request_id"] in caplog.text and "KeyError" in caplog.text  # the log has the traceback

    def locked(user_id):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "get_edits", locked)
    r = client.get(f"/v1/users/{user}/recommendations")
    assert r.status_code == 503 and "store unavailable" in r.json()["detail"]


def test_api_threads_reach_a_persona_models_base():
    """serve.api_threads must bound the base model a persona model scores through, not only the
    wrapper (SASRec sets torch's thread count from its own config on every call)."""
    from personarec.recommend.base import build_recommender
    from personarec.serve.assets import limit_model_threads

    hybrid = build_recommender("persona_hybrid", {})
    hybrid.base = build_recommender("sasrec", {"num_threads": 2})
    limit_model_threads(hybrid, 1)
    assert hybrid.base.config.num_threads == 1
