"""Teacher -> student distillation on ML-100k -> benchmarks/results/distill_student.json.

    .venv/bin/python benchmarks/distill_student.py [--train-users 60] [--eval-users 20] [--steps 40]

1. Real item space (MiniLM + k-means clusters) of the leave-one-out split; personas are built from the
   TRAINING events only (history_stage=valid), so each held-out user has two future items
   (validation + test) nothing has seen.
2. Teacher labels: the multi-step writer in hindsight mode (3 calls, also sees the user's validation
   items) on the embedded model, for ``--train-users`` training users; paired with the student's
   single-call prompt (no future). Cached in ``--work`` so a rerun skips it.
3. Student: LoRA (r=16, all linear layers) on SmolLM2-135M-Instruct, ``--steps`` steps, exported as a
   GGUF adapter with the project's own writer; the export is checked (llama.cpp + adapter logits vs
   transformers + peft, on a held-out prompt).
4. Held-out users (disjoint from the training users), all from training events, no hindsight:
   - teacher set-up: the multi-step writer (3 calls), embedded model;
   - student: one constrained call, embedded model + adapter (llama.cpp);
   - base: one constrained call, embedded model without adapter (what distillation adds).
   Validity and grounding (constrained decoding on), topic F1 / Jaccard against the teacher set-up,
   topic F1 / explore hit-rate against the held-out future, personas/s (wall) and median latency.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def check_export(cfg, adapter_dir, gguf_path, messages) -> dict:
    """llama.cpp (base GGUF + exported adapter) next-token logits vs transformers + peft."""
    import numpy as np
    import torch
    from llama_cpp import Llama

    from personarec.distill.base_model import base_gguf
    from personarec.distill.student import load_student

    model, tok = load_student(cfg, adapter_dir)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0, -1].numpy()
        with model.disable_adapter():
            hf0 = model(torch.tensor([ids])).logits[0, -1].numpy()

    def lcpp(lora):
        m = Llama(model_path=str(base_gguf(cfg)), lora_path=lora, n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
        m.eval(ids)
        x = np.array(m.scores[len(ids) - 1])
        m.close()
        return x

    lc, lc0 = lcpp(str(gguf_path)), lcpp(None)
    corr = lambda a, b: round(float(np.corrcoef(a, b)[0, 1]), 5)  # noqa: E731
    return {"prompt_tokens": len(ids), "corr_logits": corr(lc, hf), "corr_adapter_delta": corr(lc - lc0, hf - hf0),
            "same_argmax": bool(lc.argmax() == hf.argmax())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-users", type=int, default=60)
    ap.add_argument("--eval-users", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (short runs need a high one)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/personarec-distill-bench"))
    ap.add_argument("--out", type=Path, default=RESULTS / "distill_student.json")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(2)
    from personarec.data.movielens import load_ml100k
    from personarec.data.registry import shared_data_dir
    from personarec.data.splits import make_split
    from personarec.distill.compare import future_scores
    from personarec.distill.config import DistillConfig
    from personarec.distill.dataset import save_examples
    from personarec.distill.export import write_adapter_gguf
    from personarec.distill.student import StudentTrainer, load_student
    from personarec.distill.base_model import base_gguf
    from personarec.distill.teacher_data import student_config, teacher_config, teacher_examples
    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.backends.base import build_backend
    from personarec.personas.config import PersonasConfig
    from personarec.personas.transitions import TransitionStats

    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {"command": "python benchmarks/distill_student.py " + " ".join(sys.argv[1:]), "dataset": "ml-100k"}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))

    print("building split and item space", file=sys.stderr, flush=True)
    split = make_split(load_ml100k(shared_data_dir() / "ml-100k"))
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    pool = np.asarray(split.eval_users("valid"))
    rng = np.random.default_rng(42)
    chosen = rng.choice(pool, size=args.train_users + args.eval_users, replace=False)
    train_users = sorted(int(u) for u in chosen[: args.train_users])
    eval_users = sorted(int(u) for u in chosen[args.train_users :])
    pc = PersonasConfig()
    result["setup"] = {"n_fine_clusters": space.n_fine, "train_users": len(train_users), "eval_users": len(eval_users),
                       "history": "training events (history_stage=valid)", "future": "validation + test items"}  # fmt: skip

    # -- 1. teacher labels ------------------------------------------------------------------
    backend = build_backend("embedded", {})
    ex_path = args.work / f"examples-{args.train_users}.jsonl"
    lab_path = args.work / f"teacher-{args.train_users}.jsonl"  # one line per labelled user (resumable)
    rows = [json.loads(x) for x in lab_path.read_text().splitlines()] if lab_path.exists() else []
    done = {r["user"] for r in rows}
    t_teacher = time.perf_counter()
    for u in train_users:
        if u in done:
            continue
        ex, rep, _ = teacher_examples(split, space, backend, [u], pc, seed=42, transitions=transitions, show_progress=False)
        row = {"user": u, **{k: v for k, v in rep.__dict__.items() if k != "user_ids"},
               "example": {"user_id": ex[0].user_id, "prompt": ex[0].prompt, "target": ex[0].target} if ex else None}  # fmt: skip
        with lab_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"  [teacher] {len(rows)}/{len(train_users)} labelled={bool(ex)} {time.perf_counter() - t_teacher:.0f}s", file=sys.stderr, flush=True)
    from personarec.distill.dataset import build_examples

    kept = [r["example"] for r in rows if r["example"] is not None]
    examples = build_examples(((r["prompt"], r["target"]) for r in kept), [r["user_id"] for r in kept])
    save_examples(examples, ex_path)
    keys = ("teacher_fallbacks", "dropped_explore_topics", "skipped_no_explore", "teacher_calls", "teacher_seconds", "wall_seconds")
    result["teacher_labels"] = {"requested": len(rows), "labelled": len(examples), **{k: round(sum(r[k] for r in rows), 3) for k in keys}}
    save()

    # -- 2. student -------------------------------------------------------------------------
    dc = DistillConfig(steps=args.steps, batch_size=args.batch_size, grad_accum=1, checkpoint_every=5, max_length=1024,
                       learning_rate=args.lr, warmup_steps=1)
    t0 = time.perf_counter()
    trainer = StudentTrainer(dc, seed=42)

    def step_log(step: int, loss: float) -> None:
        print(f"  [student] step {step}/{args.steps} loss {loss:.3f} {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)

    tr = trainer.fit(examples, args.work / f"student-{args.train_users}-{args.steps}", resume=True, on_step=step_log)
    from personarec.distill.student import encode
    from personarec.distill.base_model import load_base

    _, tok = load_base(dc)
    lengths = [len(e.input_ids) for e in (encode(tok, x, 4096) for x in examples) if e is not None]
    result["student_training"] = {
        "examples": len(examples), "steps": args.steps, "learning_rate": args.lr, "batch_size": args.batch_size, "lora": dc.lora.model_dump(),
        "median_tokens_per_example": float(np.median(lengths)), "epochs": round(args.steps * args.batch_size / len(examples), 2),
        "first_losses": [round(x, 4) for x in tr.losses[:3]], "last_losses": [round(x, 4) for x in tr.losses[-3:]],
        "resumed_from": tr.resumed_from, "wall_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    model, _ = load_student(dc, tr.adapter_dir)
    gguf_path = write_adapter_gguf(model, base_gguf(dc), args.work / "student.gguf")
    del model
    result["student_training"]["adapter_gguf_mb"] = round(gguf_path.stat().st_size / 2**20, 2)
    save()

    # -- 3. held-out users -------------------------------------------------------------------
    from personarec.distill.compare import median
    from personarec.distill.teacher_data import student_prompt
    from personarec.personas.generate import PersonaEngine
    from personarec.personas.quality import grounding_problems

    probe = PersonaEngine(split, space, backend, student_config(pc), transitions=transitions, seed=42)
    result["export_check"] = check_export(dc, tr.adapter_dir, gguf_path, student_prompt(probe, eval_users[0])[1].messages)
    save()

    valid_t, test_t = split.targets("valid"), split.targets("test")
    future = {str(split.user_ids[u]): {space.fine_names[int(c)] for c in space.fine[np.concatenate([valid_t[u], test_t[u]])]} for u in eval_users}

    serving_teacher = teacher_config(pc).model_copy(update={"hindsight": False})
    student_backend = build_backend("embedded", {"lora_path": str(gguf_path)})
    arms_cfg = {"student": (student_backend, student_config(pc)), "base_single_call": (backend, student_config(pc)),
                "teacher_setup": (backend, serving_teacher)}  # fmt: skip
    engines = {k: PersonaEngine(split, space, be, conf, transitions=transitions, seed=42) for k, (be, conf) in arms_cfg.items()}
    arms = {k: {} for k in engines}
    stats = {k: {"latency": [], "outputs": 0, "valid": 0, "fallbacks": 0, "grounded": 0, "calls": 0} for k in engines}
    for n, u in enumerate(eval_users, 1):  # users in the outer loop: any prefix is a complete comparison
        for label, engine in engines.items():
            st = stats[label]
            ctx = engine.context(u)
            t1 = time.perf_counter()
            out = engine.persona_for(ctx)
            st["latency"].append(time.perf_counter() - t1)
            st["outputs"] += out.outputs
            st["valid"] += out.valid_outputs
            st["calls"] += out.draft.calls if out.draft is not None else 0
            if out.status == "generated":
                arms[label][out.persona.user_id] = out.persona.model_dump(include={"summary", "interests", "explore"})
                st["grounded"] += not grounding_problems(out.persona, set(space.fine_names), ctx.seen_names)
            else:
                st["fallbacks"] += 1
            print(f"  [{label}] user {n}/{len(eval_users)} {out.status} {st['latency'][-1]:.1f}s", file=sys.stderr, flush=True)
        result["held_out"] = {
            label: {
                "users": n, "generated": len(arms[label]), "fallbacks": st["fallbacks"],
                "validity_rate": round(st["valid"] / st["outputs"], 4) if st["outputs"] else None,
                "grounding_rate": round(st["grounded"] / len(arms[label]), 4) if arms[label] else None,
                "calls_per_persona": round(st["calls"] / n, 2),
                "llm_seconds": round(sum(st["latency"]), 2),
                "personas_per_s": round(n / sum(st["latency"]), 4),
                "median_latency_s": median(st["latency"]),
                "vs_future": future_scores(arms[label], future),
            }
            for label, st in stats.items()
        }  # fmt: skip
        finish(result, arms)
        save()
    student_backend.close()
    backend.close()
    print(json.dumps(result, indent=2))


def finish(result: dict, arms: dict) -> None:
    """Agreement with the teacher set-up and the issue's goal, from the users done so far."""
    from personarec.distill.compare import agreement

    ho = result["held_out"]
    result["agreement_with_teacher_setup"] = {
        "student": agreement(arms["student"], arms["teacher_setup"]),
        "base_single_call": agreement(arms["base_single_call"], arms["teacher_setup"]),
    }
    tf1 = ho["teacher_setup"]["vs_future"]["topic_f1"]
    sf1 = ho["student"]["vs_future"]["topic_f1"]
    speed = ho["student"]["personas_per_s"] / ho["teacher_setup"]["personas_per_s"]
    share = round(sf1 / tf1, 3) if tf1 and sf1 is not None else None
    result["goal"] = {
        "speedup_personas_per_s": round(speed, 2),
        "speedup_median_latency": round(ho["teacher_setup"]["median_latency_s"] / ho["student"]["median_latency_s"], 2),
        "student_topic_f1_share_of_teacher": share,
        "target": "speedup >= 3 and share >= 0.9",
        "met": bool(speed >= 3 and (share or 0) >= 0.9),
    }


if __name__ == "__main__":
    main()
