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


def _space(n_items: int):
    from personarec.items.space import ItemSpace

    fine = (np.arange(n_items) % 3).astype(np.int32)
    return ItemSpace(
        item_ids=np.array([str(i) for i in range(n_items)], dtype=object),
        embeddings=np.eye(n_items, 4, dtype=np.float32), fine=fine, coarse=np.zeros(n_items, np.int32),
        semantic_ids=np.stack([fine, np.arange(n_items)], 1).astype(np.int32),
        fine_names=["a", "b", "c"], coarse_names=["all"], fine_parent=np.zeros(3, np.int32),
    )  # fmt: skip


def test_base_from_reuses_a_trained_model(tiny_split, tmp_path):
    hybrid = '{"name": "persona_hybrid", "base_from": "popular", "explore_quota": 0.0}'
    cfg = load_config(sets=[f"run_dir={tmp_path}", f"recommend.models.hybrid={hybrid}"])
    run = RunDir(tmp_path, cfg)
    space = _space(tiny_split.n_items)
    trained = train_models(cfg, run, tiny_split, ["popular", "hybrid"], items=space)
    assert trained["hybrid"].base is trained["popular"]  # no second training
    history, users = tiny_split.history("test"), np.arange(tiny_split.n_users)
    expected = trained["popular"].recommend(users, history, 2)[0]
    np.testing.assert_array_equal(trained["hybrid"].recommend(users, history, 2)[0], expected)
    again = train_models(cfg, run, tiny_split, ["hybrid"], items=space)  # base read from RUN_DIR/models/popular
    np.testing.assert_array_equal(again["hybrid"].recommend(users, history, 2)[0], expected)
    cfg2 = load_config(sets=[f"run_dir={tmp_path / 'other'}", f"recommend.models.hybrid={hybrid}"])
    with pytest.raises(ConfigError, match="base_from"):
        train_models(cfg2, RunDir(tmp_path / "other", cfg2), tiny_split, ["hybrid"], items=space)


def test_run_context_finds_the_runs_artifacts(tiny_split, tmp_path):
    from personarec.recommend.commands import run_context
    from personarec.personas.store.sqlite import SQLiteStore

    cfg = load_config(sets=[f"run_dir={tmp_path}"])
    run = RunDir(tmp_path, cfg)
    assert run_context(cfg, run) == {}  # nothing built yet: models fall back, nothing is created
    assert not (tmp_path / "personas.db").exists()
    space = _space(tiny_split.n_items)
    space.save(tmp_path / "items")
    SQLiteStore(tmp_path / "personas.db").close()  # what `personarec personas generate` leaves behind
    context = run_context(cfg, run)
    assert context["items"].n_items == tiny_split.n_items and "persona_store" in context
    assert run_context(cfg, run, items=space)["items"] is space  # the caller's copy, not a reload
