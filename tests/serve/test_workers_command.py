"""``personarec workers`` refuses what its worker processes could not run, before starting any."""

from __future__ import annotations

import pytest

from personarec.config import load_config
from personarec.errors import ConfigError
from personarec.serve.server import run_workers


def test_workers_fail_early_with_a_message(serve_run_dir, tmp_path):
    cfg = load_config(None, {"run_dir": str(serve_run_dir)})
    with pytest.raises(ConfigError, match="serving needs"):
        run_workers(cfg, serve_run_dir, {"store": f"parquet:///{tmp_path / 'sink'}", "workers": 1})
    with pytest.raises(ConfigError, match="split and item space"):
        run_workers(load_config(None, {"run_dir": str(tmp_path)}), tmp_path / "empty", {"workers": 1})
    with pytest.raises(ConfigError, match="at least 1"):
        run_workers(cfg, serve_run_dir, {"workers": 0})
