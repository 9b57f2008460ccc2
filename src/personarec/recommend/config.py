"""The ``recommend`` section of the run config: which models to train and each one's knobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personarec.recommend.tuning import TuningConfig


class RecommendConfig(BaseModel):
    """``[recommend]``: ``train`` lists the models; ``models.<name>`` holds one model's config.

    A ``models`` entry may name another registered class with ``name`` (e.g.
    ``models.knn50 = {name = "itemknn", neighbours = 50}``) to train two variants of one model.
    """

    model_config = ConfigDict(extra="forbid")

    train: list[str] = Field(
        default_factory=lambda: ["popular", "itemknn", "ease", "sasrec"],
        description="models trained by `personarec train` when --models is not given",
    )
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-model config, by name")
    seed_from_run: bool = Field(True, description="models with a `seed` field get the run's seed unless set here")
    tuning: TuningConfig = Field(
        default_factory=TuningConfig,
        description="hyper-parameter search of `personarec train --tune` (validation split only)",
    )

    def model_spec(self, key: str) -> tuple[str, dict[str, Any]]:
        """(registered class name, config dict) for the model called ``key`` in this run."""
        raw = dict(self.models.get(key, {}))
        return str(raw.pop("name", key)), raw
