"""Export the trained student so llama.cpp (the ``embedded`` backend) serves it.

Two forms, both written with the ``gguf`` package's ``GGUFWriter``:

- **adapter** (default, ~10 MB for r=16): a LoRA adapter GGUF loaded next to the unchanged base,
  ``Llama(model_path=base.gguf, lora_path=adapter.gguf)``. What llama.cpp's adapter loader expects:
  ``general.type = "adapter"``, ``general.architecture`` equal to the base's, ``adapter.type =
  "lora"``, ``adapter.lora.alpha`` (llama.cpp scales the update by ``alpha / rank``, rank read from
  the tensors), and for every adapted weight ``W`` of the base (GGUF name, e.g.
  ``blk.3.attn_q.weight``) two tensors ``<name>.lora_a`` (rows = rank, columns = W's input size)
  and ``<name>.lora_b`` (rows = W's output size, columns = rank). In numpy row-major terms these
  are exactly peft's ``lora_A.weight`` [r, in] and ``lora_B.weight`` [out, r].
- **merged**: one full GGUF where the update is folded into the base weights (no adapter cost at
  generation time); the other tensors and all metadata are copied from the base file unchanged.

One subtlety: GGUF files of the llama architecture store ``attn_q``/``attn_k`` with their output
rows permuted (llama.cpp's rotary layout) and transformers un-permutes them when it reads the
GGUF. The LoRA was trained in transformers' layout, so the rows of ``lora_b`` (and of merged
deltas) for Q and K are permuted back into the file's layout here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from personarec.errors import ConfigError

#: transformers module path inside a decoder layer -> GGUF tensor base name
HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
#: architectures whose GGUF stores Q/K rows permuted for rotary embeddings
PERMUTED_QK = {"llama"}
_LAYER = re.compile(r"layers\.(\d+)\.(.+)$")


@dataclass
class LoraPair:
    gguf_name: str  # e.g. blk.0.attn_q.weight
    a: np.ndarray  # float32 [r, in]
    b: np.ndarray  # float32 [out, r], already in the GGUF file's row layout
    scaling: float  # alpha / r as peft applies it


def _base_meta(base_gguf: Path) -> tuple[str, dict[str, Any]]:
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = reader.fields["general.architecture"].contents()
    meta = {k: reader.fields[k].contents() for k in reader.fields if k.startswith(f"{arch}.attention.head_count")}
    return arch, meta


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF -> GGUF row order of a Q/K projection (each head's two rotary halves interleaved)."""
    out = w.shape[0]
    return w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def lora_pairs(model: Any, base_gguf: Path, adapter_name: str = "default") -> tuple[str, list[LoraPair]]:
    """Collect every LoRA update of a peft model, named and laid out as the base GGUF needs."""
    from peft.tuners.lora import LoraLayer

    arch, meta = _base_meta(base_gguf)
    n_head = int(meta.get(f"{arch}.attention.head_count", 0))
    n_head_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_head))
    pairs: list[LoraPair] = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter_name not in getattr(module, "lora_A", {}):
            continue
        m = _LAYER.search(name)
        if m is None or m.group(2) not in HF_TO_GGUF:
            raise ConfigError(f"cannot export LoRA on {name!r}: no GGUF tensor name known for it")
        a = module.lora_A[adapter_name].weight.detach().float().numpy().copy()
        b = module.lora_B[adapter_name].weight.detach().float().numpy().copy()
        kind = HF_TO_GGUF[m.group(2)]
        if arch in PERMUTED_QK and kind == "attn_q":
            b = permute_rows(b, n_head)
        elif arch in PERMUTED_QK and kind == "attn_k":
            b = permute_rows(b, n_head_kv)
        pairs.append(LoraPair(f"blk.{int(m.group(1))}.{kind}.weight", a, b, float(module.scaling[adapter_name])))
    if not pairs:
        raise ConfigError("the model has no LoRA layers to export")
    return arch, pairs


def write_adapter_gguf(model: Any, base_gguf: str | Path, path: str | Path, name: str = "personarec-student") -> Path:
    """Write the LoRA adapter GGUF (see the module docstring for the format)."""
    import gguf

    base_gguf, path = Path(base_gguf), Path(path)
    arch, pairs = lora_pairs(model, base_gguf)
    ranks = {p.a.shape[0] for p in pairs}
    alphas = {round(p.scaling * p.a.shape[0], 6) for p in pairs}
    if len(alphas) != 1:
        raise ConfigError(f"llama.cpp adapters have one alpha; this LoRA has several effective alphas {sorted(alphas)} (ranks {sorted(ranks)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alphas.pop()))
    for p in pairs:
        writer.add_tensor(f"{p.gguf_name}.lora_a", np.ascontiguousarray(p.a, dtype=np.float32))
        writer.add_tensor(f"{p.gguf_name}.lora_b", np.ascontiguousarray(p.b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def write_merged_gguf(model: Any, base_gguf: str | Path, path: str | Path, tensor_type: str = "Q8_0") -> Path:
    """Write a full GGUF: the base file's metadata and tensors, with every adapted weight replaced
    by ``dequant(W) + scaling * B @ A`` stored as ``tensor_type`` (F32, F16 or Q8_0)."""
    import gguf
    from gguf.quants import dequantize, quantize

    base_gguf, path = Path(base_gguf), Path(path)
    arch, pairs = lora_pairs(model, base_gguf)
    deltas = {p.gguf_name: p.scaling * (p.b @ p.a) for p in pairs}
    qtype = gguf.GGMLQuantizationType[tensor_type]
    reader = gguf.GGUFReader(str(base_gguf))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # written by the writer itself
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # numpy order [out, in]
        if t.name in deltas:
            w = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32) + deltas.pop(t.name)
            if qtype == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(t.name, w)
            elif qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(t.name, w.astype(np.float16))
            else:
                # quantized data is passed as bytes [rows, bytes per row]; the writer derives the shape
                writer.add_tensor(t.name, quantize(w, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    if deltas:
        raise ConfigError(f"adapted weights not found in {base_gguf}: {sorted(deltas)[:3]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def export_student(cfg: Any, adapter_dir: str | Path, out_path: str | Path, kind: str | None = None) -> Path:
    """Load base + trained adapter (peft format) and write the GGUF that the embedded backend serves."""
    from personarec.distill.base_model import base_gguf
    from personarec.distill.student import load_student

    kind = kind or cfg.export
    base = base_gguf(cfg)
    if base is None:
        raise ConfigError(
            "GGUF export needs the student's base as a GGUF (distill.gguf_file); for a Hugging Face base, "
            "convert it to GGUF first and point distill.gguf_file at it"
        )
    model, _ = load_student(cfg, adapter_dir)
    if kind == "adapter":
        return write_adapter_gguf(model, base, out_path)
    if kind == "merged":
        return write_merged_gguf(model, base, out_path, cfg.merged_type)
    raise ConfigError(f"unknown export kind {kind!r}: adapter | merged")
