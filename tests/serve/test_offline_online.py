"""Serving any trained model returns the list offline evaluation ranks.

For every registered recommender: train it on ML-100k, save it, load it the way serving does and
ask the HTTP API (in-process ASGI client) for users' lists; the evaluation pipeline's lists for the
same histories (stored LLM personas included, fresh or a few events stale) must be identical, item
for item, before and after the user posts new events.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from personarec.data.splits import UserSequences
from personarec.personas.schema import Persona
from personarec.recommend.base import BUILT_IN, build_recommender, load_recommender
from personarec.recommend.pipeline import RankingPipeline
from personarec.serve.api import ApiState, create_app
from personarec.serve.assets import ServingAssets
from personarec.serve.config import ServeConfig
from personarec.personas.store.sqlite import SQLiteStore
from tests.serve.personas_fixtures import make_persona
from tests.serve.run_fixture import build_run_dir, genre_space

SMALL_SASREC = {"max_epochs": 1, "hidden": 16, "n_blocks": 1, "max_len": 50, "show_progress": False, "early_stopping": False}
#: every registered recommender, with a config small enough for a test
CONFIGS: dict[str, dict] = {
    "popular": {},
    "itemknn": {},
    "ease": {},
    "sasrec": SMALL_SASREC,
    "text_sasrec": SMALL_SASREC,
    "persona_sasrec": {**SMALL_SASREC, "aux_epochs": 1},
    "persona_hybrid": {"base": {"name": "itemknn"}, "interest_boost": 0.1, "explore_quota": 0.2},
    "persona_retrieval": {"query": "history", "popularity_weight": 0.5},
    "blend": {"members": [{"name": "sasrec", **SMALL_SASREC}, {"name": "itemknn"}], "grid_step": 0.25},
}
K = 20
USERS = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55]


def test_every_registered_recommender_is_covered():
    assert set(CONFIGS) == set(BUILT_IN), "add the new recommender to CONFIGS: serving must equal evaluation"


@pytest.fixture(scope="module")
def run(tmp_path_factory, ml100k_split):
    """A run dir with every model trained, and a persona store: LLM personas (fresh, stale by two
    events, one hindsight label that must be ignored) for some users, none for the others."""
    split = ml100k_split
    run = build_run_dir(tmp_path_factory.mktemp("equal"), split, persona_hybrid=False)
    space = genre_space(split)
    vectors = np.random.default_rng(0).normal(size=(split.n_users, 8)).astype(np.float32)
    for name, cfg in CONFIGS.items():
        model = build_recommender(name, cfg)
        model.fit(split, items=space, persona_vectors=vectors)
        model.save(run / "models" / name)
    history = split.history("test")
    store = SQLiteStore(run / "personas.db")
    names = space.fine_names
    for j, u in enumerate(USERS[:6]):
        lag = 0 if j % 2 == 0 else 2  # stale personas are served (and evaluated) too
        seen = sorted(set(space.fine[history[u]].tolist()))
        unseen = [c for c in range(space.n_fine) if c not in seen]
        p = make_persona(
            str(split.user_ids[u]), len(history[u]) - lag,
            interests=[names[c] for c in seen[-2:]], explore=[names[c] for c in unseen[:2]],
        )  # fmt: skip
        if j == 5:
            p = p.model_copy(update={"provenance": p.provenance.model_copy(update={"hindsight": True})})
        store.put(p)
    store.close()
    return run, split


def api_items(client: TestClient, split, user: str) -> list[int]:
    r = client.get(f"/v1/users/{user}/recommendations?k={K}")
    assert r.status_code == 200, r.text
    index = split.item_index()
    return [index[i["item_id"]] for i in r.json()["items"]]


def offline_items(model, store, users: np.ndarray, history: UserSequences) -> np.ndarray:
    if hasattr(model, "attach"):
        model.attach(persona_store=store)
    return RankingPipeline(model).top_items(users, history, K)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_api_list_equals_the_evaluated_list(run, name, tmp_path):
    run_dir, split = run
    shutil.copy(run_dir / "personas.db", tmp_path / "personas.db")  # this test posts events
    store = SQLiteStore(tmp_path / "personas.db")
    try:
        assets = ServingAssets.load(run_dir, stage="test", model=name)
        client = TestClient(create_app(ApiState(store=store, assets=assets, config=ServeConfig.model_validate({"auth": {"mode": "off"}}))))
        history = split.history("test")
        users = np.array(USERS)
        offline = offline_items(load_recommender(run_dir / "models" / name), store, users, history)
        for row, u in enumerate(users):
            assert api_items(client, split, str(split.user_ids[u])) == offline[row].tolist(), (name, u)

        # new events: the API ranks the live history, offline ranks the same history
        u = USERS[0]
        user = str(split.user_ids[u])
        fresh = [int(i) for i in np.argsort(-np.bincount(history.items, minlength=split.n_items)) if i not in set(history[u].tolist())][:3]
        body = {"events": [{"user_id": user, "item_id": str(split.item_ids[i]), "timestamp": 2_000_000_000 + n} for n, i in enumerate(fresh)]}
        assert client.post("/v1/events", json=body).status_code == 202
        rows, live = UserSequences.at_rows([u], [np.concatenate([history[u], np.array(fresh, np.int32)])])
        expect = offline_items(load_recommender(run_dir / "models" / name), store, rows, live)[0]
        assert api_items(client, split, user) == expect.tolist(), name
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["persona_hybrid", "persona_retrieval"])
def test_the_stored_persona_is_in_the_loop(run, name):
    """Persona models rank with the stored LLM persona (the lists differ from the fallback
    persona's), and a hindsight label is never used."""
    run_dir, split = run
    store = SQLiteStore(run_dir / "personas.db")
    try:
        history = split.history("test")
        with_store = offline_items(load_recommender(run_dir / "models" / name), store, np.array(USERS), history)
        without = RankingPipeline(load_recommender(run_dir / "models" / name)).top_items(np.array(USERS), history, K)
        differs = [not np.array_equal(a, b) for a, b in zip(with_store, without, strict=True)]
        assert any(differs[:5]), "no LLM persona changed any list"
        assert not differs[5] and not any(differs[6:]), "hindsight or missing personas must give the fallback list"
        model = load_recommender(run_dir / "models" / name).attach(persona_store=store)
        used = [model.profile(u, history[u]).from_llm for u in USERS]
        assert used == [True] * 5 + [False] * 5
        assert isinstance(store.get(str(split.user_ids[USERS[5]])), Persona)
    finally:
        store.close()
