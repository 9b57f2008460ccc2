"""Cluster transition counts on a hand example, and candidate / baseline ranking."""

from __future__ import annotations

import numpy as np
import pytest

from personarec.data.splits import UserSequences
from personarec.personas.transitions import TransitionStats, recency_weights


def _seqs(users: list[list[int]]) -> UserSequences:
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum([len(u) for u in users], out=indptr[1:])
    items = np.array([i for u in users for i in u], dtype=np.int32)
    return UserSequences(indptr=indptr, items=items, timestamps=np.zeros(len(items), dtype=np.int64))


def test_counts_hand_example():
    # items 0 and 1 are both in cluster A; item 2 -> B, 3 -> C, 4 -> D, 5 -> E
    fine = np.array([0, 0, 1, 2, 3, 4], dtype=np.int32)
    # clusters: user1 A B C ; user2 C B D ; user3 B ; user4 A B A(item 1) B
    # user boundaries (D -> B, B -> A) must not count; A -> A would be a self transition
    seqs = _seqs([[0, 2, 3], [3, 2, 4], [2], [0, 2, 1, 2]])
    t = TransitionStats.fit(seqs, fine, 5)
    dense = t.counts.toarray()
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[0, 1] = 3  # A->B: user1, user4 twice
    expected[1, 2] = 1  # B->C: user1
    expected[2, 1] = 1  # C->B: user2
    expected[1, 3] = 1  # B->D: user2
    expected[1, 0] = 1  # B->A: user4
    np.testing.assert_array_equal(dense, expected)
    assert t.next_counts(0) == {1: 3}
    np.testing.assert_array_equal(t.popularity, [3, 5, 2, 1, 0])


def test_candidates_exclude_seen_and_follow_transitions():
    fine = np.array([0, 0, 1, 2, 3, 4], dtype=np.int32)
    seqs = _seqs([[0, 2, 3], [3, 2, 4], [2], [0, 2, 1, 2]])
    t = TransitionStats.fit(seqs, fine, 5)
    # a user who only knows A: B is the only observed next step, then unseen clusters by popularity
    assert t.candidates({0: 1.0}, 3) == [1, 2, 3]
    # a user who knows A and B: from B users went to C (1), D (1), A (seen): C ties D, C more popular
    assert t.candidates({0: 0.5, 1: 0.5}, 2) == [2, 3]
    assert t.most_frequent([0, 1], 2) == [2, 3]
    # explicit exclusions are honoured and never returned
    assert 2 not in t.candidates({0: 0.5, 1: 0.5}, 3, exclude=[2])


def test_sources_name_the_cluster_that_leads_to_each_candidate():
    fine = np.array([0, 0, 1, 2, 3, 4], dtype=np.int32)
    t = TransitionStats.fit(_seqs([[0, 2, 3], [3, 2, 4], [2], [0, 2, 1, 2]]), fine, 5)
    assert t.sources({0: 1.0}, [1, 2, 3]) == [0, None, None]  # only A -> B was observed from A
    assert t.sources({0: 0.5, 1: 0.5}, [2, 3]) == [1, 1]  # C and D are reached from B


def test_self_transitions_not_counted():
    t = TransitionStats.fit(_seqs([[0, 1, 0, 1]]), np.array([0, 0]), 1)
    assert t.counts.sum() == 0


def test_save_load_roundtrip(tmp_path):
    seqs = _seqs([[0, 2, 3], [3, 2, 4]])
    t = TransitionStats.fit(seqs, np.array([0, 0, 1, 2, 3, 4]), 5)
    back = TransitionStats.load(t.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.counts.toarray(), t.counts.toarray())
    np.testing.assert_array_equal(back.popularity, t.popularity)


def test_ease_prior_prefers_co_occurrence_over_popularity():
    # clusters = items here; A co-occurs with B in 2 of its 3 users, with C in 1; C is the most popular
    a, b, c, d = 0, 1, 2, 3
    users = [[a, b], [b, a], [a, c], [c, d], [d, c], [c, d], [c]]
    t = TransitionStats.fit(_seqs(users), np.arange(4), 4, ease_lambda=1.0)
    assert t.affinity is not None and t.affinity.shape == (4, 4)
    np.testing.assert_array_equal(np.diag(t.affinity), 0)
    assert t.affinity[a, b] > t.affinity[a, c]
    assert t.candidates({a: 1.0}, 1, prior="ease") == [b]
    assert t.popularity[c] > t.popularity[b]  # popularity alone would pick C
    # the source of an ease candidate is the user's cluster that supports it most
    assert t.sources({a: 0.5, d: 0.5}, [b, c], prior="ease") == [a, d]
    # seen clusters are never candidates, whatever the prior
    assert a not in t.candidates({a: 1.0}, 3, prior="ease")


def test_ease_survives_save_load_and_unknown_prior_is_an_error(tmp_path):
    t = TransitionStats.fit(_seqs([[0, 2, 3], [3, 2, 4]]), np.array([0, 0, 1, 2, 3, 4]), 5)
    back = TransitionStats.load(t.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.affinity, t.affinity)
    np.testing.assert_allclose(back.scores({1: 1.0}, "ease"), t.scores({1: 1.0}, "ease"))
    with pytest.raises(ValueError, match="unknown explore prior"):
        t.scores({1: 1.0}, "popularity")  # type: ignore[arg-type]


def test_item_ease_reads_which_items_of_a_cluster_the_user_has():
    # clusters A = items {0, 1}, B = {2, 3}, C = {4, 5}. Item 0 goes with item 2, item 1 with item 4;
    # a cluster-level relation sees only "A" and cannot tell the two users apart.
    fine = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
    users = [[0, 2], [2, 0], [0, 2, 3], [1, 4], [4, 1], [1, 4, 5], [3], [5]]
    t = TransitionStats.fit(_seqs(users), fine, 3, item_lambda=1.0)
    assert t.item_weights is not None and t.item_weights.shape == (6, 6)
    assert (t.item_weights.data > 0).all()  # only positive weights are kept
    likes_0 = recency_weights(np.array([0]), 5.0)
    likes_1 = recency_weights(np.array([1]), 5.0)
    assert t.candidates({0: 1.0}, 1, prior="item_ease", items=likes_0) == [1]
    assert t.candidates({0: 1.0}, 1, prior="item_ease", items=likes_1) == [2]
    # the user's own clusters are never candidates; the source is the cluster whose items support it
    both = recency_weights(np.array([0, 4]), 5.0)
    assert 0 not in t.candidates({0: 0.5, 2: 0.5}, 3, prior="item_ease", items=both)
    assert t.sources({0: 0.5, 2: 0.5}, [1], prior="item_ease", items=both) == [0]
    # a cluster's score is the sum over its best items of s_j = sum_i w_i B[i, j]
    s = np.asarray(t.item_weights[[0]].sum(axis=0)).ravel() * likes_0[0]
    assert t.scores({0: 1.0}, "item_ease", likes_0)[1] == pytest.approx(s[[2, 3]][s[[2, 3]] > 0].sum())


def test_item_ease_survives_save_load_and_is_required(tmp_path):
    fine = np.array([0, 0, 1, 2, 3, 4])
    t = TransitionStats.fit(_seqs([[0, 2, 3], [3, 2, 4], [0, 3]]), fine, 5, item_lambda=1.0)
    back = TransitionStats.load(t.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.item_weights.toarray(), t.item_weights.toarray())
    np.testing.assert_array_equal(back.item_cluster, t.item_cluster)
    w = recency_weights(np.array([0, 2]), 5.0)
    np.testing.assert_allclose(back.scores({0: 0.5, 1: 0.5}, "item_ease", w), t.scores({0: 0.5, 1: 0.5}, "item_ease", w))
    bare = TransitionStats.fit(_seqs([[0, 2, 3]]), fine, 5, item_lambda=None)
    with pytest.raises(ValueError, match="item EASE"):
        bare.scores({0: 1.0}, "item_ease", w)


def test_recency_weights_halve_per_half_life():
    w = recency_weights(np.array([7, 8, 7]), 1.0)
    assert w == pytest.approx({7: 1.0 + 0.25, 8: 0.5})


@pytest.mark.parametrize("prior", ["transitions", "ease", "item_ease"])
def test_explore_is_scores_candidates_and_sources_in_one_pass(prior):
    fine = np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int32)
    users = [[0, 2, 4], [1, 4, 6], [2, 6, 7], [0, 5, 3], [4, 1, 2], [6, 0, 2, 5]]
    t = TransitionStats.fit(_seqs(users), fine, 4, ease_lambda=1.0, item_lambda=1.0)
    weights, items = {0: 0.7, 1: 0.3}, recency_weights(np.array([0, 2, 1]), 5.0)
    r = t.explore(weights, 2, prior, items)
    np.testing.assert_allclose(r.scores, t.scores(weights, prior, items))
    assert r.candidates == t.candidates(weights, 2, prior=prior, items=items)
    assert r.sources() == t.sources(weights, r.candidates, prior, items)
    assert r.sources([3]) == t.sources(weights, [3], prior, items)
    assert t.explore({}, 2, prior, items).candidates == []
