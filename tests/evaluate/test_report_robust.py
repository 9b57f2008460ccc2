"""The report never fails on what an evaluation can legitimately produce: zero-width or rounded
intervals, one list for every user, no item space, one user, NaN metrics. It says so instead."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personarec.config import load_config
from personarec.data.protocol import ProtocolCard
from personarec.evaluate.ab import replay_ab
from personarec.evaluate.commands import run_evaluation
from personarec.evaluate.harness import EvalResult
from personarec.evaluate.report import SECTIONS, interval_issue, write_report
from personarec.evaluate.stats import bootstrap_ci
from personarec.recommend.popular import MostPopular
from personarec.run import RunDir
from tests.evaluate.conftest import random_model, synthetic_space, synthetic_split

K = 10
METRICS = (f"ndcg@{K}", f"recall@{K}", f"mrr@{K}", f"novelty@{K}", f"ild@{K}")
#: every section that draws or formats numbers (the persona-effect section reads another file)
DRAWN = ("protocol", "summary", "bars", "tradeoff", "clusters", "ab", "timings")


def images(page: str) -> int:
    return len(re.findall(r"data:image/png;base64,", page))


def test_seen_items_kept_popular_same_list_for_everyone_renders(tmp_path):
    """Issue 13's crash: seen items kept, MostPopular ranks one list for all users, its novelty
    interval collapsed ~1e-15 beside the mean and errorbar raised "'xerr' must not contain negative values"."""
    split = synthetic_split(n_users=40)  # 40 users: the old bootstrap put novelty@10's CI above its mean here
    cfg = load_config(None, {"run_dir": str(tmp_path), "evaluate.n_boot": 100, "evaluate.ks": [5, 10],
                             "evaluate.exclude_seen": False})  # fmt: skip
    result = run_evaluation(cfg, RunDir(tmp_path, cfg), split, {"popular": MostPopular().fit(split)}, items=synthetic_space(split))
    recs = result.recs["popular"]
    assert (recs == recs[0]).all()  # the precondition: one list for every user
    novelty = result.intervals.filter(pl.col("metric") == "novelty@10").row(0, named=True)
    assert novelty["ci_low"] == novelty["mean"] == novelty["ci_high"]  # exact now, not 1e-15 off

    page = write_report(tmp_path).read_text()
    assert "gives all 40 evaluated users the same list" in page
    assert "interval degenerate (zero width) for popular" in page and "novelty@10" in page
    assert images(page) >= 3  # bars, accuracy vs novelty, per-cluster coverage

    # the saved intervals exactly as the old bootstrap wrote them: the mean just outside [lo, hi]
    iv = result.intervals.with_columns(
        pl.when(pl.col("metric").str.starts_with("novelty")).then(pl.col("mean") + 1e-15).otherwise(pl.col("ci_low")).alias("ci_low"),
        pl.when(pl.col("metric").str.starts_with("novelty")).then(pl.col("mean") + 2e-15).otherwise(pl.col("ci_high")).alias("ci_high"),
    )  # fmt: skip
    iv.write_parquet(tmp_path / "eval" / "intervals.parquet")
    page = write_report(tmp_path, tmp_path / "old.html").read_text()
    assert "interval degenerate (zero width) for popular" in page and images(page) >= 3


def test_one_user_two_arms_evaluates_and_reports(tmp_path):
    """One evaluated user: one A/B arm is empty (its bootstrap used to fail on reshaping no rows),
    every interval has zero width, and there is no item space."""
    split = synthetic_split(n_users=1)
    cfg = load_config(None, {"run_dir": str(tmp_path), "evaluate.n_boot": 50, "evaluate.ks": [5, 10]})
    result = run_evaluation(cfg, RunDir(tmp_path, cfg), split, {"popular": MostPopular().fit(split), "random": random_model(split, 1)})
    assert len(result.users) == 1 and result.ab is not None
    page = write_report(tmp_path).read_text()
    assert "one evaluated user" in page and "interval degenerate (zero width) for popular" in page
    assert "A/B arm NaN: " in page and "No item space" in page


# -- property tests: any per-user values, any (degenerate) interval ---------------------------------
values_kind = st.sampled_from(["random", "constant", "with-nan", "all-nan"])
interval_kind = st.sampled_from(["bootstrap", "rounded-outside", "zero-width", "inverted", "nan", "missing"])


@st.composite
def eval_results(draw: st.DrawFn) -> EvalResult:
    n_users = draw(st.integers(1, 6))
    n_items = 12
    models = [f"m{i}" for i in range(draw(st.integers(1, 3)))]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    users = np.arange(n_users, dtype=np.int64)
    per_user, summary, intervals, recs, tables = {}, [], [], {}, {}
    for m in models:
        cols = {}
        for metric in METRICS:
            kind = draw(values_kind)
            v = rng.random(n_users) if kind != "constant" else np.full(n_users, draw(st.floats(0, 5)))
            if kind == "with-nan":
                v[rng.integers(n_users)] = np.nan
            elif kind == "all-nan":
                v[:] = np.nan
            cols[metric] = v
            mean, lo, hi = (float(x) for x in bootstrap_ci(v, n_boot=20))
            ik = draw(interval_kind)
            if ik == "rounded-outside":
                lo, hi = mean + 1e-15, mean + 3e-15  # what float noise did to a collapsed interval
            elif ik == "zero-width":
                lo = hi = mean
            elif ik == "inverted":
                lo, hi = hi, lo
            elif ik == "nan":
                lo = hi = float("nan")
            intervals.append({"model": m, "metric": metric, "mean": mean, "ci_low": None if ik == "missing" else lo,
                              "ci_high": None if ik == "missing" else hi})  # fmt: skip
        per_user[m] = pl.DataFrame({"user_idx": users, **cols})
        summary.append({"model": m, "users": n_users, **{c: float(np.mean(v)) for c, v in cols.items()}})
        recs[m] = (np.tile(rng.permutation(n_items)[:K], (n_users, 1)) if draw(st.booleans())
                   else np.stack([rng.permutation(n_items)[:K] for _ in range(n_users)])).astype(np.int32)  # fmt: skip
        space = draw(st.sampled_from(["none", "clusters", "empty"]))
        if space != "none":
            n_fine = 0 if space == "empty" else 3
            tables[m] = {"cluster_coverage": pl.DataFrame({
                "name": [f"c{c}" for c in range(n_fine)], "k": [K] * n_fine, "covered": rng.integers(0, 3, n_fine),
                "coverage": rng.random(n_fine), "rec_share": rng.random(n_fine), "target_share": rng.random(n_fine),
                "catalogue_share": np.full(n_fine, 1 / 3)}, schema_overrides={"k": pl.Int64, "covered": pl.Int64})}  # fmt: skip
    schema = {"model": pl.Utf8, "metric": pl.Utf8, "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}
    return EvalResult(
        stage="test", ks=(5, K), protocol=ProtocolCard(dataset="synthetic", split="leave-one-out", n_items=n_items),
        users=users, per_user=per_user, summary=pl.DataFrame(summary), intervals=pl.DataFrame(intervals, schema=schema),
        tables=tables, recs=recs, timings={m: {"rank_s": 0.0, "metrics_s": 0.0, "users_per_s": float("inf")} for m in models},
    )  # fmt: skip


@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(res=eval_results(), with_ab=st.booleans())
def test_any_result_renders_and_says_what_is_degenerate(res, with_ab):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        res.save(run / "eval")
        if with_ab and len(res.models) >= 2:
            replay_ab(res, n_boot=20).save(run / "eval" / "ab")
        page = write_report(run, sections=[s for s in SECTIONS if s.key in DRAWN]).read_text()
    assert "Protocol card" in page and "Results" in page
    issues = {interval_issue(r["mean"], r["ci_low"], r["ci_high"]) for r in res.intervals.iter_rows(named=True)}
    # the notes on the evaluation's own intervals (the A/B arms' notes start "A/B arm ...")
    assert ("<li>interval degenerate" in page) == ("degenerate" in issues)
    assert ("<li>NaN: " in page) == ("nan" in issues)
    assert ("<li>mean outside its interval" in page) == ("outside" in issues)
    if len(res.users) == 1:
        assert "one evaluated user" in page
    if any(len(r) > 1 and (r == r[0]).all() for r in res.recs.values()):
        assert "the same list" in page


def test_interval_issue_classifies_rounding_as_degenerate_not_outside():
    assert interval_issue(0.5, 0.5 + 1e-15, 0.5 + 2e-15) == "degenerate"
    assert interval_issue(0.5, 0.4, 0.6) is None
    assert interval_issue(0.5, 0.5 - 1e-16, 0.6) is None  # rounding, silently clipped
    assert interval_issue(0.7, 0.4, 0.6) == "outside"
    assert interval_issue(0.5, None, 0.6) == "nan" and interval_issue(math.nan, 0.4, 0.6) == "nan"


def test_bootstrap_ci_is_exact_for_constant_and_nan_for_nothing():
    mean, lo, hi = bootstrap_ci(np.full((40, 2), 1.468359), n_boot=100)
    assert (lo == mean).all() and (hi == mean).all()
    mean, lo, hi = bootstrap_ci(np.zeros((0, 3)), n_boot=10)  # an empty A/B arm
    assert mean.shape == lo.shape == hi.shape == (3,) and np.isnan([mean, lo, hi]).all()
