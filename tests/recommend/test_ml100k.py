"""Real data: a small SASRec, trained a few epochs on ML-100k, beats MostPopular on test NDCG@10
(leave-one-out, full ranking, seen items excluded), scored through the evaluation harness."""

from __future__ import annotations

import pytest

from personarec.recommend.base import build_recommender

SMALL = dict(max_len=30, hidden=32, n_blocks=1, dropout=0.2, lr=5e-3, batch_size=64, max_epochs=6, patience=3,
             patience_steps=0, seed=0, num_threads=1, show_progress=False)  # fmt: skip


@pytest.mark.slow
def test_small_sasrec_beats_most_popular_on_ml100k(ml100k_split):
    from personarec.evaluate.harness import evaluate_models

    models = {
        "popular": build_recommender("popular").fit(ml100k_split),
        "sasrec": build_recommender("sasrec", SMALL).fit(ml100k_split),
    }
    result = evaluate_models(ml100k_split, models, stage="test", ks=(10,), metrics=["accuracy"], n_boot=10,
                             exclude_seen=True, show_progress=False)  # fmt: skip
    ndcg = {row["model"]: row["ndcg@10"] for row in result.summary.iter_rows(named=True)}
    assert 0.02 < ndcg["popular"] < 0.08  # sanity: MostPopular on ML-100k is ~0.045
    assert ndcg["sasrec"] > ndcg["popular"] + 0.005, ndcg


def test_baselines_beat_popularity_on_ml100k(ml100k_split):
    from personarec.evaluate.harness import evaluate_models

    models = {name: build_recommender(name).fit(ml100k_split) for name in ("popular", "itemknn", "ease")}
    result = evaluate_models(ml100k_split, models, stage="test", ks=(10,), metrics=["accuracy"], n_boot=10,
                             show_progress=False)  # fmt: skip
    ndcg = {row["model"]: row["ndcg@10"] for row in result.summary.iter_rows(named=True)}
    assert ndcg["ease"] > ndcg["popular"] and ndcg["itemknn"] > ndcg["popular"], ndcg
