"""``evaluate --name``: several evaluations of one run side by side, compared by the report."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from personarec.config import load_config
from personarec.data.splits import save_split
from personarec.errors import ConfigError, DataError
from personarec.evaluate.commands import run_evaluation
from personarec.evaluate.config import EvaluateConfig
from personarec.evaluate.harness import EvalResult
from personarec.evaluate.report import SECTIONS, write_report
from personarec.recommend.popular import MostPopular
from personarec.run import RunDir
from tests.evaluate.conftest import random_model
from tests.evaluate.test_commands import SavedTable, cli, needs_persistence, registered  # noqa: F401

#: the text sections (no plots): enough to see which evaluation is shown
TEXT = [s for s in SECTIONS if s.key in ("evaluations", "protocol", "summary")]


def evaluate(run_dir, split, name: str | None, exclude_seen: bool) -> EvalResult:
    over = {"run_dir": str(run_dir), "evaluate.n_boot": 50, "evaluate.ks": [5, 10], "evaluate.exclude_seen": exclude_seen,
            "evaluate.ab.enabled": False, "evaluate.name": name}  # fmt: skip
    cfg = load_config(None, over)
    return run_evaluation(cfg, RunDir(run_dir, cfg), split, {"popular": MostPopular().fit(split), "random": random_model(split, 1)})


def test_named_evaluations_coexist_and_the_report_compares_them(tmp_path, split):
    evaluate(tmp_path, split, None, True)
    evaluate(tmp_path, split, "seen-kept", False)
    evaluate(tmp_path, split, "seen-excluded", True)
    assert EvalResult.load(tmp_path / "eval").protocol.exclude_seen
    assert not EvalResult.load(tmp_path / "evals" / "seen-kept").protocol.exclude_seen
    assert EvalResult.load(tmp_path / "evals" / "seen-excluded").protocol.exclude_seen
    stages = RunDir(tmp_path).manifest()["stages"]
    assert {"evaluate", "evaluate:seen-kept", "evaluate:seen-excluded"} <= set(stages)

    page = write_report(tmp_path, sections=TEXT).read_text()
    assert "Evaluations compared" in page and "3 evaluations of this run" in page
    for name in ("(default)", "seen-kept", "seen-excluded", "evals/seen-kept"):
        assert name in page, name
    assert "seen-kept (ndcg@10)" in page and "(default) (ndcg@10)" in page  # model x evaluation table
    assert "The protocol cards differ" in page and "kept in ranking in seen-kept" in page
    assert "The sections below show <b>(default)</b>" in page and "seen items  : excluded from ranking" in page

    picked = write_report(tmp_path, tmp_path / "kept.html", TEXT, eval_name="seen-kept").read_text()
    assert "evaluation seen-kept" in picked and "seen items  : kept in ranking" in picked
    with pytest.raises(DataError, match="no evaluation named 'nope'.*seen-kept"):
        write_report(tmp_path, tmp_path / "x.html", TEXT, eval_name="nope")


def test_same_card_says_comparable_and_without_default_the_latest_named_is_shown(tmp_path, split):
    evaluate(tmp_path, split, "a", True)
    evaluate(tmp_path, split, "b", True)
    page = write_report(tmp_path, sections=TEXT).read_text()
    assert "All protocol cards (and held-out stages) agree" in page and "The protocol cards differ" not in page
    assert "The sections below show <b>b</b>" in page
    evaluate(tmp_path, split, "a", False)  # rerun under another card: replaces a, b untouched
    page = write_report(tmp_path, sections=TEXT).read_text()
    assert "The sections below show <b>a</b>" in page and "The protocol cards differ" in page


def test_a_name_must_be_a_plain_folder_name(tmp_path):
    with pytest.raises(ConfigError, match=r"\[evaluate\]"):
        load_config(None, {"run_dir": str(tmp_path), "evaluate.name": "../elsewhere"}).section("evaluate", EvaluateConfig)


@needs_persistence
def test_cli_evaluate_name_and_report_eval(tmp_path, split, registered):  # noqa: F811
    save_split(split, tmp_path / "split")
    SavedTable(table=np.random.default_rng(1).random((split.n_users, split.n_items))).save(tmp_path / "models" / "t")
    runner = CliRunner()
    assert "--name" in runner.invoke(cli(), ["evaluate", "--help"], env={"COLUMNS": "200"}).output
    assert "--eval" in runner.invoke(cli(), ["report", "--help"], env={"COLUMNS": "200"}).output
    for name, seen in (("excl", "true"), ("kept", "false")):
        out = runner.invoke(cli(), ["evaluate", "--run-dir", str(tmp_path), "--name", name, "--ks", "5,10", "--no-ab",
                                    "--set", "evaluate.n_boot=20", "--set", f"evaluate.exclude_seen={seen}"])  # fmt: skip
        assert out.exit_code == 0, out.output + repr(out.exception)
    assert (tmp_path / "evals" / "excl" / "results.json").exists() and (tmp_path / "evals" / "kept" / "results.json").exists()
    assert not (tmp_path / "eval").exists()
    out = runner.invoke(cli(), ["report", str(tmp_path), "--eval", "excl", "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output + repr(out.exception)
    page = (tmp_path / "r.html").read_text()
    assert "evaluation excl" in page and "The protocol cards differ" in page and "excluded from ranking in excl" in page
