"""Do LLM personas improve recommendations, and is it their content? -> benchmarks/results/distill.json

    .venv/bin/python benchmarks/distill.py                                      # ML-100k + ML-latest-small, 5 seeds
    .venv/bin/python benchmarks/distill.py --datasets ml-100k --seeds 0 --quick   # smoke run (minutes)

Resumable: every persona store, student adapter, trained model and per-seed result is kept under
``--run-root``; a rerun (or a second process on other ``--seeds``/``--datasets``) skips what is done,
and each process merges what exists into the JSON. Same protocol as benchmarks/recsys.py
(leave-one-out, full ranking, seen items excluded), metrics from ``personarec.evaluate.harness`` on
the TEST targets.

Personas (one set per dataset, from TRAINING events only: ``history_stage=valid``, version = training
length, so no persona saw a validation or test event; serving-style reuse makes them valid for the
test-stage hybrid too):

- ``llm``: the embedded default engine (SmolLM2-135M-Instruct, compact format) for every user;
- ``student``: the same engine with a LoRA student tuned on hindsight labels of TRAINING events only
  (cut-offs 3..27 events before the end of training, so it never read a validation event);
- ``fallback``: the deterministic cluster-statistics persona of each history (no LLM);
- ``shuffled``: every user gets another user's LLM persona (a derangement) - the control that tells
  whether a persona's *content* matters or only its presence.

Arms per seed: ``sasrec`` (full-softmax CE SASRec, recsys.py's hyper-parameters); ``persona_sasrec-S``
(the same model + the persona alignment loss on source S; no LLM at serving time) and ``hybrid-S``
(SASRec's list with ``--quota`` of the slots for S's explore clusters, the serving ranker). Paired
tests: per seed (arm - sasrec on the same seed; t interval over seeds) and per user (the seeds'
mean per user, paired bootstrap + Wilcoxon). Seed 0 also gets the hybrid's exploration-quota curve, a
replayed A/B of the best persona arm and an HTML report with the "Persona effect" section.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from personarec.data.registry import load_dataset  # noqa: E402
from personarec.data.splits import Split, make_split  # noqa: E402
from personarec.evaluate.harness import EvalResult, evaluate_models  # noqa: E402
from personarec.items.build import build_item_space  # noqa: E402
from personarec.items.config import ItemsConfig  # noqa: E402
from personarec.items.space import ItemSpace  # noqa: E402
from personarec.personas.config import PersonasConfig  # noqa: E402
from personarec.personas.profiles import UserProfiles  # noqa: E402
from personarec.recommend.base import Recommender, build_recommender, load_recommender  # noqa: E402

ROOT = Path(__file__).resolve().parent
KS = (5, 10, 20)
K = 10
NDCG = f"ndcg@{K}"
SOURCES = ("llm", "student", "fallback", "shuffled")
#: recsys.py's SASRec; min_epochs 15 because ML-latest-small's validation curve has a noisy early
#: peak (epoch 2) that stopped runs at epoch 7 (on ML-100k every run went past epoch 15 anyway)
#: Pinned to the SASRec settings of its measured runs (the library defaults changed to RecBole's layout since).
SASREC = dict(max_len=200, hidden=64, n_blocks=2, n_heads=1, dropout=0.2, attn_dropout=0.0, lr=5e-3,
              batch_size=64, max_epochs=30, patience=5, min_epochs=15, show_progress=False, num_threads=1,
              ff_mult=1, norm="pre", positions="end", init="scaled", train_windows="last", patience_steps=0)  # fmt: skip
PERSONA = dict(alpha=0.1, aux_epochs=10, aux_loss="cosine", pooling="mean", layer=-1)
#: the student: persona_student.py's LoRA recipe (rank 8 on the last 10 layers, batch 8)
STUDENT = dict(rank=8, last_layers=10, lr=5e-4, batch_size=8, cutoffs=(3, 6, 9, 12, 15, 18, 21, 24, 27))
REPORTED = [f"{m}@{K}" for m in ("ndcg", "recall", "mrr", "novelty", "serendipity", "exploration", "ild", "coverage")]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float))
    tmp.replace(path)


# -- 1. personas: one store per source ------------------------------------------------------------
def generate(split: Split, space: ItemSpace, db: Path, config: PersonasConfig, backend_config: dict, users: Any) -> dict:
    """Personas for ``users`` into SQLite ``db`` (resumable: up-to-date users are skipped)."""
    from personarec.personas.backends.base import build_backend
    from personarec.personas.generate import generate_personas
    from personarec.personas.store.sqlite import SQLiteStore

    backend = build_backend("embedded", backend_config)
    store = SQLiteStore(db)
    try:
        rep = generate_personas(split, space, backend, users, store, config, seed=0, show_progress=True)
    finally:
        store.close()
        backend.close()
    return {"model": rep.model, "requested": rep.requested, "generated": rep.generated, "fallbacks": rep.fallbacks,
            "skipped_up_to_date": rep.skipped, "unusable": rep.unusable, "wall_seconds": round(rep.wall_seconds, 1),
            "personas_per_s": round(rep.generated / rep.wall_seconds, 3) if rep.wall_seconds and rep.generated else None}  # fmt: skip


def train_student(split: Split, space: ItemSpace, work: Path, config: PersonasConfig, args: argparse.Namespace) -> tuple[Path, dict]:
    """LoRA student on hindsight labels from TRAINING events only -> GGUF adapter (cached in ``work``)."""
    from personarec.distill.compact_labels import hindsight_examples
    from personarec.distill.config import DistillConfig, LoraSettings
    from personarec.distill.export import export_student
    from personarec.distill.student import StudentTrainer
    from personarec.personas.compact import compact_prompt
    from personarec.personas.generate import domain_of
    from personarec.personas.transitions import TransitionStats

    gguf, info_path = work / "student" / "student.gguf", work / "student" / "student.json"
    if gguf.exists() and info_path.exists():
        return gguf, read_json(info_path)
    t0 = time.perf_counter()
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    prompt = compact_prompt(config, domain_of(split), space.fine_names)
    examples, labels = hindsight_examples(split, space, transitions, config, prompt, cutoffs=STUDENT["cutoffs"])
    cfg = DistillConfig(
        steps=args.student_steps, batch_size=STUDENT["batch_size"], grad_accum=1, learning_rate=STUDENT["lr"],
        warmup_steps=min(10, args.student_steps // 4), max_length=512, checkpoint_every=10, seed=0,
        lora=LoraSettings(r=STUDENT["rank"], alpha=2.0 * STUDENT["rank"], last_layers=STUDENT["last_layers"]),
    )  # fmt: skip
    log(f"student: {len(examples)} hindsight examples (training events only), {args.student_steps} steps")
    trained = StudentTrainer(cfg).fit(examples, work / "student", resume=True, show_progress=True)
    export_student(cfg, trained.adapter_dir, gguf, kind="adapter")
    info = {"examples": len(examples), "labels": {k: v for k, v in labels.__dict__.items() if isinstance(v, int)},
            "cutoffs_before_training_end": list(STUDENT["cutoffs"]), "steps": args.student_steps,
            "epochs": round(args.student_steps * STUDENT["batch_size"] / max(len(examples), 1), 3),
            "lora_rank": STUDENT["rank"], "last_layers": STUDENT["last_layers"], "lr": STUDENT["lr"],
            "first_losses": [round(x, 4) for x in trained.losses[:3]], "last_losses": [round(x, 4) for x in trained.losses[-3:]],
            "train_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    write_json(info_path, info)
    return gguf, info


def shuffled_store(split: Split, source: Path, db: Path) -> dict:
    """Every user gets another user's LLM persona (a derangement, seeded), re-keyed to their own id
    and history length so it is used exactly where their own persona would be."""
    from personarec.personas.history import user_history
    from personarec.personas.store.sqlite import SQLiteStore

    if db.exists():
        db.unlink()
    src, dst = SQLiteStore(source), SQLiteStore(db)
    sequences = split.history("valid")
    try:
        order = np.random.default_rng(0).permutation(split.n_users)
        donor = np.empty(split.n_users, dtype=np.int64)
        donor[order] = np.roll(order, -1)  # a cycle through a random order: nobody keeps their own
        copied = 0
        for u in range(split.n_users):
            persona = src.get(str(split.user_ids[donor[u]]))
            if persona is None or persona.provenance.fallback:
                continue
            history = user_history(split, u, "valid", sequences)
            dst.put(persona.model_copy(update={"user_id": history.user_id, "version": history.version}))
            copied += 1
    finally:
        src.close()
        dst.close()
    return {"donor": "derangement (seed 0)", "copied": copied, "of_users": split.n_users}


def prepare_personas(name: str, split: Split, space: ItemSpace, args: argparse.Namespace) -> dict[str, Any]:
    """The four persona sources of one dataset: ``{source: {"store": path | None, ...figures}}``."""
    work = Path(args.run_root) / name
    work.mkdir(parents=True, exist_ok=True)
    info_path = work / "personas.json"
    info = read_json(info_path) or {}
    cfg = PersonasConfig(history_stage="valid", sample_users=0)  # every user, training events only
    users = args.persona_users or None
    for source in ("llm", "student"):
        db = work / f"personas-{source}.db"
        if source in info and db.exists():
            continue
        backend: dict[str, Any] = {}
        conf = cfg
        if source == "student":
            conf = cfg.model_copy(update={"compact_example": False})  # a tuned student needs no worked example
            gguf, info["student_training"] = train_student(split, space, work, conf, args)
            backend = {"lora_path": str(gguf)}
        log(f"{name}: {source} personas (training events) for {users or 'every'} users")
        info[source] = {"store": str(db), **generate(split, space, db, conf, backend, users)}
        write_json(info_path, info)
    if "shuffled" not in info or not (work / "personas-shuffled.db").exists():
        info["shuffled"] = {"store": str(work / "personas-shuffled.db"),
                            **shuffled_store(split, work / "personas-llm.db", work / "personas-shuffled.db")}  # fmt: skip
        write_json(info_path, info)
    info["fallback"] = {"store": None}
    return info


def open_stores(info: dict[str, Any]) -> dict[str, Any]:
    from personarec.personas.store.sqlite import SQLiteStore

    return {s: (SQLiteStore(info[s]["store"]) if info[s]["store"] else None) for s in SOURCES}


# -- 2. one seed: train, evaluate ---------------------------------------------------------------
def fit_or_load(path: Path, name: str, params: dict[str, Any], split: Split, **context: Any) -> tuple[Recommender, dict]:
    """A trained model from ``path`` when it is there, else trained now and saved there."""
    meta_path = path / "fit.json"
    if meta_path.exists():
        return load_recommender(path), read_json(meta_path)
    model = build_recommender(name, params)
    t0 = time.perf_counter()
    model.fit(split, **context)
    meta = {"fit_seconds": round(time.perf_counter() - t0, 1), "best_epoch": getattr(model, "best_epoch", None),
            "valid_curve": [round(r.get("valid_ndcg", 0.0), 4) for r in getattr(model, "history_", [])],
            "persona_info": getattr(model, "persona_info_", None)}  # fmt: skip
    model.save(path)
    write_json(meta_path, meta)
    return model, meta


def evaluate(split: Split, space: ItemSpace, models: dict[str, Recommender]) -> EvalResult:
    return evaluate_models(split, models, stage="test", ks=KS, items=space, n_boot=200, show_progress=False)


def summary_rows(result: EvalResult) -> dict[str, dict[str, float]]:
    cols = [c for c in REPORTED if c in result.summary.columns]
    return {r["model"]: {c: float(r[c]) for c in cols} for r in result.summary.iter_rows(named=True)}


def run_seed(name: str, seed: int, split: Split, space: ItemSpace, stores: dict[str, Any], vectors: dict[str, Any],
             args: argparse.Namespace, sasrec: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    seed_dir = Path(args.run_root) / name / f"seed-{seed}"
    part_path = seed_dir / "part.json"
    if (done := read_json(part_path)) is not None:
        log(f"{name} seed {seed}: done before ({part_path})")
        return done
    fits: dict[str, dict] = {}
    base, fits["sasrec"] = fit_or_load(seed_dir / "models" / "sasrec", "sasrec", dict(sasrec, seed=seed), split)
    log(f"{name} seed {seed}: sasrec {fits['sasrec']['fit_seconds']}s, best epoch {fits['sasrec']['best_epoch']}")
    models: dict[str, Recommender] = {"sasrec": base}
    for s in SOURCES:
        arm = f"persona_sasrec-{s}"
        profiles, vecs = vectors[s]
        models[arm], fits[arm] = fit_or_load(seed_dir / "models" / arm, "persona_sasrec", dict(sasrec, **PERSONA, seed=seed),
                                             split, items=space, persona_vectors=vecs, persona_profiles=profiles)  # fmt: skip
        log(f"{name} seed {seed}: {arm} {fits[arm]['fit_seconds']}s, best epoch {fits[arm]['best_epoch']}")
    for s in SOURCES:
        models[f"hybrid-{s}"] = build_recommender("persona_hybrid", {"explore_quota": args.quota}).fit(
            split, items=space, base=base, persona_store=stores[s]
        )
    result = evaluate(split, space, models)
    result.save(seed_dir / "eval")
    part = {
        "seed": seed, "test": summary_rows(result), "personas_in_lists": result.personas,
        "per_user_ndcg": {m: [round(float(x), 6) for x in f[NDCG].to_list()] for m, f in result.per_user.items()},
        "users": result.users.tolist(), "fits": fits,
        "eval_seconds": {m: t.get("rank_s") for m, t in result.timings.items()},
    }  # fmt: skip
    if seed == args.seeds[0]:
        part["quota_curve"] = quota_curve(split, space, base, stores["llm"], args.quotas)
    write_json(part_path, part)
    log(f"{name} seed {seed}: {NDCG} " + ", ".join(f"{m} {v[NDCG]:.4f}" for m, v in part["test"].items()))
    return part


def quota_curve(split: Split, space: ItemSpace, base: Recommender, store: Any, quotas: list[float]) -> list[dict[str, Any]]:
    """The hybrid (LLM personas) over the exploration quota: accuracy against novelty/serendipity."""
    models = {f"q={q:g}": build_recommender("persona_hybrid", {"explore_quota": q}).fit(split, items=space, base=base, persona_store=store)
              for q in quotas}  # fmt: skip
    rows = summary_rows(evaluate(split, space, models))
    ref = rows[f"q={quotas[0]:g}"]
    return [{"quota": q, **rows[f"q={q:g}"], "ndcg_relative_change": rows[f"q={q:g}"][NDCG] / ref[NDCG] - 1 if ref[NDCG] else None}
            for q in quotas]  # fmt: skip


# -- 3. across seeds: paired tests, goals -------------------------------------------------------
def mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def seed_paired(parts: list[dict], arm: str, control: str) -> dict[str, Any]:
    """``arm - control`` NDCG@10 on the same seeds: mean, std, 95 % t interval, paired t-test."""
    from scipy import stats

    d = np.array([p["test"][arm][NDCG] - p["test"][control][NDCG] for p in parts])
    ctrl = np.array([p["test"][control][NDCG] for p in parts])
    out: dict[str, Any] = {"arm": arm, "control": control, "n_seeds": len(d), "diff_mean": float(d.mean()),
                           "relative_gain": float(d.mean() / ctrl.mean()) if ctrl.mean() else None}  # fmt: skip
    if len(d) > 1:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.975, len(d) - 1) * sd / np.sqrt(len(d)))
        p = float(stats.ttest_rel([x["test"][arm][NDCG] for x in parts], ctrl).pvalue) if sd > 0 else (1.0 if d.mean() == 0 else 0.0)
        out.update(diff_std=sd, ci95=[float(d.mean() - half), float(d.mean() + half)], p_paired_t=p)
    return out


def user_paired(parts: list[dict], arm: str, control: str) -> dict[str, Any]:
    """Per user, the seeds' mean NDCG@10 under both arms: paired bootstrap CI + Wilcoxon."""
    from personarec.evaluate.stats import paired_comparison

    a = np.mean([p["per_user_ndcg"][arm] for p in parts], axis=0)
    b = np.mean([p["per_user_ndcg"][control] for p in parts], axis=0)
    c = paired_comparison(a, b, n_boot=2000, seed=0)
    return {"arm": arm, "control": control, "n_users": c.n_model, "diff_mean": c.diff, "ci95": [c.ci_low, c.ci_high],
            "p_wilcoxon": c.p_value}  # fmt: skip


COMPARISONS = [(f"{kind}-{s}", ctrl) for kind in ("persona_sasrec", "hybrid") for s in SOURCES for ctrl in ("sasrec",)] + [
    (f"{kind}-llm", f"{kind}-{c}") for kind in ("persona_sasrec", "hybrid") for c in ("shuffled", "fallback")
] + [("persona_sasrec-student", "persona_sasrec-llm"), ("persona_sasrec-student", "persona_sasrec-shuffled")]


def aggregate(parts: list[dict], personas: dict[str, Any], args: argparse.Namespace, sasrec: dict[str, Any]) -> dict[str, Any]:
    arms = list(parts[0]["test"])
    entry: dict[str, Any] = {
        "seeds": [p["seed"] for p in parts], "personas": {s: {k: v for k, v in personas[s].items() if k != "store"} for s in SOURCES},
        "student_training": personas.get("student_training"),
        "config": {"sasrec": sasrec, "persona_sasrec": PERSONA, "hybrid_quota": args.quota, "student": STUDENT},
        "test_mean_std": {m: {c: mean_std([p["test"][m][c] for p in parts]) for c in REPORTED if c in parts[0]["test"][m]} for m in arms},
        "paired": [dict(seed_paired(parts, a, c), per_user=user_paired(parts, a, c)) for a, c in COMPARISONS],
        "personas_in_lists_seed0": parts[0]["personas_in_lists"],
        "fit_seconds": {m: mean_std([p["fits"][m]["fit_seconds"] for p in parts]) for m in parts[0]["fits"]},
        "best_epoch": {m: [p["fits"][m]["best_epoch"] for p in parts] for m in parts[0]["fits"]},
        "quota_curve_seed0": parts[0].get("quota_curve"),
    }  # fmt: skip
    entry["goal"] = goal(entry)
    return entry


def goal(entry: dict[str, Any]) -> dict[str, Any]:
    """The issue's bar: persona SASRec with LLM personas >= +5 % NDCG@10 over SASRec, the gap larger
    than 2 standard deviations (of either arm over seeds) and larger than the shuffled control's."""
    ms = entry["test_mean_std"]
    base, llm, shuf = (ms[m][NDCG] for m in ("sasrec", "persona_sasrec-llm", "persona_sasrec-shuffled"))
    gap = llm["mean"] - base["mean"]
    gain = gap / base["mean"] if base["mean"] else float("nan")
    two_std = 2 * max(base["std"], llm["std"])
    return {
        "persona_sasrec_llm_gain": gain, "gap": gap, "two_std": two_std,
        "shuffled_gap": shuf["mean"] - base["mean"],
        "target": "gain >= 5% and gap > 2 std and gap > shuffled control's gap",
        "met": bool(gain >= 0.05 and gap > two_std and gap > shuf["mean"] - base["mean"]),
    }  # fmt: skip


def write_report(name: str, entry: dict[str, Any], args: argparse.Namespace) -> str:
    """Run directory the HTML report reads: first seed's evaluation, its replayed A/B, the effect JSON."""
    from personarec.evaluate.ab import replay_ab
    from personarec.evaluate.report import write_report as render

    run_dir = Path(args.run_root) / name
    seed0 = run_dir / f"seed-{entry['seeds'][0]}" / "eval"
    shutil.rmtree(run_dir / "eval", ignore_errors=True)
    shutil.copytree(seed0, run_dir / "eval")
    ms = entry["test_mean_std"]
    best = max((m for m in ms if m != "sasrec"), key=lambda m: ms[m][NDCG]["mean"])
    replay_ab(EvalResult.load(run_dir / "eval"), [best, "sasrec"], control="sasrec", seed=0).save(run_dir / "eval" / "ab")
    write_json(run_dir / "persona_effect.json", {"dataset": name, **entry})
    return str(render(run_dir))


# -- driver --------------------------------------------------------------------------------------
@contextmanager
def locked(path: Path):
    """Two processes (say one per dataset) may merge into the same JSON: one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_dataset(name: str, args: argparse.Namespace, sasrec: dict[str, Any]) -> None:
    from personarec.items.embed import TextEmbedder

    t0 = time.perf_counter()
    log(f"{name}: loading, splitting, item space")
    split = make_split(load_dataset(name, download=False))
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    personas = prepare_personas(name, split, space, args)
    stores = open_stores(personas)
    embedder = TextEmbedder(ItemsConfig())
    vectors = {}
    for s in SOURCES:
        profiles = UserProfiles.build(split, space, "valid", stores[s])
        vectors[s] = (profiles, embedder.embed(profiles.texts, show_progress=False)[0])
        personas[s]["llm_share_of_profiles"] = profiles.llm_share
        log(f"{name}: {s} personas, {profiles.llm_share:.1%} from an LLM")
    personas["example_texts"] = {s: vectors[s][0].texts[0] for s in SOURCES}
    for seed in args.seeds:
        run_seed(name, seed, split, space, stores, vectors, args, sasrec)
    parts = [p for s in args.all_seeds if (p := read_json(Path(args.run_root) / name / f"seed-{s}" / "part.json"))]
    entry = aggregate(parts, personas, args, sasrec)
    entry.update(protocol_card=split.protocol.lines(), command="python " + " ".join(sys.argv),
                 wall_seconds_this_process=round(time.perf_counter() - t0, 1),
                 finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))  # fmt: skip
    entry["report"] = write_report(name, entry, args)
    for s in stores.values():
        if s is not None:
            s.close()
    out = Path(args.out)
    with locked(Path(args.run_root) / "distill.lock"):
        doc = read_json(out) or {}
        doc.update(benchmark="distill", protocol_note="leave-one-out, full ranking, seen items excluded; test targets; metrics at k=10",
                   machine={"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
                   student_llm_figures=student_figures())  # fmt: skip
        doc.setdefault("datasets", {})[name] = entry
        write_json(out, doc)
    print_summary(name, entry)


def student_figures() -> dict[str, Any] | None:
    d = read_json(ROOT / "results" / "persona_student.json")
    return None if d is None else {"source": "benchmarks/results/persona_student.json", "command": d.get("command"), "summary": d.get("summary")}


def print_summary(name: str, entry: dict[str, Any]) -> None:
    print(f"\n== {name}: {len(entry['seeds'])} seeds ==")
    for m, row in entry["test_mean_std"].items():
        print(f"{m:<26}" + "".join(f"{c} {row[c]['mean']:.4f}±{row[c]['std']:.4f}  " for c in (NDCG, f"exploration@{K}")))
    for p in entry["paired"]:
        ci = p.get("ci95", [float("nan")] * 2)
        print(f"  {p['arm']:<24} - {p['control']:<24} {p['diff_mean']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}] per user p={p['per_user']['p_wilcoxon']:.3g}")
    print("goal:", json.dumps(entry["goal"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ml-100k,ml-latest-small")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="seeds this process trains (others already done are merged)")
    ap.add_argument("--all-seeds", default="0,1,2,3,4", help="seeds merged into the JSON when their results exist")
    ap.add_argument("--quota", type=float, default=0.2, help="exploration quota of the hybrid arms")
    ap.add_argument("--quotas", default="0,0.1,0.2,0.3,0.5", help="quotas of the seed-0 trade-off curve (first = reference)")
    ap.add_argument("--max-epochs", type=int, default=SASREC["max_epochs"], help="SASRec epoch cap (early stopping on validation)")
    ap.add_argument("--student-steps", type=int, default=48, help="LoRA steps of the student (batch 8; ~12 s each on 2 cores)")
    ap.add_argument("--persona-users", type=int, default=0, help="LLM personas for this many users (0 = every user; the rest fall back)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: tiny SASRec, 2 epochs, 2 student steps, 16 LLM users")
    ap.add_argument("--run-root", default="runs/bench-distill", help="persona stores, student, models, per-seed results, reports")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.all_seeds = sorted(set(args.seeds) | {int(s) for s in args.all_seeds.split(",")})
    args.quotas = [float(q) for q in args.quotas.split(",")]
    sasrec = dict(SASREC, max_epochs=args.max_epochs)
    if args.quick:
        sasrec.update(max_len=50, hidden=32, n_blocks=1, max_epochs=2, min_epochs=1)
        args.student_steps, args.persona_users = 2, args.persona_users or 16
        args.run_root = args.run_root.rstrip("/") + "-quick"
    args.out = args.out or str(ROOT / "results" / ("distill_quick.json" if args.quick else "distill.json"))
    import torch

    torch.set_num_threads(1)
    for name in args.datasets.split(","):
        run_dataset(name, args, sasrec)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
