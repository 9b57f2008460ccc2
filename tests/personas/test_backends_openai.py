"""The OpenAI-compatible backend against a real llama.cpp server, plus its failure paths."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from personarec.personas.backends.base import GenerationRequest, LLMError, build_backend
from personarec.personas.constrain import check_persona_output, persona_json_schema
from tests.personas.conftest import free_port

HISTORY = ["Space Opera & Sci-Fi", "Romantic Comedies", "Film Noir"]
NOVEL = ["Animated Family Films", "War Dramas", "Slasher Horror"]


def _messages(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You describe a movie watcher's tastes as JSON."},
        {"role": "user", "content": text},
    ]


@pytest.mark.llm
def test_openai_backend_json_schema_against_local_server(openai_server: str) -> None:
    backend = build_backend("openai", {"base_url": openai_server, "model": "smollm2", "api_key_env": None, "timeout_s": 120})
    schema = persona_json_schema(HISTORY, NOVEL, max_interests=2, n_explore=1, summary_max_length=90, reason_max_length=60)
    prompts = [
        "Watched: Star Wars x9, Alien x4, Blade Runner x3. Persona?",
        "Watched: When Harry Met Sally x5, Notting Hill x2. Persona?",
    ]
    results = backend.generate_many([GenerationRequest(_messages(p), schema, max_tokens=160, seed=i) for i, p in enumerate(prompts)])
    for gen in results:
        assert not isinstance(gen, LLMError), gen
        report = check_persona_output(gen.text, HISTORY, NOVEL)
        assert report.parsed and report.grounded, (report.problems, gen.text)
        assert gen.prompt_tokens > 20 and gen.completion_tokens > 5  # the server's own usage counts
    backend.close()


@pytest.mark.llm
def test_openai_backend_free_text(openai_server: str) -> None:
    backend = build_backend("openai", {"base_url": openai_server, "model": "smollm2", "api_key_env": None})
    gen = backend.generate(_messages("Say hello."), max_tokens=8)
    assert gen.text and 0 < gen.completion_tokens <= 8


def test_unreachable_server_raises_llm_error_after_retries() -> None:
    port = free_port()  # nothing listens there
    backend = build_backend(
        "openai", {"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 2, "backoff_s": 0.01, "timeout_s": 2}
    )
    with pytest.raises(LLMError, match="after 3 attempts"):
        backend.generate(_messages("hi"), max_tokens=4)
    out = backend.generate_many([GenerationRequest(_messages("a")), GenerationRequest(_messages("b"))])
    assert all(isinstance(r, LLMError) for r in out)


class _Flaky(BaseHTTPRequestHandler):
    """A server that fails the way real ones do and llama.cpp's will not on demand: 503s, and a
    400 for the ``json_schema`` response_format dialect."""

    calls: list[dict] = []
    fail_first = 2

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(body)
        if len(self.calls) <= self.fail_first:
            self._send(503, {"error": "overloaded"})
        elif body.get("response_format", {}).get("type") == "json_schema":
            self._send(400, {"error": "response_format json_schema not supported"})
        elif "guided_json" in body:
            self._send(422, {"error": "unknown field guided_json"})
        else:
            msg = {"role": "assistant", "content": '{"ok": true}'}
            self._send(200, {"model": "m", "choices": [{"message": msg, "finish_reason": "stop"}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[str]:
    _Flaky.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_retries_5xx_then_steps_down_the_guided_dialect(flaky_server: str) -> None:
    backend = build_backend("openai", {"base_url": flaky_server, "max_retries": 3, "backoff_s": 0.01})
    gen = backend.generate(_messages("x"), json_schema={"type": "object"}, max_tokens=5)
    assert gen.text == '{"ok": true}' and gen.prompt_tokens == 7 and gen.completion_tokens == 3
    kinds = [c.get("response_format", {}).get("type") for c in _Flaky.calls]
    # two 503s retried, then json_schema rejected (not retried) -> json_object with the schema
    assert kinds == ["json_schema", "json_schema", "json_schema", "json_object"]
    assert _Flaky.calls[-1]["response_format"]["schema"] == {"type": "object"}
    assert backend.guided_mode == "json_object"
    backend.generate(_messages("y"), json_schema={"type": "object"}, max_tokens=5)
    assert _Flaky.calls[-1]["response_format"]["type"] == "json_object"  # remembered for later calls


def test_guided_json_dialect_for_old_vllm(flaky_server: str) -> None:
    _Flaky.fail_first = 0
    try:
        backend = build_backend("openai", {"base_url": flaky_server, "guided": "guided_json", "step_down": False})
        with pytest.raises(LLMError, match="HTTP 422"):
            backend.generate(_messages("x"), json_schema={"type": "object"}, max_tokens=5)
        assert _Flaky.calls[-1]["guided_json"] == {"type": "object"} and len(_Flaky.calls) == 1
    finally:
        _Flaky.fail_first = 2


def test_retries_run_out_on_persistent_5xx(flaky_server: str) -> None:
    _Flaky.fail_first = 100
    try:
        backend = build_backend("openai", {"base_url": flaky_server, "max_retries": 1, "backoff_s": 0.01})
        with pytest.raises(LLMError, match="HTTP 503"):
            backend.generate(_messages("x"), max_tokens=5)
        assert len(_Flaky.calls) == 2
    finally:
        _Flaky.fail_first = 2
