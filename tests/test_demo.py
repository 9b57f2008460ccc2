"""The README's main command, end to end on ML-100k, cut short (1 SASRec epoch, LLM personas for
a sample of users), in data-flow order: the persona model ranks with the personas written first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def embedding_cache(request, tmp_path) -> Path:
    cache = getattr(request.config, "cache", None)  # shared with the items tests: ML-100k is embedded once
    return Path(cache.mkdir("personarec-embeddings")) if cache is not None else tmp_path / "embeddings"


@pytest.mark.demo
@pytest.mark.llm
@pytest.mark.slow
def test_demo_runs_end_to_end(ml100k_dir, tmp_path, embedding_cache):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "personarec.cli", "demo", "--config", str(ROOT / "configs" / "demo.toml"),
        "--run-dir", str(run_dir), "--set", "personas.sample_users=24",
        "--set", f"data.data_dir={ml100k_dir}", "--set", f"items.cache_dir={embedding_cache}",
        "--set", "recommend.models.sasrec.max_epochs=1", "--set", "recommend.models.sasrec.num_threads=1",
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="160")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = (run_dir / "report.html").read_text()
    for expected in ("Protocol card", "persona_hybrid", "sasrec", "Replayed A/B"):
        assert expected in report, f"{expected!r} missing from the report"
    summary = json.loads((run_dir / "eval" / "results.json").read_text())
    assert "persona_hybrid" in json.dumps(summary)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {"items", "personas", "train.sasrec", "train.persona_hybrid"} <= set(manifest["stages"])
    order = list(manifest["stages"])
    assert order.index("personas") < order.index("train.persona_hybrid")  # personas first
    # the persona model's lists used the LLM personas written by the personas stage
    llm_written = manifest["stages"]["personas"]["generated"]
    counts = summary["personas"]["persona_hybrid"]
    assert counts["llm"] == llm_written > 0, (counts, llm_written)
    assert "Personas in the loop" in report
