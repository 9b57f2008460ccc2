"""Registers the built-in backends. Each module imports its runtime lazily, so this is cheap."""

from personarec.personas.backends import llamacpp, openai, transformers  # noqa: F401
