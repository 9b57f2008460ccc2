"""Every metric family against values computed by hand on the tiny world of conftest.py.

Popularity in the history (distinct users): item0 3, item1 2, item2 1, items 3-5 0; 4 users.
Hits: u0 rank 1 (item 3); u1 ranks 0 and 2 (items 1, 4) of 2 targets; u2 none.
"""

from __future__ import annotations

import numpy as np
import pytest

from personarec.evaluate.metrics import METRICS, DEFAULT_METRICS, build_metric
from personarec.evaluate.metrics.base import UserBatch, row_membership, gather_rows
from personarec.evaluate.metrics.coverage import gini
from personarec.errors import ConfigError


def per_user(name, tiny, **config):
    data, users, recs = tiny
    return build_metric(name, config).per_user(UserBatch(users, recs, data))


def test_registry_has_every_family():
    assert set(DEFAULT_METRICS) <= set(METRICS)
    with pytest.raises(ConfigError):
        build_metric("nope")


def test_membership_helpers(tiny):
    data, users, recs = tiny
    rows, items = gather_rows(data.targets, np.array([1, 3, 0]))
    assert rows.tolist() == [0, 0, 2] and items.tolist() == [1, 4, 3]
    hits = row_membership(recs, *gather_rows(data.targets, users))
    assert hits.tolist() == [[False, True, False], [True, False, True], [False, False, False]]


def test_accuracy_hand_values(tiny):
    m = per_user("accuracy", tiny)
    # u0: one target at rank 2 -> ndcg 1/log2(3); u1: 2 targets at ranks 1 and 3
    # -> dcg 1 + 1/log2(4) = 1.5, ideal 1 + 1/log2(3) = 1.6309298 -> 0.9197208
    np.testing.assert_allclose(m["ndcg@3"], [0.6309298, 0.9197208, 0.0], atol=1e-6)
    np.testing.assert_allclose(m["ndcg@1"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(m["recall@3"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(m["recall@1"], [0.0, 0.5, 0.0])
    np.testing.assert_allclose(m["hr@3"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(m["hr@1"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(m["mrr@3"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(m["mrr@1"], [0.0, 1.0, 0.0])
    assert m["ndcg@3"].mean() == pytest.approx(0.5168835, abs=1e-6)


def test_duplicate_targets_count_once(tiny):
    from tests.evaluate.conftest import seqs
    from personarec.evaluate.metrics.base import EvalData

    data, users, recs = tiny
    dup = EvalData(n_items=6, history=data.history, targets=seqs([[3, 3], [1, 4, 4], [5], []]), ks=(3,))
    m = build_metric("accuracy").per_user(UserBatch(users, recs, dup))
    np.testing.assert_allclose(m["recall@3"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(m["ndcg@3"], [0.6309298, 0.9197208, 0.0], atol=1e-6)


def test_coverage_and_gini_hand_values(tiny):
    data, users, recs = tiny
    metric = build_metric("coverage", {"cluster_k": 3})
    g = metric.global_(recs, users, data)
    assert g["coverage@1"] == pytest.approx(2 / 6)  # items {2, 1}
    assert g["coverage@3"] == pytest.approx(4 / 6)  # items {1, 2, 3, 4}
    # counts [0,2,2,3,2,0] sorted [0,0,2,2,2,3]: sum((2i-7) x_i) = 21, / (6 * 9)
    assert g["gini@3"] == pytest.approx(21 / 54)
    assert gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 9])) == pytest.approx(0.75)


def test_per_cluster_coverage_hand_values(tiny):
    data, users, recs = tiny
    table = build_metric("coverage", {"cluster_k": 3}).tables(recs, users, data)["cluster_coverage"]
    assert table["name"].to_list() == ["a", "b", "c"]
    assert table["size"].to_list() == [2, 2, 2]
    assert table["covered"].to_list() == [1, 2, 1]
    np.testing.assert_allclose(table["coverage"].to_numpy(), [0.5, 1.0, 0.5])
    np.testing.assert_allclose(table["rec_share"].to_numpy(), [2 / 9, 5 / 9, 2 / 9])
    np.testing.assert_allclose(table["target_share"].to_numpy(), [0.25, 0.25, 0.5])  # targets 3,1,4,5


def test_novelty_hand_values(tiny):
    # self-information: item0 -log2(3/4)=0.415, item1 1, item2 2, unseen items 3-5 count as 1 user -> 2
    m = per_user("novelty", tiny)
    np.testing.assert_allclose(m["novelty@3"], [2.0, 5 / 3, 5 / 3])
    np.testing.assert_allclose(m["novelty@1"], [2.0, 1.0, 1.0])


def test_intra_list_diversity_hand_values(tiny):
    # u0 [2,3,4]: cos 0.7071, 0, 0.7071 -> 1 - 1.41421/3; u1 [1,3,4]: cos .7071, 1, .7071; u2 [1,2,3]: 0, .7071, .7071
    m = per_user("diversity", tiny)
    np.testing.assert_allclose(m["ild@3"], [1 - np.sqrt(2) / 3, 1 - (1 + np.sqrt(2)) / 3, 1 - np.sqrt(2) / 3], atol=1e-6)
    np.testing.assert_allclose(m["ild@1"], [0.0, 0.0, 0.0])


def test_diversity_chunking_does_not_change_values(tiny):
    a = per_user("diversity", tiny)
    b = per_user("diversity", tiny, chunk_users=1)
    np.testing.assert_allclose(a["ild@3"], b["ild@3"])


def test_exploration_hand_values(tiny):
    # history fine clusters: u0 {0}, u1 {0,1}, u2 {0}; rec clusters u0 [1,1,2], u1 [0,1,2], u2 [0,1,1]
    m = per_user("exploration", tiny)
    np.testing.assert_allclose(m["exploration@3"], [1.0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(m["exploration@1"], [1.0, 0.0, 0.0])
    # coarse: history {0} for all; rec coarse u0 [0,0,1], u1 [0,0,1], u2 [0,0,0]
    coarse = per_user("exploration", tiny, level="coarse")
    np.testing.assert_allclose(coarse["exploration@3"], [1 / 3, 1 / 3, 0.0])


def test_serendipity_hand_values(tiny):
    # popular_n=2 -> items {0, 1} expected. u0's hit item 3 (cluster 1, not in history {0}) counts: 1/1.
    # u1's hit item 1 is popular; hit item 4 (cluster 2, history {0,1}) counts: 1 of 2 targets.
    m = per_user("serendipity", tiny, popular_n=2)
    np.testing.assert_allclose(m["serendipity@3"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(m["serendipity@1"], [0.0, 0.0, 0.0])
    # coarse: item 3 is in coarse 0 = u0's history, so only u1's item 4 (coarse 1) stays unexpected
    coarse = per_user("serendipity", tiny, popular_n=2, level="coarse")
    np.testing.assert_allclose(coarse["serendipity@3"], [0.0, 0.5, 0.0])
    # a popularity list covering the hits removes them
    big = per_user("serendipity", tiny, popular_n=6)
    np.testing.assert_allclose(big["serendipity@3"], [0.0, 0.0, 0.0])


def test_serendipity_never_exceeds_recall(tiny):
    ser = per_user("serendipity", tiny, popular_n=0)
    acc = per_user("accuracy", tiny)
    assert np.all(ser["serendipity@3"] <= acc["recall@3"] + 1e-12)


def test_short_lists_when_catalogue_smaller_than_k(tiny):
    data, users, recs = tiny
    from personarec.evaluate.metrics.base import EvalData

    wide = EvalData(n_items=6, history=data.history, targets=data.targets, ks=(3, 10), items=data.items)
    m = build_metric("accuracy").per_user(UserBatch(users, recs, wide))
    np.testing.assert_allclose(m["ndcg@10"], m["ndcg@3"])
