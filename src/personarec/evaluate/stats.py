"""Confidence intervals and significance tests on per-user metric values.

Two different questions, two different tests (see :mod:`personarec.evaluate.ab`):

- **unpaired** (a replayed A/B: each user is in exactly one arm): difference of arm means, CI by
  resampling each arm independently, p-value from Welch's t-test;
- **paired** (offline: every user scored by both models): mean of per-user differences, CI by
  resampling users, p-value from the Wilcoxon signed-rank test. Pairing removes the between-user
  variance, so it detects much smaller differences than the A/B on the same users.

Bootstrap means are computed as ``counts @ values`` (resample counts per user, one BLAS product
for every metric column), in chunks, so 10^5 users x 1,000 resamples stays fast and bounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def bootstrap_means(
    values: np.ndarray, n_boot: int = 1000, rng: np.random.Generator | None = None, chunk_elems: int = 4_000_000
) -> np.ndarray:
    """Means of ``n_boot`` resamples of the rows of ``values`` (``[n]`` or ``[n, m]``) -> ``[n_boot(, m)]``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return np.full((n_boot,) + v.shape[1:], np.nan)
    flat = v.reshape(n, -1)
    out = np.empty((n_boot, flat.shape[1]), dtype=np.float64)
    chunk = max(1, min(n_boot, chunk_elems // n))
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(c, n)) + (np.arange(c) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=c * n).reshape(c, n).astype(np.float64)
        out[start : start + c] = counts @ flat / n
    return out.reshape((n_boot,) + v.shape[1:])


def percentile_ci(boot: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return lo, hi


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile-bootstrap CI of each column: ``(mean, low, high)``.

    A constant column (one user, or a model giving every user the same list) gets the exact
    zero-width interval ``[mean, mean]``: rounding in the resampled sums would otherwise put it
    ~1e-15 beside its own mean. No users, or a NaN value, gives NaN."""
    v = np.asarray(values, dtype=np.float64)
    boot = bootstrap_means(v, n_boot, np.random.default_rng(seed))
    lo, hi = percentile_ci(boot, confidence)
    if len(v) == 0:
        return np.full(v.shape[1:], np.nan), lo, hi
    mean = v.mean(axis=0)
    constant = np.ptp(v, axis=0) == 0
    return mean, np.where(constant, mean, lo)[()], np.where(constant, mean, hi)[()]


def _mean(x: np.ndarray) -> float:
    """NaN for no values (an empty A/B arm), without numpy's empty-slice warning."""
    return float(x.mean()) if len(x) else float("nan")


@dataclass(frozen=True)
class Comparison:
    """``model`` minus ``control`` on one metric."""

    kind: str  # "ab-unpaired" | "offline-paired"
    test: str
    n_model: int
    n_control: int
    model_mean: float
    control_mean: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def paired_comparison(
    model: np.ndarray, control: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Comparison:
    """Same users under both models: paired bootstrap CI of the mean difference + Wilcoxon signed-rank."""
    a, b = np.asarray(model, np.float64), np.asarray(control, np.float64)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs one value per user for both models")
    d = a - b
    lo, hi = percentile_ci(bootstrap_means(d, n_boot, np.random.default_rng(seed)), confidence)
    if len(d) == 0 or np.all(d == 0):
        p = 1.0  # identical on every user: no evidence of any difference
    else:
        p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return Comparison(
        "offline-paired", "wilcoxon signed-rank", len(a), len(b), _mean(a), _mean(b),
        _mean(d), float(lo), float(hi), p,
    )  # fmt: skip


def unpaired_comparison(
    model: np.ndarray, control: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Comparison:
    """Disjoint users (A/B arms): independent bootstrap CI of the difference of means + Welch's t-test."""
    a, b = np.asarray(model, np.float64), np.asarray(control, np.float64)
    rng = np.random.default_rng(seed)
    diff_boot = bootstrap_means(a, n_boot, rng) - bootstrap_means(b, n_boot, rng)
    lo, hi = percentile_ci(diff_boot, confidence)
    if len(a) < 2 or len(b) < 2:
        p = float("nan")
    elif np.ptp(a) == 0 and np.ptp(b) == 0:
        p = 1.0 if a[0] == b[0] else 0.0
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(
        "ab-unpaired", "welch t-test", len(a), len(b), _mean(a), _mean(b),
        _mean(a) - _mean(b), float(lo), float(hi), p,
    )  # fmt: skip


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control over several arms)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * q[order])
    res = np.empty(m)
    res[order] = np.minimum(adjusted, 1.0)
    out[ok] = res
    return out
