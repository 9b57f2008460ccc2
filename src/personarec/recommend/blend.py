"""Score blend (``blend``): a weighted sum of fitted models' per-user standardised scores.

Models that learn different signals rank different items well: a sequential model (SASRec) knows
what comes next, an item-item model (EASE) knows what goes together, and on a sparse catalogue
neither dominates. A blend scores each member, standardises every user's row (z-score over the
catalogue, so members with different score scales weigh what their weight says), and adds them
with weights chosen on the validation targets (a grid over the simplex, under the split's
protocol card and the evaluated tie-break; the test events are never read). A grid point with
all weight on one member is that member alone, so validation picks the blend only where it is
better than every member on its own. Members with weight 0 are not scored at all.

Members are fitted by the blend from their sub-configs, or given already fitted
(``FitContext.members``; ``members_from`` in a run's config), so a run that trains SASRec and EASE
blends them without training either twice.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import Field, field_validator

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError
from personarec.recommend.base import (
    FitContext,
    Recommender,
    RecommenderConfig,
    build_recommender,
    load_recommender,
    mask_seen,
    ndcg_gains,
    register,
    target_ranks,
)

#: most weight settings a validation search may try (members x grid step)
MAX_GRID_POINTS = 2000


class BlendConfig(RecommenderConfig):
    members: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "sasrec"}, {"name": "ease"}],
        min_length=2,
        description="member models' sub-configs (name + fields), fitted by the blend unless fitted members are "
        "given (members_from)",
    )
    weights: list[float] | None = Field(
        None, description="fixed weight per member (normalised to sum 1); None: chosen on validation NDCG"
    )
    grid_step: float = Field(0.05, gt=0, le=0.5, description="step of the weight grid searched on validation")
    eval_k: int = Field(10, ge=1, description="cut-off of the validation NDCG that chooses the weights")
    infer_batch_size: int = Field(512, ge=1, description="users scored per batch (validation and scoring)")

    @field_validator("members")
    @classmethod
    def _named(cls, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for number, member in enumerate(members):
            if "name" not in member:
                raise ValueError(f"member {number} has no 'name' (a registered recommender)")
        return members

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: list[float] | None) -> list[float] | None:
        if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        return weights


def weight_grid(n_members: int, step: float) -> np.ndarray:
    """Every weight vector on the simplex with entries in multiples of ``step`` ``[n_points, n_members]``,
    single members first (so a tie on validation keeps the simpler model)."""
    n = round(1 / step)
    size = math.comb(n + n_members - 1, n_members - 1)  # compositions of n into n_members parts
    if size > MAX_GRID_POINTS:
        raise ConfigError(
            f"blend: {size} weight settings for {n_members} members at grid_step {step}; "
            f"raise grid_step (at most {MAX_GRID_POINTS} settings)"
        )
    # stars and bars: n_members - 1 cut points among n + n_members - 1 slots
    points = [
        tuple(b - a - 1 for a, b in zip((-1, *cuts), (*cuts, n + n_members - 1)))
        for cuts in itertools.combinations(range(n + n_members - 1), n_members - 1)
    ]
    points.sort(key=lambda c: (sum(x > 0 for x in c), [-x for x in c]))
    return np.asarray(points, dtype=np.float64) / n


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row as z-scores over the catalogue (a constant row becomes zeros)."""
    scores = np.asarray(scores, dtype=np.float32)
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


@register
class Blend(Recommender):
    """Weighted sum of the members' standardised scores (see the module docstring)."""

    name = "blend"
    config_class = BlendConfig

    def __init__(self, config: BlendConfig | None = None) -> None:
        super().__init__(config)
        self.members: list[Recommender] = []
        self.weights: np.ndarray = np.zeros(0)
        #: validation NDCG of every weight setting tried (empty when the weights were fixed)
        self.validation_: list[dict[str, Any]] = []

    @property
    def cfg(self) -> BlendConfig:
        return self.config  # type: ignore[return-value]

    # -- learning ------------------------------------------------------------------------
    def _fit(self, split: Split, ctx: FitContext) -> Self:
        if ctx.members:
            members = list(ctx.members)
            self.config = self.cfg.model_copy(update={"members": [m.get_config() for m in members]})
        else:
            members = [build_recommender(m["name"], m).fit(split, ctx) for m in self.cfg.members]
        for member in members:
            if member.n_items != split.n_items:
                raise ConfigError(f"blend member {member.name!r} scores {member.n_items} items, the split has {split.n_items}")
            if member.exclude_seen != self.exclude_seen:
                raise ConfigError(
                    f"blend member {member.name!r} was fitted under a protocol card that "
                    f"{'excludes' if member.exclude_seen else 'keeps'} seen items; the split's card does not: refit it"
                )
        self.members, self.n_items = members, split.n_items
        if self.cfg.weights is not None:
            if len(self.cfg.weights) != len(members):
                raise ConfigError(f"blend: {len(self.cfg.weights)} weights for {len(members)} members")
            self.weights = np.asarray(self.cfg.weights, dtype=np.float64) / sum(self.cfg.weights)
            self.validation_ = []
            return self
        users = split.eval_users("valid")
        if not len(users):
            raise ConfigError("blend: choosing weights needs validation targets (the split has none); set `weights`")
        grid = weight_grid(len(members), self.cfg.grid_step)
        ndcg = self.validation_ndcg(grid, users, split.history("train"), split.targets("valid"))
        best = int(np.argmax(ndcg))  # the first maximum: single members come first in the grid
        self.weights = grid[best]
        self.validation_ = [{"weights": [round(float(w), 4) for w in g], "ndcg": float(v)} for g, v in zip(grid, ndcg)]
        return self

    def validation_ndcg(
        self, grid: np.ndarray, users: np.ndarray, history: UserSequences, targets: UserSequences
    ) -> np.ndarray:
        """Mean NDCG@eval_k of every weight setting of ``grid`` on the first target per user, under
        the fitted protocol card (seen items masked or not) and the evaluated tie-break."""
        totals = np.zeros(len(grid))
        for b in range(0, len(users), self.cfg.infer_batch_size):
            batch = np.asarray(users[b : b + self.cfg.infer_batch_size])
            rows = [standardise(m.score(batch, history)) for m in self.members]
            first = targets.items[targets.indptr[batch]]
            for g, weights in enumerate(grid):
                scores = sum(float(w) * r for w, r in zip(weights, rows) if w > 0)
                if self.exclude_seen:
                    mask_seen(scores, batch, history)
                totals[g] += ndcg_gains(target_ranks(scores, first), self.cfg.eval_k).sum()
        return totals / len(users)

    # -- scoring -------------------------------------------------------------------------
    def _combine(self, score_of: Callable[[Recommender], np.ndarray]) -> np.ndarray:
        """Weighted sum of ``score_of(member)`` standardised, over the members with weight > 0."""
        assert self.members, "fit or load the model first"
        total: np.ndarray | None = None
        for weight, member in zip(self.weights, self.members):
            if weight <= 0:
                continue  # a member the blend does not use costs nothing
            part = float(weight) * standardise(score_of(member))
            total = part if total is None else total + part
        assert total is not None
        return total

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        users = np.asarray(users)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        for b in range(0, len(users), self.cfg.infer_batch_size):
            batch = users[b : b + self.cfg.infer_batch_size]
            out[b : b + len(batch)] = self._combine(lambda m: m.score(batch, history))
        return out

    def score_sequence(self, items: np.ndarray) -> np.ndarray:
        return self._combine(lambda m: np.asarray(m.score_sequence(items))[None, :])[0]

    # -- persistence ---------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        for number, member in enumerate(self.members):
            member.save(directory / f"member_{number}")
        state = {"weights": self.weights.tolist(), "validation": self.validation_}
        (directory / "blend.json").write_text(json.dumps(state, indent=2))

    def _load_state(self, directory: Path) -> None:
        state = json.loads((directory / "blend.json").read_text())
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.validation_ = state.get("validation", [])
        self.members = [load_recommender(directory / f"member_{n}") for n in range(len(self.weights))]
