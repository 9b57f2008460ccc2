"""The ``evaluate`` and ``report`` verbs, run through typer like a user would."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from personarec.config import load_config
from personarec.data.splits import save_split
from personarec.errors import ConfigError, DataError
from personarec.evaluate.commands import TOP_LEVEL, app, run_evaluation
from personarec.recommend import base
from personarec.run import RunDir
from tests.evaluate.conftest import TableRecommender, random_model
from tests.ranking import top

needs_persistence = pytest.mark.skipif(not hasattr(base.Recommender, "save"), reason="Recommender.save/load not available yet")


def cli() -> typer.Typer:
    root = typer.Typer()
    for name, fn in TOP_LEVEL.items():
        root.command(name)(fn)
    return root


class SavedTable(TableRecommender):
    name = "saved-table-test"

    def __init__(self, config=None, table=None):
        super().__init__(table if table is not None else np.zeros((1, 1)))

    def _save_state(self, directory):
        np.save(directory / "table.npy", self.table)

    def _load_state(self, directory):
        self.table = np.load(directory / "table.npy")
        self.n_items = self.table.shape[1]


@pytest.fixture
def registered():
    base.RECOMMENDERS[SavedTable.name] = SavedTable
    yield
    base.RECOMMENDERS.pop(SavedTable.name, None)


def test_verbs_are_exported_and_documented():
    assert app is None and set(TOP_LEVEL) == {"evaluate", "report"}
    runner = CliRunner()
    out = runner.invoke(cli(), ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for flag in ("--arms", "--control", "--stage", "--ab", "--ks", "--run-dir", "--config", "--set"):
        assert flag in out.output, flag
    assert "RUN_DIR" in runner.invoke(cli(), ["report", "--help"], env={"COLUMNS": "200"}).output


def test_run_evaluation_respects_arms_and_rejects_unknown(tmp_path, split):
    cfg = load_config(None, {"run_dir": str(tmp_path), "evaluate.arms": ["b"], "evaluate.n_boot": 50})
    res = run_evaluation(cfg, RunDir(tmp_path, cfg), split, {"a": random_model(split, 1), "b": random_model(split, 2)})
    assert res.models == ["b"] and res.ab is None  # one arm: no A/B
    assert not (tmp_path / "eval" / "ab").exists()
    assert "evaluate" in RunDir(tmp_path).manifest()["stages"]
    bad = load_config(None, {"run_dir": str(tmp_path), "evaluate.arms": ["zzz"]})
    with pytest.raises(ConfigError):
        run_evaluation(bad, RunDir(tmp_path, bad), split, {"a": random_model(split, 1)})


@needs_persistence
def test_cli_loads_saved_models_evaluates_and_reports(tmp_path, split, registered):
    save_split(split, tmp_path / "split")
    for name, seed in (("first", 1), ("second", 2)):
        SavedTable(table=np.random.default_rng(seed).random((split.n_users, split.n_items))).save(tmp_path / "models" / name)
    result = CliRunner().invoke(
        cli(), ["evaluate", "--run-dir", str(tmp_path), "--arms", "second,first", "--ks", "5,10", "--ab",
                "--set", "evaluate.n_boot=50"],  # fmt: skip
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    from personarec.evaluate.ab import ABResult
    from personarec.evaluate.harness import EvalResult

    res = EvalResult.load(tmp_path / "eval")
    assert res.models == ["second", "first"] and res.ks == (5, 10)
    assert "ild@10" not in res.summary.columns  # no item space in this run dir: skipped, with a note
    assert ABResult.load(tmp_path / "eval" / "ab").control == "second"
    report = CliRunner().invoke(cli(), ["report", str(tmp_path), "-o", str(tmp_path / "r2.html")])
    assert report.exit_code == 0 and "dataset     : synthetic" in (tmp_path / "r2.html").read_text()


def test_missing_models_are_trained_or_named_in_a_clear_error(tmp_path, split):
    from personarec.recommend.service import RunService

    cfg = load_config(None, {"run_dir": str(tmp_path)})
    with pytest.raises(DataError, match="no trained models"):
        RunService.of(cfg, split=split).models([], train_missing=True)
    models = RunService.of(cfg, split=split).models(["popular"], train_missing=True)  # trained by the recommend stage
    assert models["popular"].name == "popular" and (tmp_path / "models" / "popular" / "config.json").exists()
    again = RunService.of(cfg, split=split).models()  # now found on disk
    assert list(again) == ["popular"]
    users = split.eval_users("test")[:5]
    np.testing.assert_array_equal(
        top(again["popular"], users, split.history("test"), 5)[0], top(models["popular"], users, split.history("test"), 5)[0]
    )
