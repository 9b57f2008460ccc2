"""The score blend: its weight grid, the weights validation chooses (measured like the evaluated
lists), fitted members reused without refitting, the protocol card, and persistence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from personarec.config import load_config
from personarec.errors import ConfigError
from personarec.evaluate.harness import evaluate_models
from personarec.recommend.base import build_recommender, load_recommender
from personarec.recommend.blend import Blend, standardise, weight_grid
from personarec.recommend.pipeline import RankingPipeline
from personarec.recommend.service import RunService
from tests.recommend.test_persona_retrieval import world

MEMBERS = [{"name": "popular"}, {"name": "itemknn", "neighbours": 20, "shrink": 0.0}]


@pytest.fixture(scope="module")
def w():
    return world(n_users=40)


@pytest.fixture(scope="module")
def fitted_members(w):
    split = w[0]
    return tuple(build_recommender(m["name"], m).fit(split) for m in MEMBERS)


def test_weight_grid_covers_the_simplex_single_members_first():
    grid = weight_grid(2, 0.5)
    np.testing.assert_allclose(grid, [[1, 0], [0, 1], [0.5, 0.5]])
    three = weight_grid(3, 0.1)
    assert len(three) == 66 and np.allclose(three.sum(axis=1), 1) and (three >= 0).all()
    assert len({tuple(p) for p in three.round(6)}) == 66
    with pytest.raises(ConfigError, match="grid_step"):
        weight_grid(6, 0.02)


def test_standardise_rows():
    z = standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    np.testing.assert_array_equal(z[1], 0.0)


def test_validation_scores_each_setting_as_the_evaluation_does(w, fitted_members):
    """The vertex of a member is that member alone: the blend's validation NDCG there equals the
    harness's validation NDCG of the member (same masking, tie-break, targets); the kept weights
    are the best setting."""
    split = w[0]
    blend = Blend.from_config({"members": MEMBERS, "grid_step": 0.25}).fit(split, members=fitted_members)
    by_weights = {tuple(v["weights"]): v["ndcg"] for v in blend.validation_}
    assert len(by_weights) == 5
    for vertex, member in zip([(1.0, 0.0), (0.0, 1.0)], fitted_members):
        harness = evaluate_models(split, {"m": member}, "valid", (10,), metrics=["accuracy"], n_boot=10, show_progress=False)
        assert by_weights[vertex] == pytest.approx(harness.summary["ndcg@10"][0], abs=1e-9)
    best = max(blend.validation_, key=lambda v: v["ndcg"])
    np.testing.assert_allclose(blend.weights, best["weights"])
    # and the blend's own validation list scores what the table says
    as_model = Blend.from_config({"members": MEMBERS, "weights": list(blend.weights)}).fit(split, members=fitted_members)
    harness = evaluate_models(split, {"b": as_model}, "valid", (10,), metrics=["accuracy"], n_boot=10, show_progress=False)
    assert harness.summary["ndcg@10"][0] == pytest.approx(best["ndcg"], abs=1e-9)


def test_scores_are_the_weighted_standardised_member_scores(w, fitted_members):
    split = w[0]
    blend = Blend.from_config({"members": MEMBERS, "weights": [3.0, 1.0]}).fit(split, members=fitted_members)
    np.testing.assert_allclose(blend.weights, [0.75, 0.25])
    history, users = split.history("test"), np.arange(split.n_users)
    expected = sum(wt * standardise(m.score(users, history)) for wt, m in zip([0.75, 0.25], fitted_members))
    np.testing.assert_allclose(blend.score(users, history), expected, rtol=1e-5, atol=1e-5)
    row = blend.score_sequence(history[3])
    np.testing.assert_allclose(row, blend.score(np.array([3]), history)[0], rtol=1e-5, atol=1e-5)


def test_fitted_members_are_reused_and_recorded(w, fitted_members):
    split = w[0]
    blend = Blend.from_config({"grid_step": 0.5}).fit(split, members=fitted_members)
    assert blend.members[0] is fitted_members[0] and blend.members[1] is fitted_members[1]
    assert [m["name"] for m in blend.get_config()["members"]] == ["popular", "itemknn"]


def test_a_zero_weight_member_is_not_scored(w, fitted_members, monkeypatch):
    split = w[0]
    blend = Blend.from_config({"members": MEMBERS, "weights": [0.0, 1.0]}).fit(split, members=fitted_members)

    def fail(*args, **kwargs):
        raise AssertionError("a member with weight 0 was scored")

    monkeypatch.setattr(fitted_members[0], "score", fail)
    history = split.history("test")
    np.testing.assert_allclose(
        blend.score(np.arange(5), history), standardise(fitted_members[1].score(np.arange(5), history)), rtol=1e-6
    )


def test_members_fitted_under_another_card_are_refused(w, fitted_members):
    split = w[0]
    kept = dataclasses.replace(split, protocol=split.protocol.model_copy(update={"exclude_seen": False}))
    with pytest.raises(ConfigError, match="protocol card"):
        Blend.from_config({"members": MEMBERS}).fit(kept, members=fitted_members)


def test_bad_configs_are_clear_errors(w, fitted_members):
    with pytest.raises(ValueError, match="name"):
        Blend.from_config({"members": [{"name": "popular"}, {"neighbours": 3}]})
    with pytest.raises(ValueError, match="positive sum"):
        Blend.from_config({"weights": [0.0, 0.0]})
    with pytest.raises(ConfigError, match="2 members"):
        Blend.from_config({"members": MEMBERS, "weights": [1.0, 1.0, 1.0]}).fit(w[0], members=fitted_members)


def test_fits_its_own_members_and_round_trips(w, tmp_path):
    split = w[0]
    blend = build_recommender("blend", {"members": MEMBERS, "grid_step": 0.25}).fit(split)
    assert [m.name for m in blend.members] == ["popular", "itemknn"]
    loaded = load_recommender(blend.save(tmp_path / "blend"))
    assert isinstance(loaded, Blend) and loaded.validation_ == blend.validation_
    history, users = split.history("test"), split.eval_users("test")
    np.testing.assert_array_equal(RankingPipeline(loaded).top_items(users, history, 10),
                                  RankingPipeline(blend).top_items(users, history, 10))  # fmt: skip


def test_members_from_blends_the_runs_trained_models(w, tmp_path):
    split = w[0]
    blend_cfg = '{"name": "blend", "members_from": ["popular", "knn"], "grid_step": 0.5}'
    knn = '{"name": "itemknn", "neighbours": 20, "shrink": 0.0}'
    cfg = load_config(sets=[f"run_dir={tmp_path}", f"recommend.models.knn={knn}", f"recommend.models.mix={blend_cfg}"])
    trained = RunService.of(cfg, split=split).train(["popular", "knn", "mix"])
    assert trained["mix"].members[0] is trained["popular"] and trained["mix"].members[1] is trained["knn"]
    cfg2 = load_config(sets=[f"run_dir={tmp_path / 'other'}", f"recommend.models.mix={blend_cfg}"])
    with pytest.raises(ConfigError, match="members_from"):
        RunService.of(cfg2, split=split).train(["mix"])
