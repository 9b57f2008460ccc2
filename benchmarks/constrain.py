"""Benchmark: vectorized (CSR) trie vs dict trie masks, and LLM backend speed on a fixed prompt.

Run: ``.venv/bin/python benchmarks/constrain.py [--quick] [--skip-backends]``
Writes ``benchmarks/results/constrain.json``.

1. Trie masks at batch 64 over real allowed-string sets tokenized with the SmolLM2 tokenizer:
   the ML-100k fine-cluster names and the ML-100k semantic-ID strings of the item space
   (``personarec items`` stage; a synthetic name set if the item space cannot be built). States
   are random decoding positions (a random allowed string, a random depth), as during decoding.
   Timed: the dense bool mask (dict trie: Python loop over rows and children; vectorized: CSR
   gather), the dict trie with one numpy fancy-index per row (what ``prefix_allowed_tokens_fn``
   in transformers does), masking a [64, vocab] torch score matrix, and advancing the states.
2. Backends: latency and completion tokens/s for one fixed persona prompt, free text and
   schema-constrained: embedded (llama.cpp), openai (llama.cpp's server on loopback), transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from personarec.personas.constrain import DictTrie, VectorTrie, persona_json_schema  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "constrain.json"
BATCH = 64


def median_time(fn: Callable[[], Any], repeats: int, inner: int) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` calls, in seconds."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return statistics.median(times)


# -- allowed-string sets ------------------------------------------------------------------------
def real_string_sets() -> tuple[dict[str, list[str]], str]:
    """ML-100k fine-cluster names and semantic-ID strings from the real item space."""
    from personarec.data.movielens import load_ml100k
    from personarec.data.registry import shared_data_dir
    from personarec.data.splits import make_split
    from personarec.items.build import build_item_space

    split = make_split(load_ml100k(shared_data_dir() / "ml-100k"))
    space = build_item_space(split, show_progress=False)
    sids = [space.semantic_id_str(i) for i in range(space.n_items)]
    return {"ml100k_cluster_names": list(space.fine_names), "ml100k_semantic_ids": sids}, "ml-100k item space (items stage)"


def synthetic_string_sets(rng: np.random.Generator) -> tuple[dict[str, list[str]], str]:
    genres = "Action Adventure Animation Children Comedy Crime Documentary Drama Fantasy Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western".split()
    words = "space alien war love family school murder detective ghost music dance robot heist spy island king horse city night zombie wedding".split()
    names = sorted({f"{rng.choice(genres)} · {rng.choice(words)} · {rng.choice(words)}" for _ in range(600)})
    sids = [f"{a}-{b}-{c}-{d}" for a, b, c, d in rng.integers(0, 64, (1682, 4))]
    return {"synthetic_cluster_names": names, "synthetic_semantic_ids": sids}, "synthetic (item space unavailable)"


def random_states(vec: VectorTrie, seqs: list[list[int]], rng: np.random.Generator, ref: DictTrie) -> tuple[np.ndarray, list[Any]]:
    """A batch of decoding positions: a random allowed string, a random depth inside it."""
    picks = rng.integers(0, len(seqs), BATCH)
    v = vec.start(np.zeros(BATCH, dtype=np.int64))
    r = ref.start([0] * BATCH)
    depth = np.array([rng.integers(0, len(seqs[p])) for p in picks])
    for step in range(int(depth.max())):
        toks = np.array([seqs[p][step] if step < d else -1 for p, d in zip(picks, depth)])
        go = toks >= 0
        v = np.where(go, vec.advance(v, np.where(go, toks, 0)), v)
        r = [ref.advance([s], [t])[0] if g else s for s, t, g in zip(r, toks, go)]
    return v, r


def dict_mask_per_row_fancy(ref_states: list[Any], vocab: int) -> np.ndarray:
    """The transformers ``prefix_allowed_tokens_fn`` pattern: a Python loop over rows, one
    fancy-index assignment per row."""
    mask = np.zeros((len(ref_states), vocab), dtype=bool)
    for b, node in enumerate(ref_states):
        if node:
            mask[b, [t for t in node if t >= 0]] = True
    return mask


def bench_tries(string_sets: dict[str, list[str]], encode: Callable[[str], list[int]], vocab: int, quick: bool) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    repeats, inner = (5, 20) if quick else (15, 50)
    out: dict[str, Any] = {}
    for name, strings in string_sets.items():
        seqs = [encode(json.dumps(s, ensure_ascii=False)[1:]) for s in strings]  # body + closing quote
        t = time.perf_counter()
        vec = VectorTrie.build([seqs], vocab)
        build_s = time.perf_counter() - t
        ref = DictTrie([seqs], vocab)
        v_states, r_states = random_states(vec, seqs, rng, ref)
        assert np.array_equal(ref.allowed_mask(r_states), vec.allowed_mask(v_states)), "masks differ"
        scores = torch.randn(BATCH, vocab)
        toks = np.array([rng.choice(np.flatnonzero(row)) for row in vec.allowed_mask(v_states)])

        def dict_torch() -> Any:  # HF-style processor: per-row loop over allowed ids
            m = torch.full_like(scores, float("-inf"))
            for b, node in enumerate(r_states):
                m[b, [t for t in node if t >= 0]] = 0
            return scores + m

        def dict_pairs() -> tuple[np.ndarray, np.ndarray]:  # the same sparse output, row by row
            rows: list[int] = []
            cols: list[int] = []
            for b, node in enumerate(r_states):
                for t in node:
                    if t >= 0:
                        rows.append(b)
                        cols.append(t)
            return np.asarray(rows), np.asarray(cols)

        t_dict_pairs = median_time(dict_pairs, repeats, inner)
        t_dict = median_time(lambda: ref.allowed_mask(r_states), repeats, inner)
        t_fancy = median_time(lambda: dict_mask_per_row_fancy(r_states, vocab), repeats, inner)
        t_vec = median_time(lambda: vec.allowed_mask(v_states), repeats, inner)
        t_pairs = median_time(lambda: vec.allowed_pairs(v_states), repeats, inner)
        t_dict_torch = median_time(dict_torch, repeats, inner)
        t_vec_torch = median_time(lambda: vec.mask_logits(scores, v_states), repeats, inner)
        t_dict_adv = median_time(lambda: ref.advance(r_states, toks), repeats, inner)
        t_vec_adv = median_time(lambda: vec.advance(v_states, toks), repeats, inner)
        fan = vec.n_children[v_states]
        out[name] = {
            "n_strings": len(strings),
            "example": strings[0],
            "tokens_per_string_median": float(np.median([len(s) for s in seqs])),
            "trie_nodes": vec.n_nodes,
            "root_children": int(vec.n_children[0]),
            "batch": BATCH,
            "allowed_tokens_per_row_mean": float(fan.mean()),
            "build_s": build_s,
            "mask_dense_bool_s": {"dict_trie": t_dict, "dict_trie_rowwise_fancy": t_fancy, "vectorized": t_vec},
            "allowed_pairs_sparse_s": {"dict_trie": t_dict_pairs, "vectorized": t_pairs},
            "mask_torch_logits_s": {"dict_trie_rowwise": t_dict_torch, "vectorized": t_vec_torch},
            "advance_s": {"dict_trie": t_dict_adv, "vectorized": t_vec_adv},
            "speedup": {
                "mask_vs_dict_trie": t_dict / t_vec,
                "sparse_pairs_vs_dict_trie": t_dict_pairs / t_pairs,
                "mask_vs_dict_rowwise_fancy": t_fancy / t_vec,
                "torch_logits_vs_dict_rowwise": t_dict_torch / t_vec_torch,
                "advance_vs_dict_trie": t_dict_adv / t_vec_adv,
            },
        }
        print(f"[trie] {name}: {len(strings)} strings, dict {t_dict * 1e6:.0f} us, rowwise-fancy {t_fancy * 1e6:.0f} us, "
              f"vectorized {t_vec * 1e6:.0f} us -> {t_dict / t_vec:.1f}x / {t_fancy / t_vec:.1f}x; sparse {t_dict_pairs * 1e6:.0f} vs "
              f"{t_pairs * 1e6:.0f} us; torch {t_dict_torch * 1e3:.1f} vs {t_vec_torch * 1e3:.1f} ms", flush=True)  # fmt: skip
    return out


# -- backends ---------------------------------------------------------------------------------------
MESSAGES = [
    {"role": "system", "content": "You write short movie-taste personas as JSON."},
    {
        "role": "user",
        "content": "The user watched, by topic: Sci-Fi · space · alien (12 films, e.g. \"Star Wars\", \"Alien\"); "
        "Comedy · romance · wedding (5, e.g. \"Four Weddings and a Funeral\"); Crime · noir (3, e.g. \"Chinatown\"). "
        "Describe their interests and suggest one new topic.",
    },
]
HISTORY = ["Sci-Fi · space · alien", "Comedy · romance · wedding", "Crime · noir · detective"]
NOVEL = ["Animation · family · toys", "War · soldiers · battle", "Western · horse · outlaw", "Horror · zombie · night"]


def _run_backend(backend: Any, runs: int, max_tokens: int) -> dict[str, Any]:
    schema = persona_json_schema(HISTORY, NOVEL, max_interests=2, n_explore=1, summary_max_length=150, reason_max_length=80)
    res: dict[str, Any] = {"model": backend.model_name}
    from personarec.personas.backends.base import LLMError

    for mode, kw, limit in (("free", {}, max_tokens), ("json_schema", {"json_schema": schema}, 4 * max_tokens)):
        lat, tps, toks, errors = [], [], [], []
        for i in range(runs):
            try:
                g = backend.generate(MESSAGES, max_tokens=limit, temperature=0.7, seed=i, **kw)
            except LLMError as exc:
                errors.append(str(exc)[:200])
                continue
            lat.append(g.latency_s)
            toks.append(g.completion_tokens)
            tps.append(g.completion_tokens / g.latency_s)
        if not lat:
            res[mode] = {"runs": runs, "errors": errors}
            continue
        res[mode] = {
            "runs": runs,
            "max_tokens": limit,
            "errors": errors,
            "latency_s_median": statistics.median(lat),
            "completion_tokens_median": statistics.median(toks),
            "tokens_per_s_median": statistics.median(tps),
            "prompt_tokens": g.prompt_tokens,
            "example_output": g.text,
        }
        print(f"[backend] {backend.name} {mode}: {statistics.median(lat):.2f} s, {statistics.median(tps):.1f} tok/s", flush=True)
    return res


def bench_backends(runs: int, max_tokens: int) -> dict[str, Any]:
    from personarec.personas.backends.base import build_backend
    from personarec.personas.backends.models import shipped_gguf_path

    out: dict[str, Any] = {}
    try:
        import llama_cpp  # noqa: F401

        b = build_backend("embedded", {})
        t = time.perf_counter()
        b.count_tokens("warm up")
        load = time.perf_counter() - t
        out["embedded"] = {"load_s": load, **_run_backend(b, runs, max_tokens)}
        b.close()
    except ImportError:
        out["embedded"] = {"skipped": "llama-cpp-python not installed"}

    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError:
        out["openai_local_server"] = {"skipped": "llama-cpp-python[server] not installed"}
    else:
        out["openai_local_server"] = _bench_openai_server(shipped_gguf_path(), runs, max_tokens)

    b = build_backend("transformers", {})
    t = time.perf_counter()
    b.load()
    out["transformers"] = {"load_s": time.perf_counter() - t, **_run_backend(b, runs, max_tokens)}
    b.close()
    return out


def _bench_openai_server(gguf: Path, runs: int, max_tokens: int) -> dict[str, Any]:
    import socket

    import httpx

    from personarec.personas.backends.base import build_backend
    from personarec.personas.backends.models import auto_threads

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", str(auto_threads()), "--n_threads_batch", str(auto_threads()), "--model_alias", "smollm2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        b = build_backend("openai", {"base_url": base, "model": "smollm2", "api_key_env": None, "timeout_s": 300})
        res = _run_backend(b, runs, max_tokens)
        res["guided_mode"] = b.guided_mode
        b.close()
        return res
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--skip-backends", action="store_true", help="only the trie benchmark")
    ap.add_argument("--runs", type=int, default=3, help="generations per backend and mode")
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()

    from personarec.personas.backends.transformers import load_tokenizer

    tok = load_tokenizer()
    vocab = len(tok)
    encode = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    try:
        sets, source = real_string_sets()
    except Exception as exc:  # the items stage is optional for this benchmark
        print(f"item space unavailable ({type(exc).__name__}: {exc}); using synthetic names", flush=True)
        sets, source = synthetic_string_sets(np.random.default_rng(0))
    result: dict[str, Any] = {
        "benchmark": "constrain",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "tokenizer": "SmolLM2-135M-Instruct (from the shipped GGUF)",
        "vocab_size": vocab,
        "string_source": source,
        "trie": bench_tries(sets, encode, vocab, args.quick),
    }
    if not args.skip_backends:
        result["backends"] = bench_backends(args.runs, args.max_tokens)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
