"""Persona generation on a real local Ray cluster with the real embedded model (SmolLM2 via llama.cpp).

What must hold when the work leaves this process: the same personas as the local runner (greedy
decoding, the same batches), no user lost or written twice when an actor process is killed
mid-batch, a stopped job resumes, and a cluster started with `ray start --head` is joined by address.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
psutil = pytest.importorskip("psutil")

from personarec.data.splits import save_split  # noqa: E402
from personarec.personas.config import PersonasConfig, RayConfig  # noqa: E402
from personarec.personas.generate import generate_personas  # noqa: E402
from personarec.personas.ray_runner import generate_personas_ray  # noqa: E402
from personarec.personas.store.base import open_store  # noqa: E402
from personarec.personas.store.url import StoreURL  # noqa: E402
from tests.personas.spaces import genre_space  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.slow]
USERS = list(range(0, 96, 6))  # 16 users -> 4 batches of 4
CONFIG = PersonasConfig(batch_size=4, ray=RayConfig(actors=2, cpus_per_actor=1))


@pytest.fixture(scope="module")
def space(ml100k_split):
    return genre_space(ml100k_split)


@pytest.fixture(scope="module")
def local_cluster():
    """A real local Ray cluster with this machine's 2 cores (shared by the tests of this module)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def _store(path: Path):
    return open_store(StoreURL.parse(str(path), path.parent))


def _key(p):
    """Greedy choices exactly; explore topics as a set (as in test_batch_engine: near ties of
    continuous scores may swap order under batch-dependent float rounding)."""
    return [(i.cluster, i.weight) for i in p.interests], {e.cluster for e in p.explore}, p.summary.split(".")[0]


def _personas(store, ids):
    return {u: store.get(u) for u in ids}


def test_ray_writes_the_personas_of_the_local_runner(ml100k_split, space, embedded_backend, local_cluster, tmp_path):
    local_store, ray_store = _store(tmp_path / "local.db"), _store(tmp_path / "ray.db")
    local = generate_personas(ml100k_split, space, embedded_backend, USERS, local_store, CONFIG, seed=3, show_progress=False)
    remote = generate_personas_ray(ml100k_split, space, USERS, ray_store, CONFIG, seed=3, show_progress=False)
    assert remote.engine == "ray" and remote.requested == len(USERS) == remote.generated
    assert remote.fallbacks == 0 and remote.format == "compact" and remote.batches == 4
    assert remote.model == local.model and remote.first_try_valid == len(USERS)
    assert 1 <= remote.actors <= 2  # a fixed pool of 2 (fewer if one actor took every batch)
    ids = [str(ml100k_split.user_ids[u]) for u in USERS]
    assert sorted(remote.user_ids) == sorted(ids)
    a, b = _personas(local_store, ids), _personas(ray_store, ids)
    assert {u: _key(p) for u, p in a.items()} == {u: _key(p) for u, p in b.items()}
    assert all(not p.provenance.fallback for p in b.values())


def _kill_one_actor_after_first_result(store_path: Path, killed: list[int], stop: threading.Event) -> None:
    """Waits until the job has stored its first persona (the actors are then mid-batch), then SIGKILLs
    one persona actor's process: a real process death, which Ray must absorb."""
    import sqlite3

    while not stop.is_set():
        try:
            with sqlite3.connect(store_path) as db:
                n = db.execute("select count(*) from personas").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 1:
            for proc in psutil.process_iter(["cmdline"]):
                if "PersonaActor" in " ".join(proc.info["cmdline"] or []):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
        time.sleep(0.05)


def test_an_actor_killed_mid_batch_loses_no_user_and_writes_none_twice(
    ml100k_split, space, local_cluster, tmp_path
):
    path = tmp_path / "ray.db"
    store = _store(path)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_actor_after_first_result, args=(path, killed, stop), daemon=True)
    killer.start()
    try:
        report = generate_personas_ray(ml100k_split, space, USERS, store, CONFIG, seed=3, show_progress=False)
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no persona actor process was found to kill"
    ids = sorted(str(ml100k_split.user_ids[u]) for u in USERS)
    assert sorted(report.user_ids) == ids  # every user once: none lost, none recorded twice
    assert report.generated == len(USERS) and report.fallbacks == 0
    assert sorted(store.user_ids()) == ids


def test_a_stopped_ray_job_resumes_where_it_stopped(ml100k_split, space, local_cluster, tmp_path):
    """Into a parquet sink (the SQLite store's resume is the local runner's, tested elsewhere): the
    second run is a new process's view, the shards on disk."""
    url = StoreURL.parse(f"parquet:///{tmp_path / 'personas'}")
    store = url.open()
    first = generate_personas_ray(ml100k_split, space, USERS, store, CONFIG, seed=3, show_progress=False, stop_after=5)
    assert 5 <= len(first.user_ids) < len(USERS)
    store.close()
    store = url.open()
    stored = set(store.user_ids())
    assert stored == set(first.user_ids)
    second = generate_personas_ray(ml100k_split, space, USERS, store, CONFIG, seed=3, show_progress=False)
    assert second.skipped == len(stored)
    assert set(second.user_ids).isdisjoint(stored)  # nobody generated twice
    assert len(stored) + len(second.user_ids) == len(USERS)
    assert len(set(store.user_ids())) == len(USERS)
    third = generate_personas_ray(ml100k_split, space, USERS, store, CONFIG, seed=3, show_progress=False)
    assert third.skipped == len(USERS) and third.user_ids == []  # done: the cluster is not even needed
    store.close()
    import polars as pl

    rows = pl.read_parquet(tmp_path / "personas" / "*.parquet")
    assert sorted(rows["user_id"].to_list()) == sorted(str(ml100k_split.user_ids[u]) for u in USERS)  # once each
    assert not any(rows["fallback"].to_list())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cli_joins_a_cluster_started_with_ray_start(ml100k_split, space, tmp_path):
    """`ray start --head` in its own processes, then `personarec personas generate --engine ray --address`."""
    if ray.is_initialized():
        ray.shutdown()
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    personarec_bin = Path(sys.executable).parent / "personarec"
    if ray_bin is None or not personarec_bin.exists():
        pytest.skip("ray / personarec console scripts not installed next to this Python")
    run_dir = tmp_path / "run"
    save_split(ml100k_split, run_dir / "split")
    space.save(run_dir / "items")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix sockets live under it (107-byte limit)
    subprocess.run(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        check=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        out = subprocess.run(
            [str(personarec_bin), "personas", "generate", "--run-dir", str(run_dir), "--engine", "ray",
             "--address", f"127.0.0.1:{port}", "--actors", "2", "--users", "6", "--show", "1",
             "--set", "personas.batch_size=3"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shown = " ".join((out.stdout + out.stderr).split())  # the console is stderr; rich may wrap the title
    assert "on Ray (" in shown, shown[-3000:]
    store = _store(run_dir / "personas.db")
    personas = [store.get(u) for u in store.user_ids()]
    assert len(personas) == 6 and all(p is not None and not p.provenance.fallback for p in personas)
