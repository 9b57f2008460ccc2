"""The full-ranking harness on a synthetic split with real (table-driven) recommenders."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from personarec.evaluate.harness import EvalResult, effective_batch_size, evaluate_models, print_result
from tests.evaluate.conftest import oracle_model, random_model


@pytest.fixture(scope="module")
def result(split, space):
    models = {"random": random_model(split, 1), "oracle": oracle_model(split, 0.5, 2)}
    return evaluate_models(split, models, "test", (5, 10), space, batch_size=64, n_boot=200, show_progress=False)


def brute_force_ndcg(split, model, k):
    """One user at a time, plain Python: the reference the vectorised path must match."""
    history, targets = split.history("test"), split.targets("test")
    values = []
    for u in split.eval_users("test"):
        scores = model.score(np.array([u]), history)[0].astype(np.float64)
        scores[history[u]] = -np.inf
        ranked = list(np.argsort(-scores, kind="stable")[:k])
        relevant = set(targets[u].tolist())
        dcg = sum(1 / np.log2(r + 2) for r, i in enumerate(ranked) if i in relevant)
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(relevant), k)))
        values.append(dcg / idcg)
    return float(np.mean(values))


def test_summary_and_per_user_shapes(result, split):
    assert result.models == ["random", "oracle"]
    n = len(split.eval_users("test"))
    for name in result.models:
        assert result.per_user[name].height == n
        assert result.recs[name].shape == (n, 10)
        # full ranking with seen items excluded: no recommended item is in the user's history
        history = split.history("test")
        for row, u in enumerate(result.users[:50]):
            assert not set(result.recs[name][row].tolist()) & set(history[u].tolist())
    cols = set(result.summary.columns)
    for c in ("recall@10", "ndcg@5", "mrr@10", "hr@10", "coverage@10", "gini@10", "ild@10", "novelty@10",
              "serendipity@10", "exploration@10", "rank_s"):  # fmt: skip
        assert c in cols, c
    assert set(result.tables["oracle"]) == {"cluster_coverage"}


def test_matches_brute_force_and_orders_models(result, split):
    ndcg = dict(zip(result.summary["model"], result.summary["ndcg@10"]))
    assert ndcg["random"] == pytest.approx(brute_force_ndcg(split, random_model(split, 1), 10), abs=1e-9)
    assert ndcg["oracle"] == pytest.approx(brute_force_ndcg(split, oracle_model(split, 0.5, 2), 10), abs=1e-9)
    assert ndcg["oracle"] > ndcg["random"] + 0.3


def test_intervals_bracket_the_means(result):
    for row in result.intervals.iter_rows(named=True):
        assert row["ci_low"] - 1e-12 <= row["mean"] <= row["ci_high"] + 1e-12, row


def test_batch_size_does_not_change_results(split, space, result):
    other = evaluate_models(split, {"random": random_model(split, 1)}, "test", (5, 10), space,
                            batch_size=7, n_boot=200, show_progress=False)  # fmt: skip
    np.testing.assert_array_equal(other.recs["random"], result.recs["random"])
    assert other.summary.drop("rank_s").row(0) == result.summary.drop("rank_s").row(0)


def test_rank_memory_caps_the_batch():
    assert effective_batch_size(1024, 100_000, 256) == 167  # 256 MiB / (16 B * 1e5 items) = 167.8
    assert effective_batch_size(1024, 10_000, 256) == 1024
    assert effective_batch_size(1024, 10**9, 1) == 1


def test_without_item_space_skips_with_a_note(split):
    res = evaluate_models(split, {"random": random_model(split, 1)}, "test", (10,), None, n_boot=50, show_progress=False)
    assert "ild@10" not in res.summary.columns and "ndcg@10" in res.summary.columns
    assert "coverage@10" in res.summary.columns and res.tables["random"] == {}
    assert any("diversity" in n and "serendipity" in n and "exploration" in n for n in res.notes)


def test_exclude_seen_override_is_on_the_card(split):
    res = evaluate_models(split, {"r": random_model(split, 1)}, "test", (10,), exclude_seen=False, n_boot=50, show_progress=False)
    assert res.protocol.exclude_seen is False and split.protocol.exclude_seen is True
    history = split.history("test")
    seen = sum(len(set(res.recs["r"][i]) & set(history[u].tolist())) for i, u in enumerate(res.users))
    assert seen > 0  # seen items do come back when they are not masked


def test_save_load_round_trip_keeps_the_protocol_card(result, tmp_path, capsys):
    result.save(tmp_path / "eval")
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert doc["protocol"]["dataset"] == "synthetic" and any("seen items" in l for l in doc["protocol_card"])
    meta = pq.read_schema(tmp_path / "eval" / "summary.parquet").metadata
    assert json.loads(meta[b"personarec.protocol"])["n_users"] == result.protocol.n_users
    back = EvalResult.load(tmp_path / "eval")
    assert back.models == result.models and back.protocol == result.protocol
    np.testing.assert_array_equal(back.recs["oracle"], result.recs["oracle"])
    assert back.per_user["oracle"].equals(result.per_user["oracle"])
    assert back.tables["oracle"]["cluster_coverage"].equals(result.tables["oracle"]["cluster_coverage"])


def test_printed_tables_carry_the_card(result):
    from rich.console import Console

    console = Console(record=True, width=200)
    print_result(result, console)
    text = console.export_text()
    assert "Protocol card" in text and "ndcg@10" in text and "leave-one-out" in text
