"""Compact student: hindsight teacher labels -> LoRA on CPU -> the batched engine -> the test future.

    .venv/bin/python benchmarks/persona_student.py [--dataset ml-100k] [--seeds 0 1 2] [--steps 160]

-> benchmarks/results/persona_student.json. On the leave-one-out split:
1. Teacher labels (``distill/compact_labels.py``): for every user, cut-offs at the end of the
   training events and every 3 events before it (10 cut-offs); the answer is what the user did next (the next 3
   training events, or the VALIDATION event for the last cut-off). Test events are never read.
2. Student: LoRA on SmolLM2-135M-Instruct (transformers + peft, CPU), one run per seed, exported
   as a GGUF adapter and served by the same batched llama.cpp engine as the untuned model.
3. Every user, personas from training + validation events (``history_stage=test``), scored on the
   TEST item only: explore hit-rate and exploit P/R for the transition baseline, the untuned model
   (prior mixture w=0.5 and model alone w=1), the student (w=0.5 and w=1) on each seed, and the
   teacher in its own set-up (training history, hindsight of the validation event). Personas/s
   of the untuned and student engines, same machine, same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from persona_engine import hit_rates, load, run_engine, with_weight  # noqa: E402


def engine_figures(report) -> dict:
    n = max(report.generated + report.fallbacks, 1)
    return {
        "users": report.requested, "personas_per_s": round(report.personas_per_s, 3), "wall_s": report.wall_seconds,
        "prompt_tokens_per_persona": round(report.input_tokens / n, 1), "generated": report.generated,
        "fallbacks": report.fallbacks, "first_try_validity": round(report.first_try_valid / n, 4),
    }  # fmt: skip


def teacher_hits(split, space, transitions, config) -> dict:
    """The hindsight teacher in its own set-up: training history, it has seen the validation event;
    its explore list = the candidate the user reached in validation (when listed) + the prior's
    best others; hit = the TEST item's cluster is in it and not in the training history."""
    import numpy as np

    from personarec.personas.compact import listed_candidates
    from personarec.personas.history import build_context, item_titles, user_history

    titles = item_titles(split)
    train, valid, test = split.history("train"), split.targets("valid"), split.targets("test")
    hits = base = n = 0
    for u in range(split.n_users):
        if len(test[u]) == 0:
            continue
        ctx = build_context(user_history(split, u, "valid", train), space, transitions, config, titles)
        cands = listed_candidates(ctx, config)
        if not ctx.stats or not cands:
            continue
        went = {int(c) for c in space.fine[np.asarray(valid[u], dtype=np.int64)]}
        first = [c for c in cands if c in went][:1]
        pick = first + [c for c in cands if c not in first][: config.max_explore - len(first)]
        target = {int(c) for c in space.fine[np.asarray(test[u], dtype=np.int64)]} - ctx.seen
        n += 1
        hits += bool(target & set(pick))
        base += bool(target & set(cands[: config.max_explore]))
    return {"n_users": n, "explore_hit_rate": round(hits / max(n, 1), 4), "baseline_same_setup": round(base / max(n, 1), 4)}


def mean_sd(xs: list[float]) -> dict:
    return {"mean": round(statistics.mean(xs), 4), "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0,
            "runs": [round(x, 4) for x in xs]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=160, help="optimizer steps per seed (batch 8)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--last-layers", type=int, default=10, help="LoRA on the last N of 30 layers (cheaper on CPU)")
    ap.add_argument("--users", type=int, default=0, help="evaluation users (0 = every user)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/personarec-student-bench"))
    ap.add_argument("--out", type=Path, default=RESULTS / "persona_student.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from personarec.distill.compact_labels import hindsight_examples
    from personarec.distill.config import DistillConfig, LoraSettings
    from personarec.distill.export import export_student
    from personarec.distill.student import StudentTrainer
    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.backends.base import build_backend
    from personarec.personas.compact import compact_prompt
    from personarec.personas.config import PersonasConfig
    from personarec.personas.generate import domain_of
    from personarec.personas.transitions import TransitionStats

    result: dict = {"command": "python benchmarks/persona_student.py " + " ".join(sys.argv[1:]), "dataset": args.dataset,
                    "machine": {"cpus": os.cpu_count(), "load_1m_before": os.getloadavg()[0]}}  # fmt: skip

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    split = load(args.dataset)
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    untuned_cfg = PersonasConfig(history_stage="test", batch_size=16)
    student_cfg = untuned_cfg.model_copy(update={"compact_example": False})
    users = None if args.users == 0 else list(range(args.users))
    half_life = untuned_cfg.prompt.recency_half_life

    # 1. teacher labels
    t = time.perf_counter()
    prompt = compact_prompt(student_cfg, domain_of(split), space.fine_names)
    examples, labels = hindsight_examples(split, space, transitions, student_cfg, prompt)
    result["labels"] = {**labels.__dict__, "seconds": round(time.perf_counter() - t, 1),
                        "sample_target": examples[0].target if examples else None}  # fmt: skip
    print(f"labels: {result['labels']}", flush=True)
    result["teacher"] = teacher_hits(split, space, transitions, student_cfg)
    print(f"teacher: {result['teacher']}", flush=True)
    save()

    # 2. the untuned model, same users and set-up
    backend = build_backend("embedded", {"n_threads": args.threads})
    engine, report, personas = run_engine(split, space, backend, users, untuned_cfg, transitions, keep_choices=True)
    result["untuned"] = {"engine": engine_figures(report), "future": {
        f"explore_weight_{w}": hit_rates(with_weight(engine, personas, w), split, space, transitions, half_life)
        for w in (0.0, 0.5, 1.0)}}  # fmt: skip
    backend.close()
    print(f"untuned: {json.dumps(result['untuned'])}", flush=True)
    save()

    # 3. one student per seed
    result["students"] = []
    for seed in args.seeds:
        cfg = DistillConfig(
            steps=args.steps, batch_size=8, grad_accum=1, learning_rate=args.lr, warmup_steps=10, max_length=512,
            checkpoint_every=10_000, seed=seed, lora=LoraSettings(r=args.rank, alpha=2.0 * args.rank, last_layers=args.last_layers),
        )  # fmt: skip
        out = args.work / f"seed-{seed}"
        t = time.perf_counter()
        trained = StudentTrainer(cfg).fit(examples, out, show_progress=True)
        train_s = time.perf_counter() - t
        gguf = export_student(cfg, trained.adapter_dir, out / "student.gguf", kind="adapter")
        backend = build_backend("embedded", {"n_threads": args.threads, "lora_path": str(gguf)})
        engine, report, personas = run_engine(split, space, backend, users, student_cfg, transitions, keep_choices=True)
        run = {
            "seed": seed, "train_seconds": round(train_s, 1), "steps": args.steps,
            "epochs": round(args.steps * 8 / max(len(examples), 1), 2),
            "first_losses": [round(x, 4) for x in trained.losses[:3]], "last_losses": [round(x, 4) for x in trained.losses[-3:]],
            "adapter_mb": round(gguf.stat().st_size / 1e6, 2), "engine": engine_figures(report),
            "future": {f"explore_weight_{w}": hit_rates(with_weight(engine, personas, w), split, space, transitions, half_life)
                       for w in (0.5, 1.0)},
        }  # fmt: skip
        backend.close()
        result["students"].append(run)
        print(f"student seed {seed}: {json.dumps(run)}", flush=True)
        save()

    base = result["untuned"]["future"]["explore_weight_0.0"]["baseline_hit_rate"]
    summary = {"baseline_hit_rate": base}
    for w in ("0.5", "1.0"):
        xs = [r["future"][f"explore_weight_{w}"]["explore_hit_rate"] for r in result["students"]]
        summary[f"student_w{w}"] = mean_sd(xs)
        summary[f"student_w{w}_ratio_to_baseline"] = round(statistics.mean(xs) / base, 3) if base else None
        summary[f"student_w{w}_exploit_precision"] = mean_sd(
            [r["future"][f"explore_weight_{w}"]["exploit_precision"] for r in result["students"]])  # fmt: skip
    for w in ("0.0", "0.5", "1.0"):
        summary[f"untuned_w{w}"] = result["untuned"]["future"][f"explore_weight_{w}"]["explore_hit_rate"]
    summary["goal"] = "best engine >= 1.3x the baseline's hit-rate, 3 seeds"
    result["summary"] = summary
    result["machine"]["load_1m_after"] = os.getloadavg()[0]
    save()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
