"""Validation-driven hyper-parameter search for the SASRec family, with Optuna.

Defaults tuned on one catalogue (ML-100k) need not suit another (a sparse Amazon set), so a run
can search them on its own data: each trial fits the model on the training events with early
stopping on the validation targets, under the split's protocol card, and its score is the best
validation NDCG@k it reached. The test events are never read. Trials are sampled by a seeded TPE
sampler and hopeless ones are stopped early by a median pruner on the per-epoch validation
curve, so a budget of trials or seconds buys more of the search. The best trial's model is
already trained (train + early stopping on validation), so it is the model the run keeps.
Settings already fitted on the same split with the same fixed settings (a benchmark's rows) can be
handed in as measured trials: the study records their scores and curves without fitting them again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.recommend.base import FitContext, Recommender, build_recommender, recommender_class


class ParamRange(BaseModel):
    """One searched parameter: a numeric range (``low``/``high``, ``log`` scale) or ``choices``."""

    model_config = ConfigDict(extra="forbid")

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ParamRange:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either choices or both low and high")
        if self.choices is None and self.low > self.high:  # type: ignore[operator]
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


def _r(low: float, high: float, log: bool = False) -> ParamRange:
    return ParamRange(low=low, high=high, log=log)


def _c(*choices: Any) -> ParamRange:
    return ParamRange(choices=list(choices))


#: What is searched for each model family (a run's ``recommend.tuning.space`` adds or replaces entries).
SASREC_SPACE: dict[str, ParamRange] = {
    "lr": _r(3e-4, 1e-2, log=True),
    "hidden": _c(32, 64, 128),
    "n_blocks": _c(1, 2, 3),
    "n_heads": _c(1, 2),
    "ff_mult": _c(1, 2, 4),
    "norm": _c("pre", "post"),
    "positions": _c("start", "end"),
    "init": _c("bert", "scaled"),
    "dropout": _r(0.0, 0.6),
    "attn_dropout": _c(0.0, 0.5),
    "max_len": _c(50, 100, 200),
    "batch_size": _c(32, 64, 128),
    "weight_decay": _c(0.0, 1e-5, 1e-4),
}
TEXT_SASREC_SPACE: dict[str, ParamRange] = {
    **SASREC_SPACE,
    "item_ids": _c("none", "warm", "all"),
    "text_dropout": _r(0.0, 0.5),
    "id_dropout": _r(0.0, 0.5),
}


class TuningConfig(BaseModel):
    """``[recommend.tuning]``: the budget and the space of ``personarec train --tune``."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(20, ge=1, description="most trials (each is one fit with early stopping)")
    timeout_s: float | None = Field(None, gt=0, description="stop starting trials after this many seconds (None: no limit)")
    max_epochs: int = Field(60, ge=1, description="epoch cap of every trial (early stopping usually ends it sooner)")
    patience: int = Field(5, ge=1, description="early-stopping patience of every trial")
    prune: bool = Field(True, description="stop trials whose validation curve is below the median of earlier trials")
    prune_after: int = Field(
        10, ge=1, description="epochs before a trial may be pruned (slow starters, e.g. a low lr, are not cut too soon)"
    )
    seeds: int = Field(
        1,
        ge=1,
        description="fits per trial with different seeds, scored by their mean validation NDCG: a small validation set "
        "makes one fit's score noisy, and the best of many noisy trials is then a lucky seed, not a better setting",
    )
    seed: int = Field(0, description="seed of the sampler (TPE)")
    start_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="settings tried first, in order, before the sampler proposes any (e.g. the defaults and a "
        "published setting for this kind of data); a searched parameter a setting leaves out is sampled. A small "
        "budget then compares known-good points instead of spending every trial on random ones",
    )
    space: dict[str, ParamRange] = Field(
        default_factory=dict, description="parameters added to or replacing the model family's default space"
    )


def default_space(model_name: str) -> dict[str, ParamRange]:
    """The searched parameters of a registered model (its family's default space)."""
    from personarec.recommend.sasrec import SASRec
    from personarec.recommend.text_sasrec import TextSASRec

    cls = recommender_class(model_name)
    if issubclass(cls, TextSASRec):
        return dict(TEXT_SASREC_SPACE)
    if issubclass(cls, SASRec):
        return dict(SASREC_SPACE)
    raise ConfigError(
        f"tuning searches models that validate while training (the SASRec family); {model_name!r} does not"
    )


@dataclass(frozen=True)
class MeasuredTrial:
    """A setting already fitted on this split's validation, under the search's fixed settings and
    seeds (e.g. a benchmark's row of the defaults). The study records it as a finished trial, so
    the sampler learns from it, the pruner compares later curves with its curve, and it can be the
    best, without spending a fit of the budget on it again."""

    params: dict[str, Any]  #: a value for every searched parameter
    value: float  #: best validation NDCG@k (the mean over the search's seeds per trial)
    curve: Sequence[float] = ()  #: first seed's validation NDCG per epoch (epochs 1, 2, ...), for the pruner
    source: str = ""  #: where it was measured (recorded with the trial)


@dataclass
class TuneResult:
    """The search's outcome: the best parameters, its validation score and fitted model, every trial.

    ``model`` is None when the best trial is a measured one (it was not fitted in this search);
    ``best_measured`` then names it, and the caller keeps the fit it was measured from."""

    model: Recommender | None
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    best_measured: MeasuredTrial | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (``RUN_DIR/models/<name>/tuning.json``)."""
        return {
            "best_params": self.best_params,
            "best_valid_ndcg": self.best_value,
            "seconds": round(self.seconds, 1),
            "n_trials": len(self.trials),
            "n_pruned": sum(t["state"] == "PRUNED" for t in self.trials),
            "n_measured": sum("measured_from" in t for t in self.trials),
            "best_measured_from": self.best_measured.source if self.best_measured else None,
            "trials": self.trials,
        }


def tune(
    model_name: str,
    params: dict[str, Any],
    split: Split,
    context: FitContext | None = None,
    config: TuningConfig | None = None,
    *,
    measured: Sequence[MeasuredTrial] = (),
    log: Any = None,
) -> TuneResult:
    """Search ``model_name``'s hyper-parameters on ``split``'s validation targets.

    ``params`` are the fixed settings (the run's config of the model); searched ones override
    them. ``measured``: trials fitted before (see ``MeasuredTrial``), recorded first; they do not
    count against ``config.trials``. A sampled setting already scored in the study is not fitted
    again: the trial takes that score. ``log``: a callable given one line per finished trial.
    """
    import optuna

    config = config or TuningConfig()
    if not len(split.eval_users("valid")):
        raise ConfigError("tuning needs validation targets: the split has none")
    space = {**default_space(model_name), **config.space}
    for number, setting in enumerate(config.start_from):
        _check_setting(setting, space, f"recommend.tuning.start_from[{number}]")
    for trial in measured:
        _check_setting(trial.params, space, f"measured trial {trial.source or trial.params}")
        if missing := sorted(set(space) - set(trial.params)):
            raise ConfigError(f"measured trial {trial.source or trial.params}: no value for searched {missing}")
    fixed = {k: v for k, v in params.items() if k not in space}
    fixed.update(max_epochs=config.max_epochs, patience=config.patience, early_stopping=True, show_progress=False)
    fixed.pop("checkpoint_path", None)  # trials must not overwrite the run's checkpoint
    best: dict[str, Any] = {"value": -1.0, "model": None, "measured": None}

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: _suggest(trial, name, r) for name, r in space.items()}
        if sampled.get("hidden", 1) % sampled.get("n_heads", 1):
            raise optuna.TrialPruned("hidden not divisible by n_heads")
        for done in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if done.params == sampled:  # the seeded sampler can propose a setting already scored (e.g. measured)
                trial.set_user_attr("same_setting_as", done.number)
                return float(done.value)  # type: ignore[arg-type]

        def report(record: dict[str, float]) -> None:
            if "valid_ndcg" in record:
                trial.report(record["valid_ndcg"], int(record["epoch"]))
                if config.prune and trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {int(record['epoch'])}")

        start = time.perf_counter()
        fits, values = [], []
        for offset in range(config.seeds):  # the first fit's curve is the one the pruner watches
            params = {**fixed, **sampled}
            params["seed"] = int(params.get("seed", 0)) + offset
            model = build_recommender(model_name, params)
            model.on_epoch = report if offset == 0 else None  # type: ignore[attr-defined]
            model.fit(split, context)
            model.on_epoch = None  # type: ignore[attr-defined]
            fits.append(model)
            values.append(max(r.get("valid_ndcg", 0.0) for r in model.history_))  # type: ignore[attr-defined]
        value = float(sum(values) / len(values))
        trial.set_user_attr("seed_values", [round(v, 5) for v in values])
        trial.set_user_attr("best_epoch", int(fits[0].best_epoch))  # type: ignore[attr-defined]
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - start, 1))
        if value > best["value"]:
            best.update(value=value, model=fits[0], measured=None)
        return value

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if log is not None:
            done = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
            log(f"trial {trial.number + 1 - len(measured)}/{config.trials}: valid ndcg {done}; best {max(best['value'], 0):.4f}")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=config.prune_after)
        if config.prune
        else optuna.pruners.NopPruner(),
    )
    distributions = {name: _distribution(r) for name, r in space.items()}
    for trial in measured:  # before the start points, so a start point already measured is not fitted again
        study.add_trial(
            optuna.trial.create_trial(
                params={k: trial.params[k] for k in space},
                distributions=distributions,
                value=float(trial.value),
                intermediate_values={epoch: float(v) for epoch, v in enumerate(trial.curve, start=1)},
                user_attrs={"measured_from": trial.source},
            )
        )
        if trial.value > best["value"]:
            best.update(value=float(trial.value), model=None, measured=trial)
    for setting in config.start_from:
        study.enqueue_trial(setting, skip_if_exists=True)
    start = time.perf_counter()
    study.optimize(objective, n_trials=config.trials, timeout=config.timeout_s, callbacks=[on_trial])
    if best["model"] is None and best["measured"] is None:
        raise ConfigError(f"no {model_name} trial finished within the budget ({config.trials} trials, {config.timeout_s} s)")
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params, **t.user_attrs}
        for t in study.trials
    ]
    seconds = time.perf_counter() - start
    if best["measured"] is not None:
        best_params = {k: best["measured"].params[k] for k in space}
        return TuneResult(None, best_params, float(best["value"]), trials, seconds, best_measured=best["measured"])
    model = best["model"]  # the trial's first-seed fit, trained on train with early stopping on validation
    best_params = {k: v for k, v in model.get_config().items() if k in space}
    return TuneResult(model, best_params, float(best["value"]), trials, seconds)


def _check_setting(setting: dict[str, Any], space: dict[str, ParamRange], where: str) -> None:
    """A start point must lie inside the searched space (the sampler cannot record it otherwise)."""
    for name, value in setting.items():
        r = space.get(name)
        if r is None:
            raise ConfigError(f"{where}: {name!r} is not searched (searched: {', '.join(sorted(space))})")
        if r.choices is not None and value not in r.choices:
            raise ConfigError(f"{where}: {name}={value!r} is not one of the choices {r.choices}")
        if r.choices is None and not (isinstance(value, int | float) and r.low <= value <= r.high):  # type: ignore[operator]
            raise ConfigError(f"{where}: {name}={value!r} is outside [{r.low}, {r.high}]")


def _distribution(r: ParamRange) -> Any:
    """The Optuna distribution ``_suggest`` samples ``r`` from (a measured trial is recorded in it)."""
    import optuna

    if r.choices is not None:
        return optuna.distributions.CategoricalDistribution(r.choices)
    if r.integer:
        return optuna.distributions.IntDistribution(int(r.low), int(r.high), log=r.log)  # type: ignore[arg-type]
    return optuna.distributions.FloatDistribution(float(r.low), float(r.high), log=r.log)  # type: ignore[arg-type]


def _suggest(trial: Any, name: str, r: ParamRange) -> Any:
    if r.choices is not None:
        return trial.suggest_categorical(name, r.choices)
    if r.integer:
        return trial.suggest_int(name, int(r.low), int(r.high), log=r.log)  # type: ignore[arg-type]
    return trial.suggest_float(name, float(r.low), float(r.high), log=r.log)  # type: ignore[arg-type]
