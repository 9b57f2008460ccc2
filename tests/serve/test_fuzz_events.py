"""Property-based fuzzing (hypothesis) of the events API and the persona edits, in-process over a
real SQLite store: whatever the body, the answer is 202 with every event stored, or a 4xx with
nothing stored; never a 5xx. The same strategies run in ``benchmarks/trust.py`` (cases counted)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personarec.personas.store.sqlite import SQLiteStore
from personarec.serve.api import ApiState, create_app
from personarec.serve.assets import ServingAssets
from personarec.serve.auth import JWT_SECRET_ENV, SERVICE_KEYS_ENV
from personarec.serve.config import ServeConfig
from tests.serve.api_fuzz import FUZZ_EXAMPLES, check_edits, check_events, edit_bodies, event_bodies

KEY, SECRET = "prk_fuzz", "f" * 40


@pytest.fixture(scope="module")
def api(serve_run_dir, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv(SERVICE_KEYS_ENV, KEY)
    mp.setenv(JWT_SECRET_ENV, SECRET)
    assets = ServingAssets.load(serve_run_dir)
    store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    state = ApiState(store=store, assets=assets, config=ServeConfig())
    yield TestClient(create_app(state), raise_server_exceptions=False), state, assets
    store.close()
    mp.undo()


def test_events_api_never_fails_and_never_half_stores(api):
    client, state, assets = api
    users, items = [str(u) for u in assets.split.user_ids[:5]], [str(i) for i in assets.split.item_ids[:5]]

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=event_bodies(users, items))
    def prop(body):
        check_events(client, state.store, {"X-API-Key": KEY}, body)

    prop()


def test_persona_edits_never_fail(api):
    client, state, assets = api
    user = str(assets.split.user_ids[7])
    token = state.auth.mint(user)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=edit_bodies(list(assets.space.fine_names[:5])))
    def prop(body):
        check_edits(client, state.store, {"Authorization": f"Bearer {token}"}, user, body, set(assets.space.fine_names))

    prop()
