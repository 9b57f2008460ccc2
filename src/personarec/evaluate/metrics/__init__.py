"""Metric families, one module each, chosen by name through :data:`METRICS`.

Importing this package registers the built-in families: ``accuracy``, ``coverage``,
``diversity``, ``novelty``, ``serendipity``, ``exploration``.
"""

from personarec.evaluate.metrics import accuracy, coverage, diversity, exploration, novelty, serendipity  # noqa: F401
from personarec.evaluate.metrics.base import (
    METRICS,
    EvalData,
    Metric,
    MetricConfig,
    UserBatch,
    build_metric,
    register,
)

DEFAULT_METRICS = ("accuracy", "coverage", "diversity", "novelty", "serendipity", "exploration")

__all__ = [
    "DEFAULT_METRICS", "METRICS", "EvalData", "Metric", "MetricConfig", "UserBatch", "build_metric", "register",
]  # fmt: skip
