"""Persona generation benchmark on ML-100k -> benchmarks/results/personas.json.

    .venv/bin/python benchmarks/personas.py [--users 60] [--teacher-users 15] [--server-users 20]

Measures, on the real item space (MiniLM embeddings + k-means clusters) of the leave-one-out split:
- median input tokens per user, raw title list vs the clustered view (history block and whole
  prompt), counted with the embedded model's own tokenizer, on every user;
- validity (model outputs that parse + validate + are grounded) and grounding (re-checked on the
  stored personas) of the embedded backend, single-call and multi-step teacher modes;
- explore hit-rate (a proposed unseen cluster contains a held-out future item) against the
  baseline that proposes the most frequent cluster transitions, on the same users;
- personas/s and tokens/s per backend: embedded (llama.cpp in-process) and openai (the real
  OpenAI-compatible client against ``python -m llama_cpp.server`` serving the same GGUF on loopback);
- the vectorized-trie vs dict-trie figures of ``benchmarks/results/constrain.json`` if present.

Personas are built from the training events only (``history_stage=valid``) so that each user has two
held-out future items (validation + test) for the hit-rate; nothing is tuned on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(model_path: Path, threads: int = 1, timeout_s: float = 120.0):
    """``python -m llama_cpp.server`` on a free loopback port; yields its base URL."""
    import httpx

    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads),
        "--model_alias",
        "smollm2",
    ]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {log.read()[-2000:].decode(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("llama_cpp.server did not start in time")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_backend(split, space, backend, users, config, label, transitions):
    """Generate into a fresh store; returns (generation summary, quality of the stored personas, personas)."""
    from personarec.personas.generate import PersonaEngine, generate_personas
    from personarec.personas.quality import evaluate_personas
    from personarec.personas.store.base import open_store

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "p.db"))
        engine = PersonaEngine(split, space, backend, config, transitions=transitions, seed=42)
        report = generate_personas(
            split, space, backend, users, store, config, engine=engine, show_progress=True
        )
        personas = [p for u in report.user_ids if (p := store.get(u)) is not None]
        store.close()
    quality = evaluate_personas(
        personas, split, space, transitions=transitions, half_life=config.prompt.recency_half_life
    )
    print(
        f"[{label}] {report.generated} generated, {report.fallbacks} fallback, validity {report.validity_rate:.1%}, "
        f"{report.personas_per_s:.2f} personas/s, {report.tokens_per_s:.0f} tok/s; explore hit "
        f"{quality.all.explore_hit_rate:.1%} vs transitions {quality.all.baseline_hit_rate:.1%}",
        flush=True,
    )
    return report, quality, personas


def section(report, quality) -> dict:
    s = report.summary()
    keep = (
        "backend",
        "model",
        "writer",
        "hindsight",
        "requested",
        "generated",
        "fallbacks",
        "attempts",
        "outputs",
        "valid_outputs",
        "first_try_valid",
        "validity_rate",
        "error_counts",
        "input_tokens",
        "output_tokens",
        "llm_seconds",
        "wall_seconds",
        "personas_per_s",
        "tokens_per_s",
    )
    out = {k: s[k] for k in keep}
    out["input_tokens_per_persona"] = round(
        report.input_tokens / max(1, report.generated + report.fallbacks), 1
    )
    out["output_tokens_per_persona"] = round(
        report.output_tokens / max(1, report.generated + report.fallbacks), 1
    )
    out["total_tokens_per_s"] = (
        round((report.input_tokens + report.output_tokens) / report.llm_seconds, 1)
        if report.llm_seconds
        else None
    )
    q = quality.to_json()
    out["grounding_rate"] = q["grounding_rate"]
    out["explore_novelty_rate"] = q["explore_novelty_rate"]
    out["future"] = q["hindsight"] if report.hindsight else q["all"]
    out["future_llm_only"] = q["llm"]
    out["failures"] = [f.model_dump() for f in report.failures[:5]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=12, help="users for the embedded single-call run")
    ap.add_argument(
        "--teacher-users", type=int, default=3, help="users for the multi-step teacher run (0 = skip)"
    )
    ap.add_argument(
        "--hindsight-users", type=int, default=2, help="users for hindsight teacher labels (0 = skip)"
    )
    ap.add_argument(
        "--server-users",
        type=int,
        default=20,
        help="users for the openai backend vs llama_cpp.server (0 = skip)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1 is far faster when the CPU is shared)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "personas.json")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(2)
    from personarec.data.movielens import load_ml100k
    from personarec.data.registry import shared_data_dir
    from personarec.data.splits import make_split
    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.backends.base import build_backend
    from personarec.personas.backends.models import shipped_gguf_path
    from personarec.personas.config import PersonasConfig
    from personarec.personas.quality import compare_tokens
    from personarec.personas.transitions import TransitionStats

    t0 = time.perf_counter()
    split = make_split(load_ml100k(shared_data_dir() / "ml-100k"))
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    print(f"split + item space: {time.perf_counter() - t0:.1f}s ({space.n_fine} fine clusters)", flush=True)
    config = PersonasConfig(history_stage="valid", retries=2)
    load_before = os.getloadavg()
    embedded = build_backend("embedded", {"n_threads": args.threads})

    # -- tokens: every user, with the model's own tokenizer ------------------------------------
    all_users = list(range(split.n_users))
    tok = compare_tokens(
        split,
        space,
        all_users,
        config.prompt,
        count_tokens=embedded.count_tokens,
        counter_name="SmolLM2 tokenizer",
        stage="valid",
        n_candidates=config.n_candidates,
        transitions=transitions,
    )
    tokens = tok.model_dump() | {
        "history_ratio": round(tok.history_ratio, 2),
        "prompt_ratio": round(tok.prompt_ratio, 2),
    }
    print(
        f"tokens raw -> clustered: history {tok.median_history_raw:.0f} -> {tok.median_history_clustered:.0f} "
        f"({tok.history_ratio:.1f}x), prompt {tok.median_prompt_raw:.0f} -> {tok.median_prompt_clustered:.0f} "
        f"({tok.prompt_ratio:.1f}x)",
        flush=True,
    )

    # -- transition baseline on every user (context for the sampled figures) --------------------
    from personarec.personas.history import future_items

    hist, fut = split.history("valid"), future_items(split, "valid")
    hits = []
    for u in all_users:
        seen = set(space.fine[hist[u]].tolist())
        f = set(space.fine[fut[u]].tolist())
        hits.append((bool(f & set(transitions.most_frequent(seen, 3))), bool(f - seen)))
    hits_arr = np.array(hits, dtype=float)
    baseline_all = {
        "n_users": len(all_users),
        "k": 3,
        "baseline_hit_rate": round(hits_arr[:, 0].mean(), 4),
        "novel_future_rate": round(hits_arr[:, 1].mean(), 4),
    }

    result: dict = {
        "dataset": "ml-100k",
        "split": split.protocol.split,
        "item_space": {"n_fine": space.n_fine, "n_coarse": space.n_coarse, "model": space.meta.get("model")},
        "history_stage": "valid (training events; future = validation + test items)",
        "prompt": config.prompt.model_dump(),
        "tokens": tokens,
        "goals": {
            "token_reduction_5x_history": tok.history_ratio >= 5,
            "token_reduction_5x_prompt": tok.prompt_ratio >= 5,
        },
        "transition_baseline_all_users": baseline_all,
        "runs": {},
        "examples": [],
        "llama_threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0],
        },
    }
    constrain = RESULTS / "constrain.json"

    def save() -> None:
        """Written after every run, so a long benchmark keeps what it measured."""
        if constrain.exists():  # the backends benchmark's trie-vs-dict figures, merged as they are
            result["constrain"] = json.loads(constrain.read_text())
        result["load_average_1m"] = {
            "before": round(load_before[0], 2),
            "after": round(os.getloadavg()[0], 2),
        }
        result["seconds"] = round(time.perf_counter() - t0, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))

    save()
    rng = np.random.default_rng(42)
    order = rng.permutation(split.n_users)
    runs = result["runs"]
    report, quality, personas = run_backend(
        split, space, embedded, order[: args.users].tolist(), config, "embedded/single", transitions
    )
    runs["embedded_single"] = section(report, quality)
    result["examples"] = [json.loads(p.model_dump_json()) for p in personas if not p.provenance.fallback][:3]
    save()
    plans = []
    if args.teacher_users:
        plans.append(("embedded_teacher", "embedded/teacher", args.teacher_users, {"mode": "teacher"}))
    if args.hindsight_users:
        plans.append(
            (
                "embedded_teacher_hindsight",
                "embedded/teacher+hindsight",
                args.hindsight_users,
                {"mode": "teacher", "hindsight": True},
            )
        )
    for key, label, n, update in plans:
        report, quality, _ = run_backend(
            split, space, embedded, order[:n].tolist(), config.model_copy(update=update), label, transitions
        )
        runs[key] = section(report, quality)
        save()
    embedded.close()

    if args.server_users:
        try:
            import llama_cpp.server  # noqa: F401

            with llama_server(shipped_gguf_path(), args.threads) as url:
                ocfg = config.model_copy(update={"backend": "openai", "concurrency": 2})
                backend = build_backend("openai", {"base_url": url, "model": "smollm2", "timeout_s": 120})
                report, quality, _ = run_backend(
                    split,
                    space,
                    backend,
                    order[: args.server_users].tolist(),
                    ocfg,
                    "openai/llama_cpp.server",
                    transitions,
                )
                runs["openai_llama_cpp_server"] = section(report, quality) | {
                    "guided_mode": backend.guided_mode
                }
                backend.close()
        except Exception as exc:  # noqa: BLE001 - record why instead of dying after the embedded runs
            result["server_note"] = f"openai backend not measured: {type(exc).__name__}: {exc}"
            print(result["server_note"], flush=True)
    save()
    print(f"written {args.out} in {result['seconds']}s")


if __name__ == "__main__":
    main()
