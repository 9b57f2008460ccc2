"""Persona hybrid (``persona_hybrid``): a base model's list with explore slots for the persona.

The base model's (SASRec by default) scores are reranked by
:func:`personarec.recommend.persona_ranking.rank` (exploit + explore quota + reasons); evaluation
and the API both rank through :class:`personarec.recommend.pipeline.RankingPipeline`, so offline
numbers measure what serving shows. Shared behaviour
(profiles, full score matrix, persistence): :mod:`personarec.recommend.persona_model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from personarec.data.splits import UserSequences
from personarec.recommend.base import (
    register,
)
from personarec.recommend.persona_model import PersonaModel, PersonaModelConfig
from personarec.recommend.explain import model_reason
from personarec.recommend.persona_ranking import Ranked, RankingConfig, RankRequest, percentile, rank


class PersonaHybridConfig(PersonaModelConfig):
    base: dict[str, Any] = Field(
        default_factory=lambda: {"name": "sasrec"},
        description="base model sub-config (name + fields), fitted unless a fitted `base` is passed to fit",
    )
    slots: int = Field(
        20,
        ge=1,
        description="length of the persona-shaped head of the list (the k given to recommend.persona_ranking.rank)",
    )
    interest_boost: float = Field(
        0.0, ge=0.0, description="recommend.persona_ranking interest boost; 0 keeps the base model's exploit order"
    )


@register
class PersonaHybrid(PersonaModel):
    """Base model's top list with ``explore_quota`` of the slots given to persona explore clusters,
    ranked by :func:`personarec.recommend.persona_ranking.rank` (what serving does)."""

    name = "persona_hybrid"
    config_class = PersonaHybridConfig

    @property
    def cfg(self) -> PersonaHybridConfig:
        return self.config  # type: ignore[return-value]

    def _model_reason(self) -> str:
        return model_reason(self.base.name if self.base is not None else None)

    def ranking_config(self, exclude_seen: bool | None = None) -> RankingConfig:
        return RankingConfig(interest_boost=self.cfg.interest_boost, exclude_seen=self.masks_seen(exclude_seen))

    def _heads(self, requests: list[RankRequest], exclude_seen: bool) -> list[tuple[list[Ranked], np.ndarray]]:
        assert self.space is not None and self.base is not None, "fit or load the model first"
        rows, history = UserSequences.at_rows([r.user_idx for r in requests], [r.items for r in requests])
        base_scores = np.asarray(self.base.score(rows, history), dtype=np.float32)
        z = percentile(base_scores)
        rc, by_name = self.ranking_config(exclude_seen), self.space.cluster_by_name()
        out = []
        for b, request in enumerate(requests):
            prof = self.shaped_profile(request)
            slots = rank(
                base_scores[b], request.items, self.space, prof, self.cfg.slots, self.explore_share(request),
                rc, model_name=self.base.name, by_name=by_name,
            )  # fmt: skip
            out.append((slots, z[b]))  # everything else in the base model's order, in (0, 1]
        return out
