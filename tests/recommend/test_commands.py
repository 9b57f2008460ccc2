"""`personarec train` plumbing: config section, per-model knobs, saved models reload."""

from __future__ import annotations

import numpy as np
import pytest

from personarec.config import load_config
from personarec.errors import ConfigError
from personarec.recommend.commands import load_models, train_models
from personarec.run import RunDir


def test_train_models_saves_and_reloads(tiny_split, tmp_path):
    cfg = load_config(sets=[
        f"run_dir={tmp_path}",
        "recommend.models.knn1={\"name\": \"itemknn\", \"neighbours\": 1}",
        "recommend.models.sasrec={\"max_epochs\": 1, \"hidden\": 8, \"max_len\": 4, \"show_progress\": false, \"num_threads\": 1}",
    ])  # fmt: skip
    run = RunDir(tmp_path, cfg)
    trained = train_models(cfg, run, tiny_split, ["popular", "knn1", "sasrec"])
    assert trained["knn1"].config.neighbours == 1
    assert trained["sasrec"].config.seed == cfg.seed  # the run's seed reaches seeded models
    assert (tmp_path / "models" / "sasrec" / "checkpoint.pt").exists()
    loaded = load_models(run)
    assert sorted(loaded) == ["knn1", "popular", "sasrec"]
    history = tiny_split.history("test")
    for name, model in trained.items():
        np.testing.assert_allclose(loaded[name].score(np.arange(5), history), model.score(np.arange(5), history), rtol=1e-6)
    assert "train.sasrec" in run.manifest()["stages"]


def test_unknown_model_is_a_config_error(tiny_split, tmp_path):
    cfg = load_config(sets=[f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError):
        train_models(cfg, RunDir(tmp_path, cfg), tiny_split, ["nope"])
