"""The ``personarec personas`` verbs on a small run directory (split + genre item space), with the
real OpenAI-compatible client pointed at a closed port so that every persona is a fallback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from personarec.data.splits import save_split
from personarec.personas.commands import app
from tests.personas.spaces import genre_space

DEAD = [
    "--backend",
    "openai",
    "--base-url",
    "http://127.0.0.1:9/v1",
    "--set",
    "personas.backend_config.max_retries=0",
]


@pytest.fixture(scope="module")
def run_dir(ml100k_split, tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    save_split(ml100k_split, d / "split")
    genre_space(ml100k_split).save(d / "items")
    return d


def test_generate_show_export_evaluate(run_dir, ml100k_split):
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--run-dir", str(run_dir), "--users", "3", "--retries", "0", *DEAD])
    assert res.exit_code == 0, res.output
    log = [json.loads(x) for x in (run_dir / "personas" / "generation.jsonl").read_text().splitlines()]
    assert log[-1]["requested"] == 3 and log[-1]["fallbacks"] == 3
    uid = json.loads((run_dir / "personas" / "generation.json").read_text())["failures"][0]["user_id"]

    res = runner.invoke(app, ["show", uid, "--run-dir", str(run_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["user_id"] == uid

    res = runner.invoke(app, ["export", "--run-dir", str(run_dir), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert len((run_dir / "personas" / "personas.jsonl").read_text().splitlines()) == 3

    res = runner.invoke(app, ["evaluate", "--run-dir", str(run_dir), "--set", "personas.backend=openai"])
    assert res.exit_code == 0, res.output
    q = json.loads((run_dir / "personas" / "quality.json").read_text())
    assert q["n_personas"] == 3 and q["n_fallback"] == 3 and q["grounding_rate"] == 1.0
    assert q["validity"]["openai"]["fallbacks"] == 3
    assert q["tokens"]["n_users"] == 3 and q["tokens"]["history_ratio"] > 1


def test_missing_inputs_are_user_errors(tmp_path):
    from personarec.errors import DataError

    res = CliRunner().invoke(app, ["generate", "--run-dir", str(tmp_path), *DEAD])
    assert isinstance(res.exception, DataError) and "personarec data split" in str(res.exception)
    res = CliRunner().invoke(app, ["show", "1", "--run-dir", str(tmp_path)])
    assert isinstance(res.exception, DataError)


def test_a_store_written_under_another_config_is_refused(ml100k_split, tmp_path):
    """A rerun with the same config reuses the store (every user already up to date); a changed
    personas config, or another seed, is refused with a message instead of silently reused."""
    from personarec.config import RunConfig
    from personarec.errors import ConfigError
    from personarec.personas.commands import check_persona_store

    save_split(ml100k_split, tmp_path / "split")
    genre_space(ml100k_split).save(tmp_path / "items")
    runner = CliRunner()
    args = ["generate", "--run-dir", str(tmp_path), "--users", "2", "--retries", "0", *DEAD,
            "--set", "personas.retry_fallbacks=false"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    log = [json.loads(x) for x in (tmp_path / "personas" / "generation.jsonl").read_text().splitlines()]
    assert log[-1]["skipped"] == 2  # reused, not rewritten
    changed = runner.invoke(app, [*args, "--set", "personas.max_interests=2"])
    assert isinstance(changed.exception, ConfigError), changed.output
    assert "another config" in str(changed.exception) and "personas.max_interests" in str(changed.exception)
    base = {"run_dir": str(tmp_path), "personas": {"backend": "openai", "retries": 0,
            "backend_config": {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}, "sample_users": 2,
            "retry_fallbacks": False}}  # fmt: skip
    check_persona_store(RunConfig.model_validate(base))  # the config it was written with
    with pytest.raises(ConfigError, match="differs in: seed"):
        check_persona_store(RunConfig.model_validate({**base, "seed": 7}))


def test_show_prints_as_many_personas_as_asked(ml100k_split, tmp_path):
    """``--show N`` printed 3 whatever N was (issue 13, item 9): the batch sampled 3 users to show."""
    import re

    save_split(ml100k_split, tmp_path / "split")
    genre_space(ml100k_split).save(tmp_path / "items")
    runner = CliRunner()
    args = ["generate", "--run-dir", str(tmp_path), "--users", "6", "--retries", "0", *DEAD]
    shown = {}
    for n in (5, 0):
        res = runner.invoke(app, [*args, "--show", str(n)])  # a rerun rewrites fallbacks: users to show
        assert res.exit_code == 0, res.output
        shown[n] = set(re.findall(r"user (\S+) · v\d+", res.output))
    assert len(shown[5]) == 5 and not shown[0]
    assert runner.invoke(app, [*args, "--show", "-1"]).exit_code != 0
