"""One config file describes a run; every section belongs to one stage of the pipeline.

``personarec.toml`` (or YAML) is validated by :class:`RunConfig`. CLI flags override single
fields; ``--set section.field=value`` overrides any field. Each stage owns its section model
(defined next to the code that uses it) so a stage's knobs live with the stage.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from personarec.data.preprocess import PreprocessConfig
from personarec.data.splits import SplitConfig
from personarec.errors import ConfigError

DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets"


class DataConfig(BaseModel):
    """Which dataset, where it lives, and how it is cleaned and split."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("ml-100k", description="ml-100k | ml-latest-small | ml-1m | ml-20m | ml-25m | ml-32m | amazon | amazon-office-2014 | p5-beauty | p5-sports | p5-toys | tabular")
    data_dir: Path | None = Field(None, description="local directory with the dataset files; None = shared copy or download")
    download: bool = Field(True, description="download (checksum-checked) when no local copy is found")
    skip_bad_rows: bool = False
    tabular: dict[str, Any] = Field(default_factory=dict, description="column mapping for dataset='tabular'")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)


class Section(BaseModel):
    """A stage's section; stages subclass it. Unknown keys are kept so that new stages can land
    without touching this file's schema, then validated by the stage's own model."""

    model_config = ConfigDict(extra="allow")


class RunConfig(BaseModel):
    """A whole run: data -> items -> personas -> recommenders -> evaluation -> serving."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path = Field(Path("runs/default"), description="where artifacts and the manifest go")
    seed: int = 42
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data: DataConfig = Field(default_factory=DataConfig)
    items: Section = Field(default_factory=Section)
    personas: Section = Field(default_factory=Section)
    recommend: Section = Field(default_factory=Section)
    evaluate: Section = Field(default_factory=Section)
    distill: Section = Field(default_factory=Section)
    serve: Section = Field(default_factory=Section)

    def section(self, name: str, model: type[BaseModel]) -> BaseModel:
        """Validate a stage's section with the stage's own model."""
        raw = getattr(self, name)
        try:
            return model.model_validate(raw.model_dump() if isinstance(raw, BaseModel) else raw)
        except ValidationError as exc:
            raise ConfigError(f"config section [{name}]: {exc}") from None


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None, sets: list[str] | None = None) -> RunConfig:
    """Read a TOML/YAML file (optional), apply ``overrides`` (dotted keys) and ``--set k=v`` pairs."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = tomllib.loads(p.read_text()) if p.suffix == ".toml" else (yaml.safe_load(p.read_text()) or {})
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: {exc}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(tree, key, value)
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        _set_path(tree, key.strip(), _parse_value(value.strip()))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"invalid config{f' {path}' if path else ''}:\n{exc}") from None
