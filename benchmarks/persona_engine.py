"""Persona engine v2 (compact, batched, shared prefix) -> benchmarks/results/persona_engine.json.

    .venv/bin/python benchmarks/persona_engine.py [--datasets ml-100k] [--users 0] [--threads 2]

Per dataset, on the real item space (MiniLM + k-means, readable names) of the leave-one-out split,
personas built from the TRAINING events (``history_stage=valid``) so that validation + test items
are the held-out future:
- raw llama.cpp speed of the same GGUF in this process (prompt and decode tok/s), the physical
  reference for everything below;
- the default engine over every user (``--users 0``): personas/s, prompt and generated tokens per
  persona, first-try validity, summary/field consistency, fallbacks;
- each lever on its own, same users: batch 16 vs 1, shared prefix vs cold prompt, and the JSON
  writer of v1 for reference;
- explore hit-rate and exploit P/R against the held-out future for the explore mixture weight
  0 (explore prior), 0.25, 0.5 (default), 1 (model only), next to the raw-count transition
  baseline, and each explore prior alone (no LLM: v2's transitions, transitions at the default
  half-life, the default cluster EASE); the spread over item-space seeds is persona_explore.py's;
- name quality (weak keywords, uniqueness, identification) of readable vs keyword names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def raw_llama_speed(threads: int, weights: str = "as_is", prompt_tokens: int = 256, decode_tokens: int = 64, reps: int = 3) -> dict:
    """Prompt and decode tok/s of the shipped GGUF (``as_is``) or its re-packed copy, single
    sequence, plain llama.cpp (greedy decode on the real logits)."""
    import numpy as np
    from llama_cpp import Llama, llama_cpp

    from personarec.personas.backends.models import repacked_gguf, shipped_gguf_path

    path = shipped_gguf_path() if weights == "as_is" else repacked_gguf(shipped_gguf_path(), weights)
    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)
    toks = llm.tokenize(text.encode(), add_bos=True)[:prompt_tokens]

    def last_logits():
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))

    p, d = [], []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks)
        p.append(len(toks) / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(decode_tokens):
            llm.eval([int(last_logits().argmax())])
        d.append(decode_tokens / (time.perf_counter() - t))
    llm.close()
    return {"threads": threads, "weights": weights, "file": path.name,
            "prompt_tok_s": round(statistics.median(p), 1), "decode_tok_s": round(statistics.median(d), 1)}  # fmt: skip


def load(name: str):
    from personarec.data.registry import load_dataset
    from personarec.data.splits import make_split

    return make_split(load_dataset(name))


def run_engine(split, space, backend, users, config, transitions, keep_choices=False):
    from personarec.personas.generate import PersonaEngine, generate_personas
    from personarec.personas.store.base import open_store

    engine = PersonaEngine(split, space, backend, config, transitions=transitions, seed=42)
    engine.keep_choices = keep_choices
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "p.db"))
        report = generate_personas(split, space, backend, users, store, config, engine=engine, show_progress=True)
        personas = [p for u in report.user_ids if (p := store.get(u)) is not None]
        store.close()
    return engine, report, personas


def consistency(personas, names) -> float:
    from personarec.personas.summary import check_summary

    ok = 0
    for p in personas:
        payload = {"interests": [i.model_dump() for i in p.interests], "explore": [e.model_dump() for e in p.explore]}
        ok += not check_summary(p.summary, payload, names)
    return round(ok / max(len(personas), 1), 4)


def with_weight(engine, personas, weight, calibrated=False):
    """The same model outputs with another explore mixture weight (no new LLM call); ``calibrated``:
    with the position bias removed (``CompactWriter.position_bias``) as ``explore_calibration`` does."""
    from personarec.personas.compact import mix_explore

    from personarec.personas.schema import ExploreTopic

    index = engine.split.user_index()
    out = []
    for p in personas:
        choice = engine.choices.get(p.user_id)
        if choice is None:  # not written by the compact engine (fallback): unchanged
            out.append(p)
            continue
        ctx = engine.context(index[p.user_id])
        prior = [float(x) for x in ctx.candidate_scores[: len(choice.candidates)]]
        llm = choice.candidate_logprobs
        if calibrated:
            llm = engine.compact.calibrate(llm, len(choice.listed))
        choice.explore_scores = mix_explore(prior, llm, weight)
        payload = engine.compact.payload(ctx, choice)
        out.append(p.model_copy(update={"explore": [ExploreTopic(**e) for e in payload["explore"]]}))
    return out


def prior_hit_rates(split, space, transitions, config, users) -> dict:
    """Explore hit-rates of each explore prior alone (the top candidates, no LLM) on the same users:
    the v2 prior (transitions, half-life 20), transitions, cluster EASE and item EASE at the default
    half-life."""
    from personarec.personas.fallback import fallback_persona
    from personarec.personas.history import ContextBuilder
    from personarec.personas.schema import Provenance

    variants = {
        "transitions_half_life_20": {"explore_prior": "transitions", "explore_half_life": 20.0},
        f"transitions_half_life_{config.explore_half_life:g}": {"explore_prior": "transitions"},
        f"ease_half_life_{config.explore_half_life:g}": {"explore_prior": "ease"},
        f"item_ease_half_life_{config.explore_half_life:g}": {"explore_prior": "item_ease"},
    }
    rows = {}
    for label, update in variants.items():
        builder = ContextBuilder(split, space, config.model_copy(update=update), transitions=transitions)
        personas = [
            fallback_persona(builder.context(int(u)), Provenance(model="none", backend="none", prompt_version="prior"), max_explore=config.max_explore)
            for u in (users if users is not None else range(split.n_users))
        ]
        rows[label] = hit_rates(personas, split, space, transitions, config.prompt.recency_half_life)
    return rows


def hit_rates(personas, split, space, transitions, half_life):
    from personarec.personas.quality import evaluate_personas

    q = evaluate_personas(personas, split, space, transitions=transitions, half_life=half_life)
    a = q.all
    return {
        "n_users": a.n_users,
        "explore_hit_rate": round(a.explore_hit_rate, 4),
        "baseline_hit_rate": round(a.baseline_hit_rate, 4),
        "ratio_to_baseline": a.ratio_to_baseline,
        "ratio_ci95": a.ratio_ci95,
        "exploit_precision": round(a.exploit_precision, 4),
        "exploit_recall": round(a.exploit_recall, 4),
        "baseline_exploit_precision": round(a.baseline_exploit_precision, 4),
        "baseline_exploit_recall": round(a.baseline_exploit_recall, 4),
        "grounding_rate": q.grounding_rate,
        "explore_novelty_rate": q.explore_novelty_rate,
        "n_fallback": q.n_fallback,
    }


def bench_dataset(name: str, args) -> dict:
    import numpy as np

    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.items.embed import TextEmbedder
    from personarec.items.name_quality import name_quality
    from personarec.items.naming import item_terms, name_clusters
    from personarec.personas.backends.base import build_backend
    from personarec.personas.config import PersonasConfig
    from personarec.personas.transitions import TransitionStats

    t0 = time.perf_counter()
    split = load(name)
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    out: dict = {"n_users": split.n_users, "n_items": split.n_items, "n_fine": space.n_fine,
                 "setup_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print(f"[{name}] split + items {out['setup_s']} s, {space.n_fine} clusters", flush=True)

    # names: readable (default) vs the keyword names of v1, same clusters
    embedder = TextEmbedder(ItemsConfig())
    embed = lambda xs: embedder.embed(xs, show_progress=False)[0]  # noqa: E731
    frame = split.catalogue.frame
    terms, facets = item_terms(frame)
    old_names, _ = name_clusters(space.fine, space.n_fine, terms, facets, titles=frame["title"].to_list(), style="keywords")
    out["names"] = {
        "readable": name_quality(space, frame, embed=embed).model_dump(),
        "keywords": name_quality(space, frame, names=old_names, embed=embed).model_dump(),
        "samples": list(space.fine_names[:10]),
    }

    backend = build_backend("embedded", {"n_threads": args.threads})
    config = PersonasConfig(history_stage="valid", batch_size=16)
    users = None if args.users == 0 else list(np.random.default_rng(0).permutation(split.n_users)[: args.users])
    engine, report, personas = run_engine(split, space, backend, users, config, transitions, keep_choices=True)
    n = max(report.generated + report.fallbacks, 1)
    out["engine"] = {
        "users": report.requested,
        "personas_per_s": round(report.personas_per_s, 3),
        "wall_s": report.wall_seconds,
        "prompt_tokens_per_persona": round(report.input_tokens / n, 1),
        "generated_tokens_per_persona": round(report.output_tokens / n, 1),
        "prefix_tokens_shared": report.prefix_tokens,
        "first_try_validity": round(report.first_try_valid / max(report.generated + report.fallbacks, 1), 4),
        "generated": report.generated,
        "fallbacks": report.fallbacks,
        "unusable": report.unusable,
        "summary_consistency": consistency(personas, space.fine_names),
        "summaries_composed": report.summaries_composed,
        "batch_size": config.batch_size,
        "threads": args.threads,
    }
    print(f"[{name}] engine: {json.dumps(out['engine'])}", flush=True)

    quality = {}
    for w in (0.0, 0.25, 0.5, 1.0):
        quality[f"explore_weight_{w}"] = hit_rates(
            with_weight(engine, personas, w), split, space, transitions, config.prompt.recency_half_life
        )
    for w in (0.5, 1.0):  # the same scores with the position bias removed (explore_calibration = true)
        quality[f"explore_weight_{w}_calibrated"] = hit_rates(
            with_weight(engine, personas, w, calibrated=True), split, space, transitions, config.prompt.recency_half_life
        )
    out["future"] = quality
    out["explore_priors"] = prior_hit_rates(split, space, transitions, config, users)
    print(f"[{name}] future: {json.dumps(quality)}", flush=True)
    print(f"[{name}] explore priors, no LLM: {json.dumps(out['explore_priors'])}", flush=True)
    rng = np.random.default_rng(7)
    out["samples"] = [
        json.loads(personas[i].model_dump_json(include={"user_id", "summary", "interests", "explore"}))
        for i in rng.choice(len(personas), size=min(3, len(personas)), replace=False)
    ]

    # levers, each on its own, on the same users
    lever_users = list(range(min(args.lever_users, split.n_users)))
    levers = {}
    for label, update in (("batch_16", {"batch_size": 16}), ("batch_8", {"batch_size": 8}), ("batch_1", {"batch_size": 1})):
        _, r, _ = run_engine(split, space, backend, lever_users, config.model_copy(update=update), transitions)
        levers[label] = {"personas_per_s": round(r.personas_per_s, 3), "users": r.requested}
    q41 = build_backend("embedded", {"n_threads": args.threads, "weights": "as_is"})
    _, r, _ = run_engine(split, space, q41, lever_users, config, transitions)
    levers["weights_q4_1_as_shipped"] = {"personas_per_s": round(r.personas_per_s, 3), "users": r.requested}
    q41.close()
    c1 = {"compact_history": 8, "compact_candidates": 8, "compact_name_chars": 80}  # the c1 prompt budget
    _, r, _ = run_engine(split, space, backend, lever_users, config.model_copy(update=c1), transitions)
    levers["prompt_budget_c1_8_clusters_8_options"] = {
        "personas_per_s": round(r.personas_per_s, 3), "users": r.requested,
        "prompt_tokens_per_persona": round(r.input_tokens / max(r.requested, 1), 1),
    }  # fmt: skip
    # cold prompt: the shared prefix evaluated again for every user (compare with batch_8)
    eng8, _, _ = run_engine(split, space, backend, lever_users[:1], config.model_copy(update={"batch_size": 8}), transitions)
    writer = eng8.compact
    ctxs = [eng8.context(u) for u in lever_users]
    t = time.perf_counter()
    for lo in range(0, len(ctxs), 8):
        reqs = [writer.request(c)[0] for c in ctxs[lo : lo + 8]]
        for r in reqs:
            r.tokens = writer.prefix + r.tokens
        writer.decoder.run([], reqs)
    levers["batch_8_cold_prefix"] = {"personas_per_s": round(len(ctxs) / (time.perf_counter() - t), 3), "users": len(ctxs)}
    if args.json_users:
        _, r, _ = run_engine(split, space, backend, lever_users[: args.json_users],
                             config.model_copy(update={"format": "json", "retries": 0}), transitions)  # fmt: skip
        levers["json_writer_v1"] = {
            "personas_per_s": round(r.personas_per_s, 3), "users": r.requested,
            "generated_tokens_per_persona": round(r.output_tokens / max(r.requested, 1), 1),
            "first_try_validity": round(r.first_try_valid / max(r.requested, 1), 4),
        }  # fmt: skip
    out["levers"] = levers
    print(f"[{name}] levers: {json.dumps(levers)}", flush=True)
    backend.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k"])
    ap.add_argument("--users", type=int, default=0, help="users for the main run (0 = every user)")
    ap.add_argument("--lever-users", type=int, default=64, help="users for each lever on its own")
    ap.add_argument("--json-users", type=int, default=8, help="users for the v1 JSON writer reference (0 = skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "persona_engine.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["command"] = "python benchmarks/persona_engine.py " + " ".join(sys.argv[1:])
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1m_before": os.getloadavg()[0]}
    # the shipped Q4_1 file and the Q8_0 copy the engine loads (backend weights = "Q8_0"), same threads;
    # the last entry is the engine's physical reference
    result["raw_llama_cpp"] = [raw_llama_speed(args.threads, "as_is"), raw_llama_speed(1, "Q8_0"), raw_llama_speed(args.threads, "Q8_0")]
    print(f"raw llama.cpp: {result['raw_llama_cpp']}", flush=True)
    for name in args.datasets:
        result.setdefault("datasets", {})[name] = bench_dataset(name, args)
        # datasets may come from separate runs: each keeps its command and its physical reference
        result["datasets"][name]["command"] = result["command"]
        result["datasets"][name]["raw_llama_cpp"] = result["raw_llama_cpp"]
        e = result["datasets"][name]["engine"]
        raw = result["raw_llama_cpp"][-1]
        # physical reference: the time raw llama.cpp needs for one persona's tokens, single sequence
        one = e["prompt_tokens_per_persona"] / raw["prompt_tok_s"] + e["generated_tokens_per_persona"] / raw["decode_tok_s"]
        e["raw_single_sequence_personas_per_s"] = round(1 / one, 3)
        e["ratio_to_raw_single_sequence"] = round(e["personas_per_s"] * one, 3)
        result["machine"]["load_1m_after"] = os.getloadavg()[0]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
