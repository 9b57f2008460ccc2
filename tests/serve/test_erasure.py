"""Erasure that really erases: after ``DELETE /v1/users/{u}/persona`` no byte of the user's persona
text is left in the store's files (SQLite main file + WAL + shm; Redis AOF and snapshots), and the
users erased since an export are named by ``personarec erasures --since-export``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from personarec.personas.schema import PersonaEdits
from personarec.personas.store.sqlite import SQLiteStore
from personarec.serve.api import ApiState, create_app
from personarec.serve.assets import ServingAssets
from personarec.serve.config import ServeConfig
from tests.serve.helpers import wait_for
from tests.serve.personas_fixtures import make_persona

OFF = ServeConfig.model_validate({"auth": {"mode": "off"}})


def _bytes_in(paths: list[Path], needle: bytes) -> list[str]:
    return [p.name for p in paths if p.is_file() and needle in p.read_bytes()]


def _fill(store, assets, user: str, marker: str) -> None:
    """A persona whose text holds ``marker``, edits, events and a queued refresh for ``user``;
    other users' data around it, so the pages are shared with data that stays."""
    item = str(assets.split.item_ids[0])
    for i, u in enumerate([user, *map(str, assets.split.user_ids[5:25])]):
        text = f"{marker} loves slow westerns" if u == user else f"someone else {i} likes documentaries"
        store.put(make_persona(u, version=assets.base_len(u), summary=text))
        store.append_events(u, [(item, 1_700_000_000 + i, 4.0)], base_len=assets.base_len(u), enqueue=None)
    store.put_edits(user, PersonaEdits(added_topics=[assets.space.fine_names[0]]))


@pytest.fixture(scope="module")
def assets(serve_run_dir):
    return ServingAssets.load(serve_run_dir)


def test_sqlite_erasure_leaves_no_byte_of_the_persona(assets, tmp_path):
    db = tmp_path / "erase.db"
    store = SQLiteStore(db)
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    try:
        user, marker = str(assets.split.user_ids[3]), f"MARKER-{uuid.uuid4().hex}"
        _fill(store, assets, user, marker)
        assert _bytes_in(files, marker.encode()), "the persona text should be on disk before erasure"
        client = TestClient(create_app(ApiState(store=store, assets=assets, config=OFF)))
        assert client.delete(f"/v1/users/{user}/persona").status_code == 204
        assert _bytes_in(files, marker.encode()) == []
        assert store.get(user) is None and store.get_edits(user) is None and store.events(user) == []
        assert store.queued_job(user) is None and store.user_state(user).erased
        assert client.get(f"/v1/users/{user}/recommendations").status_code == 404
        others = [store.get(str(u)) for u in assets.split.user_ids[5:25]]
        assert all(p is not None and "someone else" in p.summary for p in others)  # nothing else was lost
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [u for u, _ in store.erasures()] == [user]
    finally:
        store.close()


@pytest.mark.redis
def test_redis_erasure_rewrites_the_aof(assets, redis_server):
    from personarec.personas.store.redis import RedisStore

    store = RedisStore(redis_server.url)
    files = lambda: [p for p in Path(redis_server.directory).rglob("*") if p.is_file() and p.name != "redis.log"]  # noqa: E731
    try:
        user, marker = str(assets.split.user_ids[4]), f"MARKER-{uuid.uuid4().hex}"
        _fill(store, assets, user, marker)
        assert _bytes_in(files(), marker.encode()), "the AOF should hold the persona before erasure"
        client = TestClient(create_app(ApiState(store=store, assets=assets, config=OFF)))
        assert client.delete(f"/v1/users/{user}/persona").status_code == 204  # the rewrite runs in the background
        wait_for(lambda: not _bytes_in(files(), marker.encode()), timeout_s=60, what="AOF rewritten without the persona")
        store.purge(wait=True)  # and a synchronous purge finds nothing left either
        assert _bytes_in(files(), marker.encode()) == []
        redis_server.restart()  # what is on disk still holds everyone else, and the tombstone
        store2 = RedisStore(redis_server.url)
        assert store2.get(user) is None and store2.user_state(user).erased and store2.events(user) == []
        assert store2.get(str(assets.split.user_ids[5])) is not None
        assert [u for u, _ in store2.erasures()] == [user]
        store2.close()
    finally:
        store.close()


def test_erasures_since_an_export_are_named(serve_run_dir, assets, tmp_path):
    from personarec.cli import app
    from personarec.personas.generate import export_personas

    db = tmp_path / "exp.db"
    store = SQLiteStore(db)
    users = [str(u) for u in assets.split.user_ids[:4]]
    early = str(assets.split.user_ids[10])
    try:
        for u in [*users, early]:
            store.put(make_persona(u, version=assets.base_len(u)))
        store.delete_user(early)  # erased before the export: not in it, not reported
        out = tmp_path / "personas.jsonl"
        assert export_personas(store, out) == 4
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        assert manifest["user_ids"] == sorted(users) and manifest["exported_at"] > 0
        store.delete_user(users[1])
    finally:
        store.close()
    runner = CliRunner()
    args = ["erasures", "--run-dir", str(serve_run_dir), "--store", f"sqlite:///{db}", "--since-export", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output  # the export holds an erased user
    assert r.stdout.split("\t")[0] == users[1] and early not in r.stdout
    r = runner.invoke(app, ["erasures", "--run-dir", str(serve_run_dir), "--store", f"sqlite:///{db}", "--purge"])
    assert r.exit_code == 0 and {line.split("\t")[0] for line in r.stdout.splitlines()} == {early, users[1]}


def test_erasure_reaches_the_runs_offline_copy(assets, tmp_path):
    """Serving from another store (here a second SQLite file; Redis in a fleet), the run's offline
    persona store is a second copy: the API erases there too, and a host starting later deletes
    users erased through any other host from its own copy instead of importing them."""
    from personarec.personas.commands import store_url as personas_store
    from personarec.personas.config import PersonasConfig
    from personarec.personas.store.url import StoreURL
    from personarec.serve.server import import_offline_personas, offline_copy

    run = tmp_path / "run"
    source = personas_store(run, PersonasConfig())
    Path(source.path).parent.mkdir(parents=True, exist_ok=True)
    offline = SQLiteStore(source.path)
    a, b = str(assets.split.user_ids[3]), str(assets.split.user_ids[4])
    marker_a, marker_b = f"MARKER-{uuid.uuid4().hex}", f"MARKER-{uuid.uuid4().hex}"
    offline.put(make_persona(a, version=assets.base_len(a), summary=f"{marker_a} offline"))
    offline.put(make_persona(b, version=assets.base_len(b), summary=f"{marker_b} offline"))
    offline.close()
    files = [Path(source.path), Path(str(source.path) + "-wal")]
    target = StoreURL.parse(f"sqlite:///{tmp_path / 'serving.db'}", tmp_path)
    assert offline_copy(run, PersonasConfig(), target) == source
    serving = SQLiteStore(target.path)
    try:
        assert import_offline_personas(run, PersonasConfig(), serving, target) == 2
        client = TestClient(create_app(ApiState(store=serving, assets=assets, config=OFF, offline_copy=source)))
        assert client.delete(f"/v1/users/{a}/persona").status_code == 204
        assert _bytes_in(files, marker_a.encode()) == [] and _bytes_in(files, marker_b.encode())
        # b is erased through another host (straight in the shared store): this host's next start cleans its copy
        serving.delete_user(b)
        assert import_offline_personas(run, PersonasConfig(), serving, target) == 0
        assert _bytes_in(files, marker_b.encode()) == []
    finally:
        serving.close()
