"""The protocol card decides seen-item masking for every registered model: its lists (through the
one ranking pipeline, persona rerankers included), its validation (early stopping) and serving.

Every model is fitted on the same synthetic world under a seen-excluded and a seen-kept card; with
seen items excluded no list may hold a history item, with seen items kept they must be able to
appear (k covers a large part of the catalogue, so a model that still masked them would show)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from personarec.errors import ConfigError
from personarec.evaluate.harness import evaluate_models
from personarec.recommend.base import build_recommender, load_recommender, recommender_names, target_ranks, top_k
from personarec.recommend.pipeline import RankingPipeline
from personarec.recommend.sasrec import SASRec
from tests.recommend.test_persona_retrieval import world

TINY_SEQ = dict(max_len=16, hidden=16, n_blocks=1, n_heads=1, dropout=0.0, lr=1e-2, batch_size=16, max_epochs=2,
                patience=2, seed=0, num_threads=1, show_progress=False)  # fmt: skip
#: small configs so every model fits in seconds; models not named here fit with their defaults
CONFIGS: dict[str, dict] = {
    "sasrec": TINY_SEQ,
    "persona_sasrec": TINY_SEQ,
    "text_sasrec": TINY_SEQ,
    "persona_hybrid": {"base": {"name": "itemknn"}},
    "persona_retrieval": {"query": "history", "per_cluster": 15},
    "blend": {"members": [{"name": "sasrec", **TINY_SEQ}, {"name": "itemknn"}], "grid_step": 0.5},
}
K = 60  # a third of the 180-item catalogue: a model that keeps seen items shows some of them


@pytest.fixture(scope="module")
def w():
    return world(n_users=30)


def with_card(split, exclude_seen: bool):
    return dataclasses.replace(split, protocol=split.protocol.model_copy(update={"exclude_seen": exclude_seen}))


def fitted(name: str, split, space):
    model = build_recommender(name, CONFIGS.get(name, {}))
    vectors = np.random.default_rng(0).normal(size=(split.n_users, 8)).astype(np.float32)
    return model.fit(split, items=space, persona_vectors=vectors)


@pytest.mark.parametrize("exclude_seen", [True, False], ids=["seen-excluded", "seen-kept"])
@pytest.mark.parametrize("name", recommender_names())
def test_every_model_follows_the_card(w, name, exclude_seen):
    split, space, _ = w
    split = with_card(split, exclude_seen)
    model = fitted(name, split, space)
    assert model.exclude_seen is exclude_seen
    history = split.history("test")
    users = split.eval_users("test")
    lists = RankingPipeline(model).top_items(users, history, K)
    seen_in_list = [len(np.intersect1d(lists[row], history[int(u)])) for row, u in enumerate(users)]
    if exclude_seen:
        assert sum(seen_in_list) == 0, f"{name} listed seen items under a seen-excluded card"
    else:
        assert sum(seen_in_list) > 0, f"{name} never listed a seen item under a seen-kept card"
    # the evaluation harness ranks the same lists and writes the card it followed
    result = evaluate_models(split, {name: model}, "test", (10,), items=space, metrics=["accuracy"], n_boot=10,
                             show_progress=False)  # fmt: skip
    assert result.protocol.exclude_seen is exclude_seen
    np.testing.assert_array_equal(result.recs[name], lists[:, :10])


@pytest.mark.parametrize("name", ["persona_hybrid", "persona_retrieval"])
def test_persona_models_reject_a_setting_against_the_card(w, name):
    split, space, _ = w
    model = build_recommender(name, {**CONFIGS[name], "exclude_seen": True})
    with pytest.raises(ConfigError, match="protocol card"):
        model.fit(with_card(split, False), items=space)


def test_saved_model_keeps_its_card(w, tmp_path):
    split, space, _ = w
    model = fitted("persona_hybrid", with_card(split, False), space)
    loaded = load_recommender(model.save(tmp_path / "m"))
    assert loaded.exclude_seen is False and loaded.base.exclude_seen is False
    history, users = split.history("test"), split.eval_users("test")
    np.testing.assert_array_equal(RankingPipeline(loaded).top_items(users, history, K),
                                  RankingPipeline(model).top_items(users, history, K))  # fmt: skip


def test_evaluation_override_reaches_the_persona_reranker(w):
    """An evaluation under another card than the fit's masks (or keeps) seen items in the
    persona-shaped head too, not only in the tail."""
    split, space, _ = w
    model = fitted("persona_hybrid", with_card(split, True), space)
    history, users = split.history("test"), split.eval_users("test")
    kept = RankingPipeline(model, exclude_seen=False).top_items(users, history, K)
    assert any(len(np.intersect1d(kept[r, :20], history[int(u)])) for r, u in enumerate(users))


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_sasrec_validation_follows_the_card(w, exclude_seen, monkeypatch):
    """Early stopping scores validation under the fitted card: seen items masked only when it masks them."""
    split, _, _ = w
    split = with_card(split, exclude_seen)
    model = SASRec.from_config(dict(TINY_SEQ, max_epochs=1)).fit(split)
    history, targets = split.history("train"), split.targets("valid")
    users = split.eval_users("valid")
    scores = model.score(users, history)
    if exclude_seen:
        for row, u in enumerate(users):
            scores[row, history[int(u)]] = -np.inf
    lists, _ = top_k(scores, 10)
    first = targets.items[targets.indptr[users]]
    expected = np.mean([1 / np.log2(np.flatnonzero(lst == t)[0] + 2) if t in lst else 0.0 for lst, t in zip(lists, first)])
    assert model.validation_ndcg(users, history, targets) == pytest.approx(expected)


def test_target_ranks_break_ties_like_top_k():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]], dtype=np.float32)
    order = top_k(scores, 5)[0][0]
    for target in range(5):
        assert target_ranks(scores, np.array([target]))[0] == int(np.flatnonzero(order == target)[0])
