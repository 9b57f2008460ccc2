"""The parquet persona sink: shards written whole, version guard, resume index, real erasure."""

from __future__ import annotations

import polars as pl
import pytest

from personarec.errors import ConfigError
from personarec.personas.generate import is_done
from personarec.personas.schema import PersonaEdits
from personarec.personas.store.base import open_serving_store, open_store
from personarec.personas.store.url import StoreURL
from tests.serve.personas_fixtures import make_persona


def test_shards_version_guard_and_reopen(tmp_path):
    url = StoreURL.parse("parquet:///personas", tmp_path)
    assert url.scheme == "parquet" and url.path == (tmp_path / "personas").resolve()
    store = open_store(url)
    for i in range(5):
        assert store.put(make_persona(f"u{i}", 3, summary=f"first {i}"))
    assert [p.name for p in (tmp_path / "personas").iterdir()] == []  # buffered: nothing half-written on disk
    store.shard_rows = 2
    assert store.put(make_persona("u5", 3))  # the buffer reaches the shard size: one shard of 6
    assert len(store.shards()) == 1
    assert not store.put(make_persona("u1", 2, summary="older"))  # version guard
    assert store.put(make_persona("u1", 4, summary="newer"))
    assert store.get("u1").summary == "newer" and store.status("u1") == (4, False)
    store.close()  # flushes the rest
    again = open_store(url)
    assert sorted(again.user_ids()) == [f"u{i}" for i in range(6)] and len(again) == 6
    assert again.get("u1").summary == "newer" and again.get("u0").summary == "first 0"  # the last row wins
    assert again.status("u2") == (3, False) and again.get("nobody") is None and again.status("nobody") is None
    assert is_done(again, "u2", 3, retry_fallbacks=False) and not is_done(again, "u2", 5, retry_fallbacks=False)
    again.close()


def test_fallbacks_are_indexed_for_retry(tmp_path):
    store = open_store(f"parquet:///{tmp_path / 'p'}")
    store.put(make_persona("u", 2).model_copy(update={"provenance": make_persona("u", 2).provenance.model_copy(update={"fallback": True})}))
    store.close()
    store = open_store(f"parquet:///{tmp_path / 'p'}")
    assert store.status("u") == (2, True)
    assert is_done(store, "u", 2, retry_fallbacks=False) and not is_done(store, "u", 2, retry_fallbacks=True)


def test_erasure_leaves_no_row_and_edits_are_refused(tmp_path):
    store = open_store(f"parquet:///{tmp_path / 'p'}")
    store.put(make_persona("keep", 1, summary="kept persona"))
    store.put(make_persona("gone", 1, summary="SECRET-persona-text"))
    store.close()
    store = open_store(f"parquet:///{tmp_path / 'p'}")
    store.put(make_persona("gone", 2, summary="SECRET-persona-text again"))  # buffered copy too
    assert store.delete_user("gone")
    store.close()
    files = sorted((tmp_path / "p").iterdir())
    assert all(f.suffix == ".parquet" and not f.name.startswith(".") for f in files)  # no temporary left over
    rows = pl.concat([pl.read_parquet(f) for f in files])  # parquet compresses: read the rows, not the bytes
    assert rows["user_id"].to_list() == ["keep"] and not any("SECRET" in t for t in rows["persona"].to_list())
    with pytest.raises(ConfigError, match="edits"):
        store.put_edits("keep", PersonaEdits())
    with pytest.raises(ConfigError, match="serving needs"):
        open_serving_store(f"parquet:///{tmp_path / 'p'}")


def test_shards_keep_their_write_order_past_any_name_width(tmp_path):
    """Shard order is numeric, not by name: a shard numbered beyond the padding still comes last."""
    directory = tmp_path / "p"
    store = open_store(f"parquet:///{directory}")
    store.put(make_persona("u", 1, summary="old"))
    store.close()
    (directory / "part-00000000.parquet").rename(directory / "part-99999999.parquet")
    store = open_store(f"parquet:///{directory}")
    store.put(make_persona("u", 2, summary="new"))
    store.close()  # must be shard 100,000,000, after 99,999,999
    assert [p.name for p in store.shards()] == ["part-99999999.parquet", "part-100000000.parquet"]
    (directory / ".part-00000007.parquet.tmp").write_bytes(b"half a shard")
    again = open_store(f"parquet:///{directory}")
    assert again.get("u").summary == "new" and again.status("u") == (2, False)
    assert not (directory / ".part-00000007.parquet.tmp").exists()


def _served_sink(tmp_path, versions: dict[str, int]):
    """A run whose personas went to a parquet sink, and the serving store ``serve`` opens for it."""
    from personarec.personas.config import PersonasConfig
    from personarec.serve.config import ServeConfig
    from personarec.serve.server import import_offline_personas, store_url

    personas = PersonasConfig(store="parquet:///batch")
    sink = open_store(StoreURL.parse(personas.store, tmp_path))
    for user, version in versions.items():
        sink.put(make_persona(user, version))
    sink.close()
    url = store_url(tmp_path, ServeConfig(), personas)
    serving = open_serving_store(url)
    return url, serving, lambda: import_offline_personas(tmp_path, personas, serving, url)


def test_serving_a_parquet_sink_imports_it_into_a_sqlite_serving_store(tmp_path):
    url, serving, import_ = _served_sink(tmp_path, {"a": 4, "b": 2})
    assert url.scheme == "sqlite" and url.path == (tmp_path / "serving.db").resolve()
    assert import_() == 2
    assert serving.get("a").version == 4 and import_() == 2  # equal versions overwrite: nothing newer is lost
    serving.close()


def test_a_user_erased_while_serving_is_not_imported_again(tmp_path):
    _, serving, import_ = _served_sink(tmp_path, {"a": 4, "b": 4})
    assert import_() == 2
    serving.delete_user("a")  # DELETE /v1/users/a/persona
    assert import_() == 1  # the next `serve` start
    assert serving.get("a") is None and serving.get("b") is not None
    serving.close()
