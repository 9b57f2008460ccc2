"""The HTML report: self-contained, carries the protocol card and the plots, and is extensible."""

from __future__ import annotations

import json
import re

import pytest

from personarec.config import load_config
from personarec.errors import DataError
from personarec.evaluate.commands import run_evaluation
from personarec.evaluate.report import SECTIONS, FunctionSection, register_section, write_report
from personarec.run import RunDir
from tests.evaluate.conftest import oracle_model, random_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, split, space):
    path = tmp_path_factory.mktemp("run")
    cfg = load_config(None, {"run_dir": str(path), "evaluate.n_boot": 100, "evaluate.ks": [5, 10]})
    run = RunDir(cfg.run_dir, cfg)
    result = run_evaluation(cfg, run, split, {"random": random_model(split, 1), "oracle": oracle_model(split, 0.5, 2)}, items=space)
    assert result.ab is not None and (path / "eval" / "ab" / "ab.json").exists()
    return path


def test_report_is_self_contained_with_card_and_plots(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    assert "Protocol card" in page and "dataset     : synthetic" in page and "leave-one-out" in page
    assert "seen items  : excluded from ranking" in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 4  # bars (all users), bars (A/B arms), accuracy vs novelty, per-cluster coverage
    assert all(len(b) > 1000 for b in images)
    assert not re.search(r"(src|href)=['\"]https?://", page) and "<script" not in page  # nothing fetched
    for title in ("Results", "Metrics with confidence intervals", "Accuracy vs novelty", "Per-cluster coverage",
                  "Replayed A/B test and paired comparison", "ab-unpaired", "offline-paired"):  # fmt: skip
        assert title in page, title


def only(*keys):
    """Just these registered sections (keeps the tests from re-drawing every plot)."""
    return [s for s in SECTIONS if s.key in keys]


def test_optional_sections_appear_only_with_their_files(run_dir, tmp_path):
    assert "Persona quality" not in write_report(run_dir, tmp_path / "a.html", only("personas")).read_text()
    (run_dir / "personas").mkdir(exist_ok=True)
    (run_dir / "personas" / "quality.json").write_text(json.dumps({"grounded_share": 0.93, "per_user": [{"user": "u1", "topics": 3}]}))
    page = write_report(run_dir, tmp_path / "b.html", only("personas")).read_text()
    assert "Persona quality" in page and "grounded_share" in page and "0.9300" in page and "u1" in page


def test_other_code_can_add_sections(run_dir, tmp_path):
    before = list(SECTIONS)
    try:
        register_section(FunctionSection("extra", "Extra results", lambda ctx: "<p>hello from elsewhere</p>"), before="timings")
        register_section(FunctionSection("never", "Never shown", lambda ctx: None))
        page = write_report(run_dir, tmp_path / "c.html", only("extra", "never", "timings")).read_text()
        assert "hello from elsewhere" in page and "Never shown" not in page
        assert page.index("Extra results") < page.index("<h2>Timings")
    finally:
        SECTIONS[:] = before


def test_report_without_evaluation_and_missing_dir(tmp_path):
    (tmp_path / "run").mkdir()
    page = write_report(tmp_path / "run").read_text()
    assert "No evaluation and no split" in page
    with pytest.raises(DataError):
        write_report(tmp_path / "absent")


def test_persona_effect_section_shows_arms_paired_tests_and_goal(run_dir, tmp_path):
    """benchmarks/distill.py's persona_effect.json becomes the arms table, a plot, the paired tests and the goal."""
    cell = lambda m, s: {"mean": m, "std": s, "n": 5}  # noqa: E731
    doc = {
        "seeds": [0, 1, 2, 3, 4],
        "personas": {"llm": {"llm_share_of_profiles": 1.0, "generated": 943, "fallbacks": 0, "personas_per_s": 2.1}},
        "test_mean_std": {"sasrec": {"ndcg@10": cell(0.0893, 0.004)}, "persona_sasrec-shuffled": {"ndcg@10": cell(0.0931, 0.002)},
                          "persona_sasrec-llm": {"ndcg@10": cell(0.0947, 0.001)}},
        "paired": [{"arm": "persona_sasrec-llm", "control": "sasrec", "diff_mean": 0.0054, "relative_gain": 0.06, "ci95": [0.001, 0.009],
                    "p_paired_t": 0.02, "per_user": {"ci95": [0.0004, 0.0101], "p_wilcoxon": 0.03}}],
        "goal": {"persona_sasrec_llm_gain": 0.06, "met": False},
    }  # fmt: skip
    page = write_report(run_dir, tmp_path / "e.html", only("persona_effect")).read_text()
    assert "Persona effect" not in page  # no file, no section
    (run_dir / "persona_effect.json").write_text(json.dumps(doc))
    try:
        page = write_report(run_dir, tmp_path / "e.html", only("persona_effect")).read_text()
    finally:
        (run_dir / "persona_effect.json").unlink()
    assert "Persona effect" in page and "0.0947 ± 0.0010" in page and "persona_sasrec-shuffled" in page
    assert "Paired comparisons" in page and "[0.0010, 0.0090]" in page and "persona_sasrec_llm_gain" in page
    assert len(re.findall(r"data:image/png;base64,", page)) == 1
