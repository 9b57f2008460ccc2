"""SQLiteStore: version guard, edits, erasure, and concurrent writers (threads and processes)."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

from personarec.personas.schema import PersonaEdits
from personarec.personas.store.base import open_store
from personarec.personas.store.sqlite import SQLiteStore
from tests.serve.personas_fixtures import make_persona


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "personas.db")
    yield s
    s.close()


def test_wal_mode(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_put_get_roundtrip(store):
    p = make_persona("u1", 3)
    assert store.put(p)
    got = store.get("u1")
    assert got == p
    assert "u1" in store and "u2" not in store
    assert store.get("u2") is None


def test_older_version_never_overwrites(store):
    assert store.put(make_persona("u1", 5, summary="new"))
    assert not store.put(make_persona("u1", 4, summary="old"))
    assert store.get("u1").summary == "new"
    assert store.put(make_persona("u1", 5, summary="same version rewrite"))
    assert store.get("u1").summary == "same version rewrite"
    assert store.put(make_persona("u1", 9, summary="newer"))
    assert store.get("u1").version == 9


def test_edits_are_separate_from_personas(store):
    store.put(make_persona("u1", 1))
    edits = PersonaEdits(removed_interests=["drama"], added_topics=["jazz"], blocked_topics=["horror"])
    store.put_edits("u1", edits)
    store.put(make_persona("u1", 2))  # a refresh does not touch edits
    assert store.get_edits("u1") == edits
    assert store.get_edits("nobody") is None


def test_delete_user_erases_everything(store):
    store.put(make_persona("u1", 1))
    store.put_edits("u1", PersonaEdits(blocked_topics=["x"]))
    store.put(make_persona("u2", 1))
    assert store.delete_user("u1")
    assert store.get("u1") is None and store.get_edits("u1") is None
    assert list(store.user_ids()) == ["u2"]
    assert not store.delete_user("u1")


def test_open_store_url(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(s, SQLiteStore)
    s.put(make_persona("u", 1))
    s.close()
    assert SQLiteStore(tmp_path / "a.db").get("u") is not None  # persisted


def test_concurrent_threads_highest_version_wins(store):
    versions = list(range(1, 61))

    def writer(vs):
        for v in vs:
            store.put(make_persona("u1", v))

    threads = [threading.Thread(target=writer, args=(versions[i::4][::-1],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("u1").version == 60


def _proc_writer(path: str, versions: list[int]) -> None:
    s = SQLiteStore(path)
    for v in versions:
        s.put(make_persona("shared", v))
    s.close()


def test_concurrent_processes_highest_version_wins(tmp_path):
    path = str(tmp_path / "p.db")
    SQLiteStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_proc_writer, args=(path, list(range(i, 40, 2))[::-1])) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert SQLiteStore(path).get("shared").version == 39


def test_store_url_is_parsed_in_one_place(tmp_path):
    import pytest

    from personarec.errors import ConfigError
    from personarec.personas.store.url import StoreURL

    bare = StoreURL.parse("personas.db", tmp_path)  # a bare path lives in the run directory
    assert bare.scheme == "sqlite" and bare.path == (tmp_path / "personas.db").resolve()
    assert StoreURL.parse(f"sqlite:///{tmp_path / 'personas.db'}") == bare and not bare.exists()
    assert StoreURL.parse(str(bare)) == bare and bare.name == "personas.db"
    redis_url = StoreURL.parse("redis://localhost:6379/0", tmp_path)
    assert redis_url.scheme == "redis" and redis_url.path is None and redis_url.exists()
    with pytest.raises(ConfigError, match="unknown store URL"):
        StoreURL.parse("postgres://db/personas")
    s = bare.open()
    s.put(make_persona("u", 1))
    s.close()
    assert bare.exists()
