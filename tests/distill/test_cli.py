from __future__ import annotations

from typer.testing import CliRunner

from personarec.distill.commands import app


def test_help_lists_every_verb_and_option():
    runner = CliRunner()
    out = runner.invoke(app, ["--help"]).output
    for verb in ("label", "student", "export"):
        assert verb in out
    student = runner.invoke(app, ["student", "--help"]).output
    for opt in ("--steps", "--resume", "--examples", "--config", "--run-dir", "--set"):
        assert opt in student


def test_student_without_examples_or_split_is_a_clear_error(tmp_path):
    from personarec.errors import PersonarecError

    result = CliRunner().invoke(app, ["student", "--run-dir", str(tmp_path), "--steps", "1"])
    assert isinstance(result.exception, PersonarecError)
    assert "split" in str(result.exception)
