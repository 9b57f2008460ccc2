"""Write a complete, commented example config from the config models themselves.

The pydantic models are the single source of truth for every knob; ``configs/example.toml`` is
generated from them (``personarec config example``) and a test keeps the two in sync, so the
documentation can never drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from personarec.config import RunConfig
from personarec.errors import ConfigError

#: ``base_from`` is read by the trainer (recommend/service.py), not by a model's config class, so the
#: generated example documents it here, under each model that builds on a base model
BASE_FROM = (
    "key of another model of this run to build on instead of fitting `base` (trained earlier by the same "
    '`personarec train`, or saved in RUN_DIR/models), e.g. base_from = "sasrec": no second training'
)
#: the blend's counterpart of ``base_from``
MEMBERS_FROM = (
    "keys of other models of this run to blend instead of fitting `members` (trained earlier by the same "
    '`personarec train`, or saved in RUN_DIR/models), e.g. members_from = ["sasrec", "ease"]: no second training'
)


def stage_models() -> dict[str, type[BaseModel]]:
    """Section name -> the model its stage validates it with (data is part of RunConfig itself)."""
    from personarec.distill.config import DistillConfig
    from personarec.evaluate.config import EvaluateConfig
    from personarec.items.config import ItemsConfig
    from personarec.personas.config import PersonasConfig
    from personarec.recommend.config import RecommendConfig
    from personarec.serve.config import ServeConfig

    return {
        "items": ItemsConfig,
        "personas": PersonasConfig,
        "recommend": RecommendConfig,
        "evaluate": EvaluateConfig,
        "distill": DistillConfig,
        "serve": ServeConfig,
    }


def validate_sections(cfg: RunConfig) -> RunConfig:
    """Check every section of ``cfg`` with its stage's model, and every per-model table of
    ``[recommend.models]``, now: a typo in ``[serve]`` fails ``personarec demo`` at start, naming
    the section, instead of passing until that stage runs."""
    from personarec.recommend.base import build_recommender

    for name, model in stage_models().items():
        section = cfg.section(name, model)  # raises ConfigError naming the section
        if name == "recommend":
            for key in section.models:  # type: ignore[attr-defined]
                cls_name, params = section.model_spec(key)  # type: ignore[attr-defined]
                params.pop("base_from", None)  # training directives (recommend.service), not model fields
                params.pop("members_from", None)
                try:
                    build_recommender(cls_name, params)
                except ValueError as exc:  # pydantic's ValidationError
                    raise ConfigError(f"config section [recommend.models.{key}]: {exc}") from None
    return cfg


def _value(v: Any) -> str | None:
    """TOML literal for a simple value, None when TOML cannot express it inline."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))
    if isinstance(v, list | tuple):
        parts = [_value(x) for x in v]
        return None if any(p is None for p in parts) else "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
    if isinstance(v, dict):
        parts = [f"{k} = {_value(x)}" for k, x in v.items()]
        return "{ " + ", ".join(parts) + " }" if v else None  # empty: leave it to sub-tables below
    return None


def _table(model: type[BaseModel], values: dict[str, Any], header: str, out: list[str]) -> None:
    doc = (model.__doc__ or "").strip().splitlines()
    out.append("")
    if doc:
        out.append(f"# {doc[0]}")
    out.append(f"[{header}]")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = values.get(name)
        annotation = field.annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((name, annotation))
            continue
        if field.description:
            out.append(f"# {field.description}")
        literal = _value(value) if value is not None else None
        out.append(f"{key} = {literal}" if literal is not None else f"# {key} =   (unset)")
    for name, sub in nested:
        _table(sub, values[name], f"{header}.{name}", out)


def example_toml() -> str:
    """The whole documented config: top-level keys, [data], then one table per stage."""
    from personarec.recommend.base import all_recommenders

    out = [
        "# personarec run config: every section and field with its default and meaning.",
        "# Generated by `personarec config example`; edit a copy. Flags and --set section.field=value override it.",
    ]
    run = RunConfig()
    top = run.model_dump(mode="json")
    for name in ("run_dir", "seed", "log_level"):
        field = RunConfig.model_fields[name]
        if field.description:
            out.append(f"# {field.description}")
        out.append(f"{name} = {_value(top[name])}")
    from personarec.config import DataConfig

    _table(DataConfig, top["data"], "data", out)
    for section, model in stage_models().items():
        _table(model, model().model_dump(mode="json"), section, out)
        if section == "recommend":
            for rec_name, cls in all_recommenders().items():
                _table(cls.config_class, cls.config_class().model_dump(mode="json"), f"recommend.models.{rec_name}", out)
                if "base" in cls.config_class.model_fields:
                    out += [f"# {BASE_FROM}", "# base_from =   (unset)"]
                if "members" in cls.config_class.model_fields:
                    out += [f"# {MEMBERS_FROM}", "# members_from =   (unset)"]
    return "\n".join(out) + "\n"
