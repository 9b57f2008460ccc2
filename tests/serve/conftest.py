"""Fixtures of the serving tests: stores (SQLite file, real redis-server)."""

from __future__ import annotations

import shutil

import pytest

from personarec.personas.store.sqlite import SQLiteStore


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found (Debian: apt-get install redis-server; .ci/run installs it)")
    from tests.serve.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def serving_store(request, tmp_path):
    """Every store implementation, behind the same interface."""
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "serve.db")
    else:
        from personarec.personas.store.redis import RedisStore

        server = request.getfixturevalue("redis_server")
        store = RedisStore(server.url)
    yield store
    store.close()


@pytest.fixture(scope="session")
def serve_run_dir(tmp_path_factory, ml100k_split):
    """A small real run directory: the ML-100k split, a genre item space, a MostPopular model."""
    from tests.serve.run_fixture import build_run_dir

    return build_run_dir(tmp_path_factory.mktemp("serve-run"), ml100k_split)
