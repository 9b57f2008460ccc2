"""configs/example.toml is generated from the config models and must stay valid and in sync."""

from __future__ import annotations

import tomllib
from pathlib import Path

from personarec.config import load_config
from personarec.config_example import example_toml, stage_models
from personarec.recommend.base import build_recommender
from personarec.recommend.config import RecommendConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "example.toml"


def test_example_file_is_the_generated_one():
    assert EXAMPLE.read_text() == example_toml(), "regenerate: personarec config example -o configs/example.toml"


def test_example_validates_in_every_section():
    cfg = load_config(EXAMPLE)
    for name, model in stage_models().items():
        section = cfg.section(name, model)
        expected = model()
        if name == "recommend":  # the example also lists every model's own table
            section = section.model_copy(update={"models": {}})
        assert section == expected, f"[{name}] in the example differs from the defaults"
    rcfg = cfg.section("recommend", RecommendConfig)
    assert "sasrec" in rcfg.models
    for key in rcfg.models:
        cls_name, params = rcfg.model_spec(key)
        build_recommender(cls_name, params)  # every per-model table is a valid config


def test_every_field_appears():
    text = example_toml()
    tomllib.loads(text)
    lines = {line.lstrip("# ").split(" =")[0] for line in text.splitlines() if " =" in line}
    lines |= {line.strip("[]").rsplit(".", 1)[-1] for line in text.splitlines() if line.startswith("[")}
    for model in stage_models().values():
        for name in model.model_fields:
            assert name in lines, f"{model.__name__}.{name} is missing from the example"


def test_a_typo_in_any_section_fails_at_load_naming_the_section(tmp_path):
    """Every section is checked when the config is loaded, not when its stage runs."""
    import pytest

    from personarec.cli_common import resolve_config
    from personarec.errors import ConfigError

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"
    resolve_config(demo)  # the shipped configs pass
    resolve_config(EXAMPLE)
    for typo, section in (
        ("serve.prot=8000", "[serve]"),
        ("serve.queue.debounce=1", "[serve]"),
        ("evaluate.kss=[5]", "[evaluate]"),
        ("personas.max_interest=3", "[personas]"),
        ("recommend.models.sasrec.max_epoch=3", "[recommend.models.sasrec]"),
    ):
        with pytest.raises(ConfigError) as err:
            resolve_config(demo, [typo])
        assert section in str(err.value), (typo, str(err.value)[:300])
        assert typo.split("=")[0].rsplit(".", 1)[-1] in str(err.value)
