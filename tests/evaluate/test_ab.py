"""Replayed A/B: arm assignment, bootstrap CIs, and both significance tests."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from personarec.errors import ConfigError
from personarec.evaluate.ab import KIND_AB, KIND_PAIRED, ABResult, assign_arms, replay_ab
from personarec.evaluate.harness import evaluate_models
from personarec.evaluate.stats import bootstrap_ci, holm, paired_comparison, unpaired_comparison
from tests.evaluate.conftest import oracle_model, random_model


def test_arms_are_disjoint_cover_all_users_and_are_balanced():
    arm = assign_arms(1001, 3, seed=7)
    assert arm.shape == (1001,) and set(arm.tolist()) == {0, 1, 2}  # every user exactly one arm
    sizes = np.bincount(arm)
    assert sizes.sum() == 1001 and sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(arm, assign_arms(1001, 3, seed=7))  # seeded
    assert not np.array_equal(arm, assign_arms(1001, 3, seed=8))
    weighted = np.bincount(assign_arms(1000, 2, seed=0, weights=[3, 1]))
    assert weighted.tolist() == [750, 250]
    with pytest.raises(ConfigError):
        assign_arms(10, 2, weights=[1, 0])


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_users():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 10_000):
        values = rng.binomial(1, 0.1, size=n).astype(float)
        mean, lo, hi = bootstrap_ci(values, n_boot=500, seed=1)
        assert lo <= mean <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 5  # ~1/sqrt(n): 10x narrower for 100x users
    # several columns at once give the same result as one at a time
    m = rng.random((300, 2))
    both = bootstrap_ci(m, n_boot=200, seed=3)
    one = bootstrap_ci(m[:, 1], n_boot=200, seed=3)
    assert both[1][1] == pytest.approx(one[1]) and both[2][1] == pytest.approx(one[2])


def test_paired_test_detects_a_real_difference_and_not_a_null_one(split):
    res = evaluate_models(
        split,
        {"random": random_model(split, 1), "random2": random_model(split, 5), "same": random_model(split, 1),
         "oracle": oracle_model(split, 0.3, 2)},  # fmt: skip
        "test", (10,), None, n_boot=300, show_progress=False,
    )
    col = lambda m: res.per_user[m]["ndcg@10"].to_numpy()  # noqa: E731
    real = paired_comparison(col("oracle"), col("random"), n_boot=300)
    assert real.p_value < 1e-6 and real.ci_low > 0
    identical = paired_comparison(col("same"), col("random"), n_boot=300)
    assert identical.p_value == 1.0 and identical.diff == 0.0
    null = paired_comparison(col("random2"), col("random"), n_boot=300)
    assert null.p_value > 0.05 and null.ci_low < 0 < null.ci_high
    ab_real = unpaired_comparison(col("oracle")[:150], col("random")[150:], n_boot=300)
    assert ab_real.p_value < 1e-3
    ab_null = unpaired_comparison(col("random2")[:150], col("random")[150:], n_boot=300)
    assert ab_null.p_value > 0.05


def test_holm_adjustment():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])
    assert np.isnan(holm(np.array([np.nan, 0.2]))[0])


def test_replay_ab_end_to_end(split, space, tmp_path):
    res = evaluate_models(
        split, {"random": random_model(split, 1), "oracle": oracle_model(split, 0.6, 2), "random2": random_model(split, 5)},
        "test", (5, 10), space, n_boot=200, show_progress=False,
    )  # fmt: skip
    ab = replay_ab(res, ["random", "oracle", "random2"], seed=3, n_boot=200)
    assert ab.control == "random"
    counts = ab.assignment.group_by("arm").len()
    assert counts["len"].sum() == len(res.users) and ab.assignment["user_idx"].n_unique() == len(res.users)
    assert counts["len"].max() - counts["len"].min() <= 1
    ndcg = ab.arm_metrics.filter(pl.col("metric") == "ndcg@10")
    assert ndcg.height == 3 and (ndcg["ci_low"] <= ndcg["mean"]).all() and (ndcg["mean"] <= ndcg["ci_high"]).all()
    assert {"coverage@10", "gini@10"} <= set(ab.arm_metrics["metric"].to_list())
    comp = ab.comparisons.filter(pl.col("metric") == "ndcg@10")
    assert set(comp["kind"]) == {KIND_AB, KIND_PAIRED} and "random" not in comp["model"].to_list()
    oracle = comp.filter(pl.col("model") == "oracle")
    assert oracle["significant"].all() and (oracle["diff"] > 0.2).all()
    # the paired comparison runs on all users, the A/B one on the arms only
    paired = oracle.filter(pl.col("kind") == KIND_PAIRED).row(0, named=True)
    assert paired["n_model"] == paired["n_control"] == len(res.users)
    ab_row = oracle.filter(pl.col("kind") == KIND_AB).row(0, named=True)
    assert ab_row["n_model"] + ab_row["n_control"] < len(res.users)
    ab.save(tmp_path / "ab")
    back = ABResult.load(tmp_path / "ab")
    assert back.comparisons.equals(ab.comparisons) and back.arms == ab.arms
    with pytest.raises(ConfigError):
        replay_ab(res, ["random", "nope"])
    with pytest.raises(ConfigError):
        replay_ab(res, ["random"])
