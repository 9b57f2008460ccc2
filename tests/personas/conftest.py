"""Fixtures for the persona engine: the shipped GGUF and a real OpenAI-compatible local server.

The server is llama-cpp-python's own (``python -m llama_cpp.server``) serving the shipped
SmolLM2 GGUF on a free loopback port; it starts once per test session and is killed at the end.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def shipped_gguf() -> Path:
    from personarec.errors import ConfigError
    from personarec.personas.backends.models import shipped_gguf_path

    try:
        return shipped_gguf_path()
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def llama_cpp_available() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


@pytest.fixture(scope="session")
def openai_server(shipped_gguf: Path, llama_cpp_available: None) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT/v1``) of a live llama.cpp OpenAI-compatible server."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] extras are not installed")
    from personarec.personas.backends.models import auto_threads

    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(shipped_gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", str(auto_threads()), "--n_threads_batch", str(auto_threads()), "--model_alias", "smollm2",
    ]  # fmt: skip
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer /v1/models within 90 s")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def embedded_backend():
    """The embedded backend (shipped SmolLM2 GGUF, 1 thread), loaded once per test session."""
    from personarec.personas.backends.base import build_backend

    try:
        backend = build_backend("embedded", {"n_threads": 1})
        backend.count_tokens("warm up")  # loads the model
    except Exception as exc:  # noqa: BLE001 - a missing model file is a skip, not a failure
        pytest.skip(f"embedded model unavailable: {exc}")
    yield backend
    backend.close()
