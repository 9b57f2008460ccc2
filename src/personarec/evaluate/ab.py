"""Replayed A/B test on the held-out future, and the paired offline comparison next to it.

**A/B (unpaired).** Users are split at random (seeded) into disjoint arms; each arm is served by
one recommender and scored on its users' held-out events. This is what an online test would
measure: each user sees one arm, so arms are compared as independent samples: difference of arm
means, a 95% CI from resampling each arm independently, and Welch's t-test. Per-arm means carry
percentile-bootstrap CIs; catalogue coverage/Gini are per-arm values without CI (they depend on
the arm's size, so compare them only between equally sized arms).

**Offline paired.** Offline, every user can be scored by every model, so the same comparison can
be made *within* users on all evaluated users: mean per-user difference with a paired bootstrap CI
and the Wilcoxon signed-rank test. Pairing removes between-user variance and is far more
sensitive; it answers "is model B better on these users", not "would an A/B detect it".

Within each (kind, metric), p-values are Holm-adjusted over the non-control arms.
Replaying is exact because a model's list for a user does not depend on which arm the user is in:
the per-user values of the full evaluation (:class:`EvalResult`) are reused, never recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from personarec.errors import ConfigError, DataError
from personarec.evaluate.harness import EvalResult, primary_k
from personarec.evaluate.metrics.coverage import catalogue_coverage, gini
from personarec.evaluate.stats import bootstrap_ci, holm, paired_comparison, unpaired_comparison

KIND_AB = "ab-unpaired"
KIND_PAIRED = "offline-paired"
EXPLANATION = {
    KIND_AB: "replayed A/B: disjoint random arms, each served by one model; Welch t-test, "
    "independent bootstrap CI of the difference of arm means",
    KIND_PAIRED: "offline paired: every evaluated user scored by both models; Wilcoxon signed-rank, "
    "paired bootstrap CI of the mean per-user difference",
}


def assign_arms(n_users: int, n_arms: int, seed: int = 0, weights: Sequence[float] | None = None) -> np.ndarray:
    """Arm index of each of ``n_users`` users: a seeded random permutation cut by ``weights``.

    Every user gets exactly one arm; with equal weights arm sizes differ by at most one.
    """
    if n_arms < 1:
        raise ConfigError("an A/B test needs at least one arm")
    w = np.ones(n_arms) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != n_arms or np.any(w <= 0):
        raise ConfigError(f"A/B weights must be {n_arms} positive numbers, got {list(w)}")
    perm = np.random.default_rng(seed).permutation(n_users)
    cuts = np.round(np.cumsum(w) / w.sum() * n_users).astype(np.int64)
    arm = np.empty(n_users, dtype=np.int64)
    for i, (a, b) in enumerate(zip(np.concatenate([[0], cuts[:-1]]), cuts)):
        arm[perm[a:b]] = i
    return arm


@dataclass
class ABResult:
    arms: list[str]  # arm i is served by model arms[i]
    control: str
    assignment: pl.DataFrame  # user_idx, arm
    arm_metrics: pl.DataFrame  # arm, users, metric, mean, ci_low, ci_high
    comparisons: pl.DataFrame  # kind, metric, model, control, ..., p_value, p_holm, significant
    confidence: float = 0.95
    config: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.assignment.write_parquet(d / "assignment.parquet")
        self.arm_metrics.write_parquet(d / "arms.parquet")
        self.comparisons.write_parquet(d / "comparisons.parquet")
        doc = {
            "arms": self.arms,
            "control": self.control,
            "confidence": self.confidence,
            "config": self.config,
            "explanation": EXPLANATION,
            "arm_metrics": self.arm_metrics.to_dicts(),
            "comparisons": self.comparisons.to_dicts(),
        }
        (d / "ab.json").write_text(json.dumps(doc, indent=2, default=float))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> ABResult:
        d = Path(directory)
        if not (d / "ab.json").exists():
            raise DataError(f"no A/B result in {d}")
        doc = json.loads((d / "ab.json").read_text())
        return cls(
            arms=doc["arms"], control=doc["control"],
            assignment=pl.read_parquet(d / "assignment.parquet"),
            arm_metrics=pl.read_parquet(d / "arms.parquet"),
            comparisons=pl.read_parquet(d / "comparisons.parquet"),
            confidence=doc.get("confidence", 0.95), config=doc.get("config", {}),
        )  # fmt: skip


def replay_ab(
    result: EvalResult,
    arms: Sequence[str] | None = None,
    *,
    control: str | None = None,
    seed: int = 0,
    weights: Sequence[float] | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> ABResult:
    """Split ``result.users`` into one random arm per model of ``arms`` and compare arms to ``control``.

    ``metrics``: per-user metric columns to test (default: every per-user metric at the primary k);
    names absent from the result are skipped.
    """
    arms = list(arms) if arms is not None else result.models
    unknown = [a for a in arms if a not in result.per_user]
    if unknown:
        raise ConfigError(f"A/B arms {unknown} were not evaluated; evaluated: {result.models}")
    if len(set(arms)) != len(arms) or len(arms) < 2:
        raise ConfigError(f"an A/B test needs >= 2 distinct arms, got {arms}")
    control = control or arms[0]
    if control not in arms:
        raise ConfigError(f"control arm {control!r} is not one of the arms {arms}")
    available = result.metric_columns()
    k = primary_k(result.ks)
    wanted = list(metrics) if metrics is not None else [c for c in available if c.endswith(f"@{k}")]
    cols = [m for m in wanted if m in available]
    if not cols:
        raise ConfigError(f"none of the A/B metrics {wanted} was computed; available: {available}")

    users = result.users
    arm_of = assign_arms(len(users), len(arms), seed, weights)
    values = {m: result.per_user[m].select(cols).to_numpy().astype(np.float64) for m in arms}

    # -- per arm: means with bootstrap CIs (+ coverage/Gini of the arm's own lists) -------------
    arm_rows: list[dict[str, Any]] = []
    for i, model in enumerate(arms):
        mask = arm_of == i
        mean, lo, hi = bootstrap_ci(values[model][mask], n_boot, confidence, seed + i)
        for j, col in enumerate(cols):
            arm_rows.append({"arm": model, "users": int(mask.sum()), "metric": col,
                             "mean": float(mean[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j])})  # fmt: skip
        if model in result.recs and result.protocol.n_items:
            recs = result.recs[model][mask]
            for name, v in (
                (f"coverage@{k}", catalogue_coverage(recs, result.protocol.n_items, k)),
                (f"gini@{k}", gini(np.bincount(recs[:, :k].ravel(), minlength=result.protocol.n_items))),
            ):
                arm_rows.append({"arm": model, "users": int(mask.sum()), "metric": name,
                                 "mean": float(v), "ci_low": None, "ci_high": None})  # fmt: skip

    # -- comparisons against the control ------------------------------------------------------
    comp_rows: list[dict[str, Any]] = []
    c_idx = arms.index(control)
    for j, col in enumerate(cols):
        for i, model in enumerate(arms):
            if model == control:
                continue
            ab = unpaired_comparison(
                values[model][arm_of == i, j], values[control][arm_of == c_idx, j], n_boot, confidence, seed + 101 * i
            )
            paired = paired_comparison(values[model][:, j], values[control][:, j], n_boot, confidence, seed + 103 * i)
            for cmp in (ab, paired):
                comp_rows.append({"metric": col, "model": model, "control": control, **cmp.as_dict()})
    comparisons = pl.DataFrame(comp_rows)
    adjusted = np.empty(comparisons.height)
    groups = comparisons.with_row_index("_i").group_by(["kind", "metric"], maintain_order=True).agg(pl.col("_i"))
    for idx in groups["_i"].to_list():
        adjusted[idx] = holm(comparisons["p_value"].to_numpy()[idx])
    alpha = 1.0 - confidence
    comparisons = comparisons.with_columns(
        pl.Series("p_holm", adjusted), pl.Series("significant", adjusted < alpha)
    ).sort("kind", maintain_order=True)  # A/B first; metrics and arms in the given order

    return ABResult(
        arms=arms,
        control=control,
        assignment=pl.DataFrame({"user_idx": users, "arm": [arms[i] for i in arm_of]}),
        arm_metrics=pl.DataFrame(arm_rows),
        comparisons=comparisons,
        confidence=confidence,
        config={"seed": seed, "weights": list(weights) if weights else None, "metrics": cols, "n_boot": n_boot},
    )


def print_ab(ab: ABResult, console: Console | None = None) -> None:
    from personarec.cli_common import console as default_console

    out = console or default_console
    pct = f"{ab.confidence:.0%}"
    t = Table(title=f"Replayed A/B: per-arm means with {pct} bootstrap CI")
    t.add_column("metric", style="bold", no_wrap=True)
    for arm in ab.arms:
        n = ab.arm_metrics.filter(pl.col("arm") == arm)["users"][0]
        t.add_column(f"{arm}{' (control)' if arm == ab.control else ''}\n{n} users", justify="right")
    for metric in ab.arm_metrics["metric"].unique(maintain_order=True).to_list():
        cells = []
        for arm in ab.arms:
            r = ab.arm_metrics.filter((pl.col("arm") == arm) & (pl.col("metric") == metric)).row(0, named=True)
            ci = f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r["ci_low"] is not None else ""
            cells.append(f"{r['mean']:.3f}{ci}")
        t.add_row(metric, *cells)
    out.print(t)
    for kind in (KIND_AB, KIND_PAIRED):
        rows = ab.comparisons.filter(pl.col("kind") == kind)
        if rows.height == 0:
            continue
        c = Table(title=f"{kind} vs control '{ab.control}'", caption=EXPLANATION[kind])
        for name in ("metric", "model", "diff", f"{pct} CI", "p", "p (Holm)", ""):
            c.add_column(name, justify="right" if name not in ("metric", "model") else "left", no_wrap=True)
        for r in rows.iter_rows(named=True):
            c.add_row(
                r["metric"], r["model"], f"{r['diff']:+.4f}", f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                f"{r['p_value']:.3g}", f"{r['p_holm']:.3g}", "[green]*[/]" if r["significant"] else "",
            )  # fmt: skip
        out.print(c)
