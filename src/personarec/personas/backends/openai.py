"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, hosted APIs) over httpx.

Real teachers are large models behind such a server. Robustness lives here: a timeout per call,
retries with exponential backoff and jitter on timeouts / connection errors / 429 / 5xx, a
concurrency limit shared by all threads, and JSON-schema guided output in the dialect the
server speaks (``response_format`` json_schema, vLLM's ``guided_json``, or plain json_object),
stepping down a dialect when the server rejects one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from personarec.personas.backends.base import (
    BackendConfig,
    Generation,
    GenerationRequest,
    LLMBackend,
    LLMError,
    register_backend,
)

GuidedMode = Literal["json_schema", "guided_json", "json_object", "none"]
# A server that does not know a dialect may *ignore* it (unconstrained output) rather than reject
# it, so the step-down goes to json_object-with-schema (llama.cpp, Ollama, vLLM honour it), never
# to guided_json, which only old vLLM understands: choose that one explicitly in the config.
_STEP_DOWN: dict[str, str] = {"json_schema": "json_object", "guided_json": "json_object", "json_object": "none"}
_DIALECT_WORDS = ("response_format", "json_schema", "guided_json", "json_object")


class OpenAIBackendConfig(BackendConfig):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="server root including /v1")
    model: str = Field("default", description="model name sent to the server")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="name of the env var holding the API key (never the key)")
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(3, ge=0, description="retries after the first attempt on transient errors")
    backoff_s: float = Field(0.5, ge=0, description="first backoff; doubles each retry, with full jitter")
    backoff_max_s: float = Field(8.0, ge=0)
    concurrency: int = Field(4, ge=1, le=512, description="requests in flight at once, across threads")
    guided: GuidedMode = Field("json_schema", description="how a JSON schema is sent to the server")
    step_down: bool = Field(True, description="on a 400/422 for the guided dialect, try the next weaker one")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into every request body")


class OpenAIBackend(LLMBackend):
    """Chat completions over HTTP. Thread-safe; ``generate_many`` overlaps calls."""

    name: ClassVar[str] = "openai"
    config_class: ClassVar[type[BackendConfig]] = OpenAIBackendConfig
    thread_safe: ClassVar[bool] = True
    config: OpenAIBackendConfig

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.config.concurrency)
        self._guided: str = self.config.guided
        self._rng = random.Random()

    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def guided_mode(self) -> str:
        """The dialect in use now (after any step-down)."""
        return self._guided

    # -- HTTP ------------------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                headers = {"Content-Type": "application/json"}
                key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                cfg = self.config
                self._client = httpx.Client(
                    base_url=cfg.base_url.rstrip("/") + "/",
                    headers=headers,
                    timeout=httpx.Timeout(cfg.timeout_s, connect=min(cfg.connect_timeout_s, cfg.timeout_s)),
                    limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
                )
            return self._client

    def _body(self, req: GenerationRequest, guided: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
        }
        if req.seed is not None:
            body["seed"] = req.seed
        if req.json_schema is not None:
            if guided == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": req.json_schema, "strict": True},
                }
            elif guided == "guided_json":
                body["guided_json"] = req.json_schema
            elif guided == "json_object":
                # llama.cpp's server also honours a schema here; others ignore the extra key.
                body["response_format"] = {"type": "json_object", "schema": req.json_schema}
        body.update(self.config.extra_body)
        return body

    def _sleep_before_retry(self, attempt: int) -> None:
        cap = min(self.config.backoff_max_s, self.config.backoff_s * (2**attempt))
        time.sleep(self._rng.uniform(0, cap))  # full jitter: spreads retries of many clients

    @staticmethod
    def _dialect_rejected(resp: httpx.Response) -> bool:
        """The server refused the guided-output dialect (some answer 400/422, llama.cpp's 500)."""
        return resp.status_code in (400, 422, 500) and any(w in resp.text.lower() for w in _DIALECT_WORDS)

    def _post(self, body: dict[str, Any], guided: bool = False) -> httpx.Response:
        """One POST with retries on transient failures; raises LLMError when they run out."""
        last = ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self._sleep_before_retry(attempt - 1)
            try:
                with self._slots:
                    resp = self._http().post("chat/completions", json=body)
            except httpx.TimeoutException as exc:
                last = f"timeout after {self.config.timeout_s:g}s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"connection error: {type(exc).__name__}: {exc}"
                continue
            if guided and self._dialect_rejected(resp):
                return resp  # not transient: the caller steps down a dialect
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            return resp
        raise LLMError(f"{self.config.base_url}: {last} (after {self.config.max_retries + 1} attempts)")

    # -- interface -------------------------------------------------------------------------------
    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        req = GenerationRequest(messages, json_schema, max_tokens, temperature, seed)
        t0 = time.perf_counter()
        while True:
            guided = self._guided
            constrained = json_schema is not None and guided != "none"
            resp = self._post(self._body(req, guided), guided=constrained)
            if constrained and self.config.step_down and guided in _STEP_DOWN and self._dialect_rejected(resp):
                # The server does not speak this dialect: remember the weaker one for later calls.
                with self._lock:
                    if self._guided == guided:
                        self._guided = _STEP_DOWN[guided]
                continue
            if resp.status_code >= 400:
                raise LLMError(f"{self.config.base_url}: HTTP {resp.status_code}: {resp.text[:300]}")
            return self._parse(resp, req, time.perf_counter() - t0)

    def _parse(self, resp: httpx.Response, req: GenerationRequest, latency: float) -> Generation:
        try:
            data = resp.json()
            choice = data["choices"][0]
            message = choice.get("message") or {}
            text = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"malformed response from {self.config.base_url}: {exc}") from None
        if message.get("refusal"):
            raise LLMError(f"the model refused: {str(message['refusal'])[:200]}")
        if choice.get("finish_reason") == "content_filter" or text is None:
            raise LLMError(f"no content (finish_reason={choice.get('finish_reason')!r})")
        usage = data.get("usage") or {}
        prompt_text = "".join(m.get("content", "") for m in req.messages)
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or self.count_tokens(prompt_text)),
            completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
            latency_s=latency,
            model=str(data.get("model") or self.config.model),
        )

    def generate_many(self, requests: Sequence[GenerationRequest]) -> list[Generation | LLMError]:
        """Overlap up to ``concurrency`` requests; results keep the input order."""

        def one(r: GenerationRequest) -> Generation | LLMError:
            try:
                return self.generate(
                    r.messages, json_schema=r.json_schema, max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
                )
            except LLMError as exc:
                return exc

        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(requests))) as pool:
            return list(pool.map(one, requests))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


register_backend(OpenAIBackend)
