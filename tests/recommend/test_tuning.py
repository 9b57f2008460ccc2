"""The hyper-parameter search: validation only (test events never read), the best trial is the
kept model, the budget and the space are respected, pruning stops trials, `train --tune` saves it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from personarec.config import load_config
from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.recommend.service import RunService
from personarec.recommend.tuning import MeasuredTrial, ParamRange, TuningConfig, default_space, tune
from tests.recommend.conftest import cyclic_split

FIXED = dict(hidden=16, n_blocks=1, max_len=12, batch_size=32, num_threads=1, seed=0)
SMALL = TuningConfig(trials=4, max_epochs=4, patience=2, seed=0, space={
    "lr": ParamRange(low=1e-3, high=3e-2, log=True), "hidden": ParamRange(choices=[8, 16]),
    "dropout": ParamRange(low=0.0, high=0.3), "n_blocks": ParamRange(choices=[1]), "max_len": ParamRange(choices=[12]),
    "batch_size": ParamRange(choices=[32]), "ff_mult": ParamRange(choices=[1]),
})  # fmt: skip


@pytest.fixture(scope="module")
def split() -> Split:
    return cyclic_split(n_users=60, n_items=15)


def test_search_reads_validation_never_test(split, monkeypatch):
    asked: list[str] = []
    for method in ("history", "targets", "eval_users"):
        original = getattr(Split, method)

        def spy(self, stage, *args, _original=original, **kwargs):
            asked.append(stage)
            return _original(self, stage, *args, **kwargs)

        monkeypatch.setattr(Split, method, spy)
    result = tune("sasrec", FIXED, split, config=SMALL)
    assert "test" not in asked and "valid" in asked
    finished = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(result.trials) == SMALL.trials and finished
    assert result.best_value == pytest.approx(max(t["value"] for t in finished))
    # the kept model is the best trial's, fitted: its own best validation NDCG is the search's best
    assert max(r["valid_ndcg"] for r in result.model.history_) == pytest.approx(result.best_value)
    assert result.best_params["hidden"] in (8, 16) and 1e-3 <= result.best_params["lr"] <= 3e-2
    assert result.model.config.hidden == result.best_params["hidden"]


def test_pruning_stops_bad_trials(split):
    config = SMALL.model_copy(update={"trials": 8, "max_epochs": 8, "patience": 8, "prune_after": 3})
    result = tune("sasrec", FIXED, split, config=config)
    pruned = [t for t in result.trials if t["state"] == "PRUNED"]
    assert len(result.trials) == 8 and result.summary()["n_pruned"] == len(pruned) >= 1  # measured: 4 of 8
    assert all("fit_seconds" not in t for t in pruned)  # stopped inside the fit, not after it


def test_several_seeds_per_trial_score_by_their_mean(split):
    result = tune("sasrec", FIXED, split, config=SMALL.model_copy(update={"trials": 2, "seeds": 2, "prune": False}))
    for t in result.trials:
        assert len(t["seed_values"]) == 2 and t["value"] == pytest.approx(sum(t["seed_values"]) / 2, abs=1e-5)  # values rounded in the record
    assert result.best_value == pytest.approx(max(t["value"] for t in result.trials))


def test_start_points_are_tried_first_in_order(split):
    """Given settings are the first trials, in order; what they leave out is sampled; a setting
    outside the space is refused before any fit."""
    first = {"lr": 0.02, "hidden": 8, "dropout": 0.0}
    second = {"lr": 0.005, "hidden": 16}
    config = SMALL.model_copy(update={"trials": 3, "prune": False, "start_from": [first, second]})
    result = tune("sasrec", FIXED, split, config=config)
    assert result.trials[0]["params"] == {**result.trials[0]["params"], **first}
    assert result.trials[1]["params"] == {**result.trials[1]["params"], **second}
    assert 0.0 <= result.trials[1]["params"]["dropout"] <= 0.3  # sampled
    for bad, message in [({"hidden": 32}, "choices"), ({"lr": 1.0}, "outside"), ({"heads": 2}, "not searched")]:
        with pytest.raises(ConfigError, match=message):
            tune("sasrec", FIXED, split, config=config.model_copy(update={"start_from": [bad]}))


def _full(**params):
    """A setting with a value for every parameter SMALL searches over the default space."""
    space = {**default_space("sasrec"), **SMALL.space}
    return {name: (r.choices[0] if r.choices else r.low) for name, r in space.items()} | params


def test_measured_trials_are_recorded_not_fitted(split):
    """A setting fitted before enters the study as a finished trial: it costs no fit of the budget,
    and when it is the best, the result names it and carries no model (the caller keeps its fit)."""
    config = SMALL.model_copy(update={"trials": 2, "prune": False})
    winner = MeasuredTrial(_full(lr=0.01), value=2.0, curve=[0.5, 2.0], source="stored row")  # above any real NDCG
    result = tune("sasrec", FIXED, split, config=config, measured=[winner])
    assert len(result.trials) == 3 and result.trials[0]["measured_from"] == "stored row"
    assert [("fit_seconds" in t) for t in result.trials] == [False, True, True]  # only the sampled ones were fitted
    assert result.model is None and result.best_measured is winner and result.best_value == 2.0
    assert result.best_params == {k: winner.params[k] for k in result.best_params} and result.best_params["lr"] == 0.01
    assert result.summary()["best_measured_from"] == "stored row" and result.summary()["n_measured"] == 1

    loser = MeasuredTrial(_full(), value=-0.5, source="weak row")
    result = tune("sasrec", FIXED, split, config=config, measured=[loser])
    assert result.best_measured is None and result.model is not None and result.best_value > -0.5
    with pytest.raises(ConfigError, match="no value for searched"):
        tune("sasrec", FIXED, split, config=config, measured=[MeasuredTrial({"lr": 0.01}, value=0.1)])
    with pytest.raises(ConfigError, match="choices"):
        tune("sasrec", FIXED, split, config=config, measured=[MeasuredTrial(_full(hidden=7), value=0.1)])


def test_a_setting_already_scored_is_not_fitted_again(split):
    """With one choice per parameter the sampler can only propose the measured setting: no trial
    fits, each takes the measured score and names the trial it repeats."""
    fixed_space = {name: ParamRange(choices=[value]) for name, value in _full(lr=0.01).items()}
    config = SMALL.model_copy(update={"trials": 2, "prune": False, "space": fixed_space})
    measured = MeasuredTrial(_full(lr=0.01), value=0.25, source="stored row")
    result = tune("sasrec", FIXED, split, config=config, measured=[measured])
    assert [t.get("same_setting_as") for t in result.trials] == [None, 0, 0]
    assert [t["value"] for t in result.trials] == [0.25] * 3 and not any("fit_seconds" in t for t in result.trials)
    assert result.best_measured is measured and result.model is None


def test_pruner_compares_new_trials_with_measured_curves(split):
    """Measured curves count as the pruner's earlier trials: with three far better curves on record,
    the first sampled trial is stopped at the first epoch it may be."""
    strong = [MeasuredTrial(_full(lr=lr), value=2.0, curve=[2.0] * 8, source=f"row {lr}") for lr in (0.002, 0.004, 0.008)]
    config = SMALL.model_copy(update={"trials": 1, "max_epochs": 6, "patience": 6, "prune_after": 2})
    result = tune("sasrec", FIXED, split, config=config, measured=strong)
    assert [t["state"] for t in result.trials] == ["COMPLETE"] * 3 + ["PRUNED"]
    assert result.best_measured is strong[0]


def test_only_models_that_validate_while_training():
    with pytest.raises(ConfigError, match="SASRec family"):
        default_space("ease")
    assert "item_ids" in default_space("text_sasrec") and "item_ids" not in default_space("sasrec")
    with pytest.raises(ValueError, match="choices or both"):
        ParamRange(low=1.0)


def test_train_tune_keeps_the_best_trial(split, tmp_path):
    cfg = load_config(sets=[
        f"run_dir={tmp_path}", "recommend.tuning.trials=2", "recommend.tuning.max_epochs=2",
        'recommend.tuning.space={"hidden": {"choices": [8]}, "n_blocks": {"choices": [1]}, "max_len": {"choices": [12]}, '
        '"ff_mult": {"choices": [1]}}',
        'recommend.models.sasrec={"num_threads": 1, "batch_size": 32}',
    ])  # fmt: skip
    service = RunService.of(cfg, split=split)
    model = service.train(["sasrec"], tune=True)["sasrec"]
    doc = json.loads((tmp_path / "models" / "sasrec" / "tuning.json").read_text())
    assert doc["n_trials"] == 2 and doc["best_params"]["hidden"] == 8 == model.config.hidden
    loaded = RunService.of(cfg, split=split).model("sasrec")
    history = split.history("test")
    np.testing.assert_allclose(loaded.score(np.arange(4), history), model.score(np.arange(4), history), rtol=1e-5)
    assert service.run.manifest()["stages"]["train.sasrec"]["tuned"] is True
