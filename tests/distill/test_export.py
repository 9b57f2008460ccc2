"""The exported GGUF is what llama.cpp expects, and serves the same model transformers+peft trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from personarec.distill.base_model import base_gguf
from personarec.distill.export import permute_rows, write_adapter_gguf, write_merged_gguf
from personarec.distill.student import load_student

pytestmark = pytest.mark.slow  # trains the shared tiny student (~6 LoRA steps) once per session


@pytest.fixture(scope="module")
def student(trained_student):
    cfg, examples, result = trained_student
    model, tok = load_student(cfg, result.adapter_dir)
    return cfg, examples, model, tok


@pytest.fixture(scope="module")
def adapter_gguf(student, tmp_path_factory):
    cfg, _, model, _ = student
    return write_adapter_gguf(model, base_gguf(cfg), tmp_path_factory.mktemp("gguf") / "student.gguf")


def test_permute_rows_matches_interleaved_rotary_layout():
    # 1 head of dim 4: HF rows [r0 r1 | r2 r3] (halves) -> GGUF [r0 r2 r1 r3] (pairs)
    w = np.arange(4)[:, None] * np.ones((1, 3))
    assert permute_rows(w, 1)[:, 0].tolist() == [0, 2, 1, 3]


def test_adapter_gguf_metadata_and_shapes(adapter_gguf, student):
    import gguf

    cfg, _, model, _ = student
    reader = gguf.GGUFReader(str(adapter_gguf))
    f = {k: reader.fields[k].contents() for k in ("general.type", "general.architecture", "adapter.type", "adapter.lora.alpha")}
    assert f == {"general.type": "adapter", "general.architecture": "llama", "adapter.type": "lora", "adapter.lora.alpha": 16.0}
    base = {t.name: t for t in gguf.GGUFReader(str(base_gguf(cfg))).tensors}
    tensors = {t.name: t for t in reader.tensors}
    n_layers = model.config.num_hidden_layers
    assert len(tensors) == n_layers * 7 * 2  # q k v o gate up down, A and B each
    for name, t in tensors.items():
        w = base[name.rsplit(".", 1)[0]]  # ggml shapes: ne[0] = input size, ne[1] = output size
        if name.endswith(".lora_a"):
            assert t.shape.tolist() == [w.shape[0], 8]
        else:
            assert t.shape.tolist() == [8, w.shape[1]]


def _prompt_ids(tok, messages) -> list[int]:
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _llama_logits(model_path, ids, lora_path=None):
    llama_cpp = pytest.importorskip("llama_cpp")
    m = llama_cpp.Llama(model_path=str(model_path), lora_path=lora_path, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    try:
        m.eval(ids)
        return np.array(m.scores[len(ids) - 1])
    finally:
        m.close()


@pytest.mark.llm
def test_llamacpp_with_adapter_matches_transformers_peft(student, adapter_gguf):
    cfg, examples, model, tok = student
    ids = _prompt_ids(tok, examples[0].prompt) + tok.encode('{"summary": "Enjoys', add_special_tokens=False)
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0, -1].numpy()
        with model.disable_adapter():
            hf0 = model(torch.tensor([ids])).logits[0, -1].numpy()
    lc = _llama_logits(base_gguf(cfg), ids, str(adapter_gguf))
    lc0 = _llama_logits(base_gguf(cfg), ids)
    assert np.linalg.norm(hf - hf0) > 0.05 * np.linalg.norm(hf0)  # the adapter really changes the model
    assert np.corrcoef(lc, hf)[0, 1] > 0.99
    # the adapter's own effect, not just the shared base: a wrong layout/scale/permutation breaks this
    assert np.corrcoef(lc - lc0, hf - hf0)[0, 1] > 0.95
    assert lc.argmax() == hf.argmax()


@pytest.mark.llm
def test_merged_gguf_matches_the_adapter(student, adapter_gguf, tmp_path):
    cfg, examples, model, tok = student
    merged = write_merged_gguf(model, base_gguf(cfg), tmp_path / "merged.gguf", "Q8_0")
    ids = _prompt_ids(tok, examples[1].prompt)
    with_adapter = _llama_logits(base_gguf(cfg), ids, str(adapter_gguf))
    folded = _llama_logits(merged, ids)
    assert np.corrcoef(with_adapter, folded)[0, 1] > 0.99


@pytest.mark.llm
def test_constrained_student_output_is_grounded(student, adapter_gguf):
    """The embedded backend with the adapter loaded, under the persona JSON-schema grammar."""
    pytest.importorskip("llama_cpp")
    from personarec.personas.backends.base import build_backend
    from personarec.personas.constrain import check_persona_output, persona_json_schema

    from .conftest import CLUSTERS

    cfg, examples, _, _ = student
    backend = build_backend("embedded", {"lora_path": str(adapter_gguf), "n_ctx": 1024})
    try:
        for ex in examples[:3]:
            watched = ex.prompt[1]["content"].split("Watched: ")[1].rstrip(".").split(", ")
            seen = sorted(set(watched))
            unseen = [c for c in CLUSTERS if c not in seen]
            schema = persona_json_schema(seen, unseen, max_interests=3, n_explore=1, min_explore=1, summary_max_length=120, reason_max_length=60)
            gen = backend.generate(ex.prompt, json_schema=schema, max_tokens=200)
            payload = json.loads(gen.text)  # the grammar guarantees parseable JSON
            # grounded: every interest is a history cluster, every explore topic an unseen catalogue
            # cluster (distinctness is not a grammar property; the writer's validation retries it)
            assert payload["interests"] and payload["explore"]
            assert {i["cluster"] for i in payload["interests"]} <= set(seen), gen.text
            assert {e["cluster"] for e in payload["explore"]} <= set(unseen), gen.text
            report = check_persona_output(payload, seen, unseen, seen)
            assert report.parsed and report.grounded and report.novel, report.problems
    finally:
        backend.close()
