"""One small interface for every LLM runtime (llama.cpp, OpenAI-compatible servers, transformers).

The engine (a backend) only turns chat messages into text; prompts, grounding checks, retries
and fallbacks live above it, so every backend gets them for free (vLLM's engine/entrypoint split).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from personarec.errors import ConfigError


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Generation:
    """One completion and its cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str


@dataclass
class GenerationRequest:
    """The arguments of one :meth:`LLMBackend.generate` call, for batches."""

    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None


class LLMError(RuntimeError):
    """A backend call failed (timeout, HTTP error, refusal); callers retry then fall back."""


class LLMBackend(ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[BackendConfig]] = BackendConfig
    #: True when ``generate`` may be called from several threads at once (the backend serialises
    #: or parallelises internally); callers wrap backends without it in a lock.
    thread_safe: ClassVar[bool] = False

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @classmethod
    def from_config(cls, config: dict[str, Any] | BackendConfig | None = None) -> LLMBackend:
        if config is None or isinstance(config, BackendConfig):
            return cls(config)
        return cls(cls.config_class.model_validate(config))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump()}

    @property
    @abstractmethod
    def model_name(self) -> str: ...

    @abstractmethod
    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        """Complete a chat. With ``json_schema`` the output must conform to it (constrained
        decoding where the runtime supports it). Raises :class:`LLMError` on failure."""

    def generate_many(self, requests: Sequence[GenerationRequest]) -> list[Generation | LLMError]:
        """Run a batch; each slot holds its :class:`Generation` or the :class:`LLMError` it raised,
        so one failure never loses the batch. Remote backends overlap calls up to their
        concurrency limit; local ones run them in turn."""
        out: list[Generation | LLMError] = []
        for r in requests:
            try:
                out.append(
                    self.generate(
                        r.messages, json_schema=r.json_schema, max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
                    )
                )
            except LLMError as exc:
                out.append(exc)
        return out

    def count_tokens(self, text: str) -> int:
        """Token count with this backend's tokenizer (approximation allowed for remote ones)."""
        return max(1, len(text) // 4)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (model memory, HTTP pools)."""


BACKENDS: dict[str, type[LLMBackend]] = {}


def register_backend(cls: type[LLMBackend]) -> type[LLMBackend]:
    BACKENDS[cls.name] = cls
    return cls


def build_backend(name: str, config: dict[str, Any] | None = None) -> LLMBackend:
    """Instantiate a registered backend by name (``embedded``, ``openai``, ``transformers``)."""
    import personarec.personas.backends.zoo  # noqa: F401  (registers the built-in backends)

    if name not in BACKENDS:
        raise ConfigError(f"unknown LLM backend {name!r}; available: {sorted(BACKENDS)}")
    return BACKENDS[name].from_config(config or {})
