"""The ``[evaluate]`` section of the run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from personarec.evaluate.metrics import DEFAULT_METRICS

#: Where named evaluations live, one folder each: ``RUN_DIR/evals/NAME``.
EVALS_DIR = "evals"


def eval_dir(run_dir: str | Path, name: str | None = None) -> Path:
    """Where an evaluation is written: ``RUN_DIR/eval`` unnamed, ``RUN_DIR/evals/NAME`` named, so
    evaluations under different protocols of one run sit side by side instead of overwriting."""
    return Path(run_dir) / "eval" if name is None else Path(run_dir) / EVALS_DIR / name


class ABConfig(BaseModel):
    """Replayed A/B test: users split at random into arms, one recommender per arm."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run the replayed A/B when there are >= 2 arms")
    seed: int | None = Field(None, description="seed of the user -> arm assignment (None = the run seed)")
    control: str | None = Field(None, description="control arm (None = the first arm)")
    weights: list[float] | None = Field(None, description="relative arm sizes (None = equal)")
    metrics: list[str] = Field(
        default_factory=lambda: [
            "ndcg@10", "recall@10", "mrr@10", "novelty@10", "ild@10", "serendipity@10", "exploration@10",
        ],  # fmt: skip
        description="per-user metrics tested between arms (absent ones are skipped)",
    )


class EvaluateConfig(BaseModel):
    """Full-ranking evaluation of trained recommenders on one stage of the split."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["valid", "test"] = Field("test", description="which held-out events to predict")
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="write to RUN_DIR/evals/NAME instead of RUN_DIR/eval (None), so several evaluations of one run coexist",
    )  # fmt: skip
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20], description="list cut-offs")
    arms: list[str] = Field(default_factory=list, description="models to evaluate (empty = every model under RUN_DIR/models)")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), description="metric families, by name")
    metric_config: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-family options, e.g. {serendipity = {popular_n = 50}}"
    )
    batch_size: int = Field(1024, ge=1, description="users ranked per batch (upper bound)")
    rank_memory_mb: int = Field(256, ge=1, description="cap on one ranking batch's working memory (~16 bytes per user x item); shrinks the batch for big catalogues")
    exclude_seen: bool | None = Field(None, description="mask seen items (None = the protocol card's setting)")
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples for confidence intervals")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int | None = Field(None, description="bootstrap seed (None = the run seed)")
    ab: ABConfig = Field(default_factory=ABConfig)

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("ks must be a non-empty list of positive cut-offs")
        return sorted(set(v))
