"""Persona writers of the refresh workers: the LLM (through the personas engine) or the
deterministic fallback builder. Chosen by name (``serve.writer``); ``module:Class`` also works,
so a deployment can plug its own writer without touching this package.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from personarec.errors import ConfigError
from personarec.personas.config import PersonasConfig
from personarec.personas.history import PersonaContext, UserHistory, build_context
from personarec.personas.schema import Persona, Provenance
from personarec.serve.assets import LiveHistory, ServingAssets
from personarec.serve.config import ServeConfig

Status = Literal["generated", "fallback", "unusable"]


@dataclass
class WriteResult:
    persona: Persona | None
    status: Status
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def to_user_history(h: LiveHistory, stage: str = "live") -> UserHistory:
    return UserHistory(user_idx=h.user_idx, user_id=h.user_id, items=h.items, timestamps=h.timestamps, stage=stage)


class PersonaWriter(ABC):
    """Turns a live history into a persona; one instance per worker process."""

    name: ClassVar[str]

    def __init__(self, assets: ServingAssets, personas: PersonasConfig, serve: ServeConfig) -> None:
        self.assets, self.personas, self.serve = assets, personas, serve

    #: due users a worker hands over in one :meth:`write_many` call
    batch_size: int = 1

    @abstractmethod
    def write(self, history: LiveHistory) -> WriteResult: ...

    def write_many(self, histories: list[LiveHistory]) -> list[WriteResult]:
        """Several users at once; writers that batch (the compact LLM engine) override it."""
        return [self.write(h) for h in histories]

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


WRITERS: dict[str, type[PersonaWriter]] = {}


def register_writer(cls: type[PersonaWriter]) -> type[PersonaWriter]:
    WRITERS[cls.name] = cls
    return cls


def build_writer(name: str, assets: ServingAssets, personas: PersonasConfig, serve: ServeConfig) -> PersonaWriter:
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"serve.writer {name!r}: {exc}") from None
        return cls(assets, personas, serve)
    if name not in WRITERS:
        raise ConfigError(f"unknown persona writer {name!r}; available: {sorted(WRITERS)} or module:Class")
    return WRITERS[name](assets, personas, serve)


@register_writer
class FallbackWriter(PersonaWriter):
    """Statistics only (strongest clusters + transition candidates); instant and deterministic."""

    name = "fallback"

    def __init__(self, assets: ServingAssets, personas: PersonasConfig, serve: ServeConfig) -> None:
        super().__init__(assets, personas, serve)
        from personarec.personas.transitions import TransitionStats

        space = assets.space
        self.transitions = TransitionStats.fit(assets.split.history("train"), space.fine, space.n_fine)

    def context(self, history: LiveHistory) -> PersonaContext:
        return build_context(to_user_history(history), self.assets.space, self.transitions, self.personas, self.assets.titles)

    def write(self, history: LiveHistory) -> WriteResult:
        from personarec.personas.fallback import fallback_persona

        start = time.perf_counter()
        ctx = self.context(history)
        if not ctx.stats or not ctx.candidates:
            return WriteResult(None, "unusable", ["empty history" if not ctx.stats else "no unseen cluster to explore"])
        prov = Provenance(
            model="statistics", backend="fallback", prompt_version="fallback",
            history_last_timestamp=int(history.timestamps[-1]) if len(history.timestamps) else None,
            history_length=len(history.items),
        )  # fmt: skip
        persona = fallback_persona(ctx, prov, self.personas.max_interests, self.personas.max_explore)
        return WriteResult(persona, "generated", seconds=time.perf_counter() - start)


@register_writer
class LLMWriter(PersonaWriter):
    """The personas engine with the configured LLM backend (embedded llama.cpp by default):
    retries, validation and grounding happen there; after the retries it returns the fallback
    persona, which the worker only stores for users who have no persona yet."""

    name = "llm"

    def __init__(self, assets: ServingAssets, personas: PersonasConfig, serve: ServeConfig) -> None:
        super().__init__(assets, personas, serve)
        import personarec.personas.backends.zoo  # noqa: F401  (registers the backends)
        from personarec.personas.backends.base import BACKENDS, build_backend
        from personarec.personas.generate import PersonaEngine

        name = serve.backend or personas.backend
        config = dict(serve.backend_config if serve.backend_config is not None else personas.backend_config)
        if name in BACKENDS and "n_threads" in BACKENDS[name].config_class.model_fields:
            config.setdefault("n_threads", serve.llm_threads)
        self.backend = build_backend(name, config)
        self.engine = PersonaEngine(assets.split, assets.space, self.backend, personas.model_copy(update={"concurrency": 1}))
        self._lock = threading.Lock()  # one llama.cpp context: one call at a time

        self.batch_size = self.engine.config.batch_size if self.engine.compact is not None else 1

    def write(self, history: LiveHistory) -> WriteResult:
        return self.write_many([history])[0]

    def write_many(self, histories: list[LiveHistory]) -> list[WriteResult]:
        start = time.perf_counter()
        with self._lock:
            ctxs = [self.engine.context_for(to_user_history(h, self.engine.stage)) for h in histories]
            outs = self.engine.personas_for(ctxs)
        share = (time.perf_counter() - start) / max(len(histories), 1)
        return [WriteResult(o.persona, o.status, list(o.errors), seconds=share) for o in outs]

    def close(self) -> None:
        self.backend.close()
