"""The LLM path of the refresh workers.

- LLM failure (a real one: the OpenAI-compatible backend pointed at a closed port): a user with
  no persona gets the fallback persona; a user with a persona keeps it and the job is retried.
- The real LLM (embedded llama.cpp if installed, else the transformers runtime on the same
  SmolLM2 weights) writing personas inside the real server process.
"""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from personarec.personas.config import PersonasConfig
from personarec.serve.assets import ServingAssets
from personarec.serve.config import ServeConfig
from personarec.serve.launch import ServerProcess, free_port
from personarec.serve.queue import RefreshQueue
from personarec.personas.store.sqlite import SQLiteStore
from personarec.serve.worker import RefreshWorker
from personarec.serve.writers import build_writer
from tests.serve.helpers import NO_AUTH, fresh_persona, post_events
from tests.serve.personas_fixtures import make_persona


def test_llm_failure_keeps_last_persona_and_falls_back_for_new_users(serve_run_dir, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    serve = ServeConfig.model_validate(
        {"writer": "llm", "backend": "openai",
         "backend_config": {"base_url": dead, "max_retries": 0, "connect_timeout_s": 0.5, "timeout_s": 1},
         "queue": {"debounce_s": 0, "retry_backoff_s": 30}}
    )  # fmt: skip
    personas = PersonasConfig(retries=0)
    assets = ServingAssets.load(serve_run_dir, with_model=False)
    store = SQLiteStore(tmp_path / "llm.db")
    worker = RefreshWorker(store, assets, build_writer("llm", assets, personas, serve), serve, "w")
    queue = RefreshQueue(store, serve.queue)
    new, old = (str(u) for u in assets.split.user_ids[:2])
    store.put(make_persona(old, 1, interests=[assets.space.fine_names[0]], explore=[assets.space.fine_names[1]]))
    queue.push(new, base_len=assets.base_len(new))
    queue.push(old, base_len=assets.base_len(old))
    assert worker.run_once() == "fallback"  # users without a persona first
    p = store.get(new)
    assert p is not None and p.provenance.fallback and p.version == assets.base_len(new)
    assert worker.run_once() == "kept"
    assert store.get(old).version == 1  # the last persona is still served
    job = store.queued_job(old)
    assert job is not None and job["owner"] is None and job["attempts"] == 1  # retried later
    stats = store.stats()
    assert stats["llm_errors"] == 2 and stats["fallbacks"] == 1
    store.close()


def _llm_backend() -> tuple[str, dict]:
    if importlib.util.find_spec("llama_cpp") is not None:
        return "embedded", {"n_ctx": 2048}
    if importlib.util.find_spec("transformers") is not None:
        return "transformers", {}
    pytest.skip("no LLM runtime installed (llama-cpp-python or transformers)")


@pytest.mark.llm
@pytest.mark.slow
def test_server_refreshes_personas_with_the_real_llm(serve_run_dir, ml100k_split, tmp_path):
    backend, config = _llm_backend()
    import json

    srv = ServerProcess(
        serve_run_dir,
        args=["--workers", "1", "--writer", "llm", "--store", f"sqlite:///{tmp_path / 'llm.db'}"],
        sets=[
            NO_AUTH, "serve.queue.debounce_s=0.2", "serve.queue.lease_s=120", f"serve.backend={backend}",
            f"serve.backend_config={json.dumps(config)}", "personas.retries=1", "personas.max_tokens=160",
        ],
    ).start(timeout_s=300)  # fmt: skip
    try:
        user = str(ml100k_split.user_ids[3])
        acked = post_events(srv.url, user, [str(x) for x in ml100k_split.item_ids[50:53]])
        p = fresh_persona(srv.url, user, timeout_s=400)
        assert p["version"] == acked["last_seq"][user]
        prov = p["persona"]["provenance"]
        assert prov["backend"] == backend and prov["output_tokens"] > 0  # the model ran
        r = httpx.get(f"{srv.url}/v1/users/{user}/recommendations?k=5")
        assert r.status_code == 200 and r.json()["persona_version"] == p["version"]
        metrics = httpx.get(f"{srv.url}/metrics").text  # an LLM persona counts as one; a fallback as a fallback
        kind = "personarec_fallbacks_total" if prov["fallback"] else "personarec_llm_personas_total"
        assert any(line.startswith(kind + " ") and float(line.split()[1]) >= 1 for line in metrics.splitlines())
    finally:
        assert srv.stop() == 0, srv.log()[-3000:]
