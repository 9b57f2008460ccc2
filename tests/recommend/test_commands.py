"""The run service: training with per-model knobs, one loader (each model once, persona store
attached), the run's artifacts found where the stages wrote them; the typed fit context."""

from __future__ import annotations

import numpy as np
import pytest

from personarec.config import load_config
from personarec.errors import ConfigError, DataError
from personarec.recommend.base import FitContext, build_recommender
from personarec.recommend.service import RunService
from tests.ranking import top


def test_train_saves_and_the_one_loader_reloads(tiny_split, tmp_path):
    cfg = load_config(sets=[
        f"run_dir={tmp_path}",
        "recommend.models.knn1={\"name\": \"itemknn\", \"neighbours\": 1}",
        "recommend.models.sasrec={\"max_epochs\": 1, \"hidden\": 8, \"max_len\": 4, \"show_progress\": false, \"num_threads\": 1}",
    ])  # fmt: skip
    service = RunService.of(cfg, split=tiny_split)
    trained = service.train(["popular", "knn1", "sasrec"])
    assert trained["knn1"].config.neighbours == 1
    assert trained["sasrec"].config.seed == cfg.seed  # the run's seed reaches seeded models
    assert (tmp_path / "models" / "sasrec" / "checkpoint.pt").exists()
    assert service.model("sasrec") is trained["sasrec"]  # the trained object, not a reload
    fresh = RunService.of(cfg, split=tiny_split)
    loaded = fresh.models()
    assert sorted(loaded) == ["knn1", "popular", "sasrec"] and fresh.model("knn1") is loaded["knn1"]  # loaded once
    assert fresh.default_model() == "sasrec"  # no persona hybrid trained: SASRec is served
    history = tiny_split.history("test")
    for name, model in trained.items():
        np.testing.assert_allclose(loaded[name].score(np.arange(5), history), model.score(np.arange(5), history), rtol=1e-6)
    assert "train.sasrec" in service.run.manifest()["stages"]


def test_unknown_or_missing_models_are_clear_errors(tiny_split, tmp_path):
    cfg = load_config(sets=[f"run_dir={tmp_path}"])
    service = RunService.of(cfg, split=tiny_split)
    with pytest.raises(ConfigError, match="unknown recommender"):
        service.train(["nope"])
    with pytest.raises(DataError, match="no trained model"):
        service.default_model()
    with pytest.raises(DataError, match=r"no trained model 'sasrec'"):
        service.model("sasrec")
    with pytest.raises(DataError, match=r"no trained model for \['popular'\]"):
        service.models(["popular"])
    assert list(service.models(["popular"], train_missing=True)) == ["popular"]


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
    space = _space(tiny_split.n_items)
    trained = RunService.of(cfg, split=tiny_split, items=space).train(["popular", "hybrid"])
    assert trained["hybrid"].base is trained["popular"]  # no second training
    history, users = tiny_split.history("test"), np.arange(tiny_split.n_users)
    expected = top(trained["popular"], users, history, 2)[0]
    np.testing.assert_array_equal(top(trained["hybrid"], users, history, 2)[0], expected)
    again = RunService.of(cfg, split=tiny_split, items=space).train(["hybrid"])  # base read from RUN_DIR/models/popular
    np.testing.assert_array_equal(top(again["hybrid"], users, history, 2)[0], expected)
    cfg2 = load_config(sets=[f"run_dir={tmp_path / 'other'}", f"recommend.models.hybrid={hybrid}"])
    with pytest.raises(ConfigError, match="base_from"):
        RunService.of(cfg2, split=tiny_split, items=space).train(["hybrid"])


def test_the_service_finds_the_runs_artifacts_and_attaches_the_store(tiny_split, tmp_path):
    from personarec.personas.store.sqlite import SQLiteStore

    cfg = load_config(sets=[f"run_dir={tmp_path}"])
    service = RunService.of(cfg, split=tiny_split)
    assert service.fit_context() == FitContext()  # nothing built yet: models fall back, nothing is created
    assert not (tmp_path / "personas.db").exists()
    space = _space(tiny_split.n_items)
    space.save(tmp_path / "items")
    SQLiteStore(tmp_path / "personas.db").close()  # what `personarec personas generate` leaves behind
    service = RunService.of(cfg, split=tiny_split)
    context = service.fit_context()
    assert context.items.n_items == tiny_split.n_items and context.persona_store is not None
    assert RunService.of(cfg, split=tiny_split, items=space).fit_context().items is space  # the caller's copy
    build_recommender("persona_hybrid", {"base": {"name": "popular"}}).fit(tiny_split, items=space).save(tmp_path / "models" / "persona_hybrid")
    assert service.default_model() == "persona_hybrid"  # the persona stays in the loop when served
    assert service.model().persona_store is service.persona_store  # loaded with the run's store attached
    service.close()


def test_fit_context_is_typed():
    with pytest.raises(ConfigError, match="persona_embeder"):
        build_recommender("popular").fit(None, persona_embeder=object())  # a typo is an error, not ignored
    ctx = FitContext.of(None, embed_cache=None)
    assert FitContext.of(ctx, base="b").base == "b" and ctx.base is None  # copies, never mutates


def test_the_interface_imports_no_implementation():
    """base.py names the built-ins by module path: importing it (or asking for one model) loads
    nothing else, so there is no import cycle between the interface and the registry."""
    import subprocess
    import sys

    code = (
        "import sys; import personarec.recommend.base as b; "
        "assert not [m for m in sys.modules if m.startswith('personarec.recommend.') and m != 'personarec.recommend.base'], sys.modules; "
        "b.build_recommender('popular'); assert 'personarec.recommend.sasrec' not in sys.modules and 'torch' not in sys.modules; "
        "assert set(b.all_recommenders()) == set(b.BUILT_IN)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
