"""Privacy audit of personas (issue 12, part 3) -> key "privacy" of benchmarks/results/trust.json.

    .venv/bin/python benchmarks/trust_privacy.py [--quick]

Do personas add sensitive inferences? On ML-100k, a linear probe predicts each user's gender and
age band (``u.user``) from three views of the same TRAINING history of the default leave-one-out
split:

- (a) item bag: the binary user x item matrix of the history (what any recommender holds);
- (b) persona text: MiniLM (the items' embedding model) of the persona as a reader sees it: summary,
  interests, explore topics with their reasons (``profiles.persona_text``);
- (c) persona fields: interest weights and explore topics, one column per fine cluster.

The personas are the real ones: the default persona engine (compact, SmolLM2-135M on llama.cpp,
batch 16, seed 42, ``history_stage = valid``) for every user, cached in ``runs/trust_privacy/``
(gitignored; the key hashes the config, the item space and the model file) so reruns skip the
~8 minutes of generation. Fallback personas are counted and kept in the probe with the features
of the stored fallback record (statistics-only, composed text); they are listed in the JSON.

Probe: standardise, then multinomial logistic regression (lbfgs, L2) with C chosen by an inner
5-fold grid search on log-loss, inside an outer stratified 5-fold CV (seed 42) that yields
out-of-fold probabilities for every user. Gender: AUC of P(F). Age: 4 bands (<25, 25-34, 35-44,
45+; quartile-like on ML-100k), a 4-class probe; one-vs-rest AUC per band and their mean (macro).
CIs: 95 % percentile bootstrap over users (1000 resamples) of the out-of-fold scores; the
differences (b)-(a) and (c)-(a) use the same resamples (paired). "(b) is no better than (a)" holds
when the lower end of the difference CI is <= 0; its upper end bounds how much better it could be.
The bootstrap does not resample the fitting, so two references go with it: the whole probe with 4
other outer-CV seeds (spread of the AUCs and differences) and on 5 label permutations (chance, next
to the analytic SD of a no-signal AUC).

Lexicon check: the demographic lexicon of ``personas/privacy.py`` (gender, family, age and
occupation words), matched on word boundaries, case-insensitively. Reported: personas the filter
acted on at generation (provenance), stored personas whose free text (summary, reasons) holds a word
the user's input does not (the filter's definition: history titles, cluster and candidate names),
the stricter count against the literal prompt the model read, and words copied from the input.

``--quick``: 300 seeded users, 200 resamples, 1 extra CV seed and 2 permutations, a smaller C grid;
writes trust_quick.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "runs" / "trust_privacy"
sys.path.insert(0, str(ROOT / "benchmarks"))

from persona_engine import load  # noqa: E402

SEED = 42
DATASET = "ml-100k"
AGE_BANDS = ("<25", "25-34", "35-44", "45+")
FEATURES = {
    "a": "item bag: binary user x item matrix of the training history",
    "b": "persona text: MiniLM embedding (384-d, unit norm) of summary + interests + explore topics with reasons",
    "c": "persona fields: interest weight per fine cluster + explore indicator per fine cluster",
}


# -- data ------------------------------------------------------------------------------------------
def demographics(split) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Gender (1 = F) and age band index per split user, from ``u.user`` (never copied anywhere)."""
    from personarec.data.registry import locate

    rows = {}
    for line in (locate(DATASET, download=False) / "u.user").read_text(encoding="latin-1").splitlines():
        uid, age, gender, occupation, _ = line.split("|")
        rows[uid] = (int(age), gender, occupation)
    ages = np.array([rows[str(u)][0] for u in split.user_ids])
    female = np.array([rows[str(u)][1] == "F" for u in split.user_ids], dtype=np.int64)
    band = np.digitize(ages, [25, 35, 45])  # 0: <25, 1: 25-34, 2: 35-44, 3: 45+
    return female, band, [rows[str(u)][2] for u in split.user_ids]


def persona_config():
    """The default engine as the benchmarks run it: personas from the training events."""
    from personarec.personas.config import PersonasConfig

    return PersonasConfig(history_stage="valid", batch_size=16, backend_config={"n_threads": 2})


def cache_dir(config, space, split) -> Path:
    """A folder per (engine config, item space, split, model file, lexicon): stale caches never mix."""
    from personarec.personas.backends.models import shipped_gguf_path
    from personarec.personas.compact import COMPACT_VERSION
    from personarec.personas.privacy import default_words
    from personarec.personas.prompts import PROMPT_VERSION

    gguf = shipped_gguf_path()
    digest = hashlib.sha256()
    for part in (
        config.model_dump_json(exclude={"store", "retry_fallbacks"}), "\n".join(space.fine_names),
        json.dumps(split.protocol.model_dump(mode="json"), sort_keys=True), gguf.name, str(gguf.stat().st_size),
        COMPACT_VERSION, PROMPT_VERSION, ",".join(default_words()),
    ):  # fmt: skip
        digest.update(part.encode() + b"\x00")
    digest.update(np.ascontiguousarray(space.fine, dtype=np.int64).tobytes())  # the item -> cluster map itself
    return CACHE / digest.hexdigest()[:16]


def personas(split, space, transitions, users: list[int], config) -> tuple[dict[str, Any], dict]:
    """The stored personas of ``users``, generating the missing ones (resumable)."""
    from personarec.personas.generate import PersonaEngine, generate_personas, pending_users
    from personarec.personas.history import ContextBuilder
    from personarec.personas.store.base import open_store

    folder = cache_dir(config, space, split)
    folder.mkdir(parents=True, exist_ok=True)
    store = open_store(str(folder / "personas.db"))
    contexts = ContextBuilder(split, space, config, transitions=transitions)
    pending, _ = pending_users(contexts, users, store, config.retry_fallbacks)
    run: dict[str, Any] = {"cache": str(folder.relative_to(ROOT)), "generated_now": len(pending)}
    if pending:
        from personarec.personas.backends.base import build_backend

        backend = build_backend(config.backend, config.backend_config)
        engine = PersonaEngine(split, space, backend, config, transitions=transitions, seed=SEED)
        report = generate_personas(split, space, backend, pending, store, config, engine=engine, show_progress=True)
        backend.close()
        summary = report.summary()
        with (folder / "generation.jsonl").open("a") as fh:
            fh.write(json.dumps(summary) + "\n")
        run["this_run"] = {k: summary[k] for k in ("generated", "fallbacks", "unusable", "demographic_filtered",
                                                   "wall_seconds", "personas_per_s", "error_counts")}  # fmt: skip
    log = folder / "generation.jsonl"
    if log.exists():  # every batch that wrote into this cache (a rerun generates nothing)
        keys = ("requested", "generated", "fallbacks", "unusable", "demographic_filtered", "wall_seconds",
                "personas_per_s", "error_counts", "batches", "format", "model")  # fmt: skip
        run["generation_log"] = [{k: row.get(k) for k in keys} for row in map(json.loads, log.read_text().splitlines())]
    out = {str(split.user_ids[u]): store.get(str(split.user_ids[u])) for u in users}
    store.close()
    return out, run


# -- features ----------------------------------------------------------------------------------------
def rendered(p) -> str:
    from personarec.personas.profiles import persona_text

    return persona_text(p.summary, [i.cluster for i in p.interests], [f"{e.cluster} ({e.reason})" for e in p.explore])


def features(split, space, users: list[int], stored: dict) -> dict[str, np.ndarray]:
    from personarec.items.config import ItemsConfig
    from personarec.items.embed import TextEmbedder

    train = split.history("train")
    bag = np.zeros((len(users), split.n_items))
    for r, u in enumerate(users):
        bag[r, train[u]] = 1.0
    ps = [stored[str(split.user_ids[u])] for u in users]
    text, _ = TextEmbedder(ItemsConfig()).embed([rendered(p) for p in ps], show_progress=False)
    by_name = space.cluster_by_name()
    fields = np.zeros((len(users), 2 * space.n_fine))
    for r, p in enumerate(ps):
        for i in p.interests:
            fields[r, by_name[i.cluster]] = i.weight
        for e in p.explore:
            fields[r, space.n_fine + by_name[e.cluster]] = 1.0
    keep = lambda x: x[:, x.any(axis=0)]  # noqa: E731 - drop columns no user has
    return {"a": keep(bag), "b": np.asarray(text, dtype=np.float64), "c": keep(fields)}


# -- probe -------------------------------------------------------------------------------------------
def oof_scores(x: np.ndarray, y: np.ndarray, cs: list[float], seed: int) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold class probabilities of a nested-CV logistic regression, and the C of each fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_classes = int(y.max()) + 1
    proba = np.zeros((len(y), n_classes))
    chosen = []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        search = GridSearchCV(
            pipe, {"logisticregression__C": cs}, scoring="neg_log_loss",
            cv=StratifiedKFold(5, shuffle=True, random_state=seed + 1), n_jobs=1,
        )  # fmt: skip
        search.fit(x[train], y[train])
        proba[test] = search.predict_proba(x[test])
        chosen.append(float(search.best_params_["logisticregression__C"]))
    return proba, chosen


def auc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUC of scores ``s`` for binary labels ``y``, row-wise over a batch ``[B, n]`` (ties averaged)."""
    from scipy.stats import rankdata

    y = np.atleast_2d(y).astype(bool)
    ranks = rankdata(np.atleast_2d(s), axis=1)
    pos = y.sum(axis=1)
    neg = y.shape[1] - pos
    return ((ranks * y).sum(axis=1) - pos * (pos + 1) / 2) / np.maximum(pos * neg, 1)


def auc_ci(point: float, boot: np.ndarray) -> dict:
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"auc": round(float(point), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def difference(point: float, boot: np.ndarray) -> dict:
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "diff": round(float(point), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "p_one_sided_better": round(float((boot <= 0).mean()), 4),  # share of resamples where it is not better
        "better_than_a": bool(lo > 0),
    }  # fmt: skip


def evaluate(labels: dict[str, np.ndarray], scores: dict[str, dict[str, np.ndarray]], n_boot: int, seed: int) -> dict:
    """``labels``: name -> binary labels; ``scores[view][name]``: scores. AUCs, CIs, paired diffs."""
    n = len(next(iter(labels.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    point = {v: {k: float(auc_rows(y, scores[v][k])[0]) for k, y in labels.items()} for v in scores}
    boot = {v: {k: auc_rows(y[idx], scores[v][k][idx]) for k, y in labels.items()} for v in scores}
    out: dict[str, Any] = {}
    for k in labels:
        row = {v: auc_ci(point[v][k], boot[v][k]) for v in scores}
        for v in ("b", "c"):
            if v in scores:
                row[f"{v}-a"] = difference(point[v][k] - point["a"][k], boot[v][k] - boot["a"][k])
        out[k] = row
    return out


def view_scores(x: np.ndarray, female: np.ndarray, band: np.ndarray, cs: list[float], seed: int) -> tuple[dict, list, list]:
    """Out-of-fold scores of one view for both targets (gender: P(F); age: P(band) per band)."""
    pf, cf = oof_scores(x, female, cs, seed)
    pb, cb = oof_scores(x, band, cs, seed)
    return {"gender_F": pf[:, 1], **{AGE_BANDS[k]: pb[:, k] for k in range(len(AGE_BANDS))}}, cf, cb


def point_aucs(scores: dict[str, np.ndarray], female: np.ndarray, band: np.ndarray) -> dict[str, float]:
    """Gender AUC and macro age AUC of one view's scores (no bootstrap)."""
    ages = [float(auc_rows((band == k).astype(np.int64), scores[b])[0]) for k, b in enumerate(AGE_BANDS)]
    return {"gender": float(auc_rows(female, scores["gender_F"])[0]), "age_macro": float(np.mean(ages))}


def spread(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "runs": [round(v, 4) for v in values]}  # fmt: skip


def probe(
    x_by_view: dict[str, np.ndarray], female: np.ndarray, band: np.ndarray, cs: list[float], n_boot: int, repeats: int
) -> dict:
    """AUCs of every view with bootstrap CIs (outer-CV seed 42), then two references without bootstrap:
    the same probe with ``repeats - 1`` other outer-CV seeds (the fitting variability the bootstrap
    over fixed out-of-fold scores leaves out) and on ``repeats`` label permutations (chance)."""
    scores, chosen = {}, {}
    for v, x in x_by_view.items():
        t = time.perf_counter()
        scores[v], cf, cb = view_scores(x, female, band, cs, SEED)
        chosen[v] = {"gender": cf, "age": cb}
        print(f"[real] view {v}: {x.shape[1]} features, {time.perf_counter() - t:.1f} s", flush=True)
    bands = {b: (band == k).astype(np.int64) for k, b in enumerate(AGE_BANDS)}
    gender_scores = {v: {"gender_F": sc["gender_F"]} for v, sc in scores.items()}
    age_scores = {v: {b: sc[b] for b in AGE_BANDS} for v, sc in scores.items()}
    real = {
        "gender": evaluate({"gender_F": female}, gender_scores, n_boot, SEED)["gender_F"],
        "age_macro": macro_auc(bands, age_scores, n_boot, SEED),
        "age_per_band": evaluate(bands, age_scores, n_boot, SEED),
    }

    targets = ("gender", "age_macro")
    by_seed: dict[str, dict[str, list[float]]] = {v: {t: [] for t in targets} for v in x_by_view}
    for v in x_by_view:
        for t in targets:
            by_seed[v][t].append(real[t][v]["auc"])
    for r in range(1, repeats):
        for v, x in x_by_view.items():
            pa = point_aucs(view_scores(x, female, band, cs, SEED + r)[0], female, band)
            for t in targets:
                by_seed[v][t].append(pa[t])
        print(f"[cv seed {SEED + r}] done", flush=True)
    cv_seeds = {t: {v: spread(by_seed[v][t]) for v in x_by_view} for t in targets}
    for t in targets:
        for v in ("b", "c"):
            cv_seeds[t][f"{v}-a"] = spread([x - a for x, a in zip(by_seed[v][t], by_seed["a"][t], strict=True)])

    shuffled: dict[str, dict[str, list[float]]] = {v: {t: [] for t in targets} for v in x_by_view}
    for r in range(repeats):
        rng = np.random.default_rng(SEED + 100 + r)
        yf, yb = rng.permutation(female), rng.permutation(band)
        for v, x in x_by_view.items():
            pa = point_aucs(view_scores(x, yf, yb, cs, SEED)[0], yf, yb)
            for t in targets:
                shuffled[v][t].append(pa[t])
        print(f"[shuffled {r}] done", flush=True)
    n_f, n_m = int(female.sum()), int(len(female) - female.sum())
    null_sd = {  # Hanley & McNeil: SD of an AUC under no signal, for these class sizes
        "gender": round(float(np.sqrt((n_f + n_m + 1) / (12 * n_f * n_m))), 4),
        "age_band": {b: round(float(np.sqrt((len(band) + 1) / (12 * y.sum() * (len(band) - y.sum())))), 4)
                     for b, y in bands.items()},
    }  # fmt: skip
    return {
        "real": real,
        "cv_seeds": {"seeds": [SEED + r for r in range(repeats)], **cv_seeds},
        "shuffled": {"permutations": repeats, **{t: {v: spread(shuffled[v][t]) for v in x_by_view} for t in targets},
                     "null_auc_sd": null_sd},  # fmt: skip
        "chosen_C": chosen,
    }


def macro_auc(bands: dict[str, np.ndarray], scores: dict[str, dict[str, np.ndarray]], n_boot: int, seed: int) -> dict:
    """Mean one-vs-rest AUC over the bands, bootstrapped on the same resamples as each band."""
    n = len(next(iter(bands.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    point = {v: np.mean([auc_rows(y, scores[v][k])[0] for k, y in bands.items()]) for v in scores}
    boot = {v: np.mean([auc_rows(y[idx], scores[v][k][idx]) for k, y in bands.items()], axis=0) for v in scores}
    row: dict[str, Any] = {v: auc_ci(point[v], boot[v]) for v in scores}
    for v in ("b", "c"):
        row[f"{v}-a"] = difference(point[v] - point["a"], boot[v] - boot["a"])
    return row


# -- lexicon check -----------------------------------------------------------------------------------
def _snippet(text: str, word: str, width: int = 40) -> str:
    """The first occurrence of ``word`` in ``text`` with a little context (for the examples)."""
    import re

    m = re.search(r"(?<!\w)" + r"[\s\-]+".join(map(re.escape, word.split())), text, re.IGNORECASE)
    if m is None:
        return text[: 2 * width]
    return text[max(0, m.start() - width) : m.end() + width]


def lexicon_check(split, space, transitions, users: list[int], stored: dict, config, occupations: list[str]) -> dict:
    """Demographic words in the stored personas: unsupported by the input (the filter's definition),
    not in the literal prompt, copied from the input, and each user's own occupation."""
    from personarec.personas.compact import compact_prompt, listed_candidates, listed_clusters
    from personarec.personas.generate import domain_of
    from personarec.personas.history import ContextBuilder
    from personarec.personas.privacy import DEFAULT_LEXICON, lexicon, normalise, source_text

    words = lexicon(config.demographic_words)
    group = {normalise(w): g for g, ws in DEFAULT_LEXICON.items() for w in ws}
    contexts = ContextBuilder(split, space, config, transitions=transitions)
    prompt = compact_prompt(config, domain_of(split), space.fine_names)
    prefix = prompt.prefix_text()
    tallies: dict[str, Counter] = {k: Counter() for k in ("not_in_input", "not_in_prompt", "from_input")}
    personas_with: Counter = Counter()
    examples: dict[str, list] = {k: [] for k in tallies}
    own_occupation = 0
    prompt_words_from_reasons_only = 0  # not-in-prompt words that only the composed reasons carry
    for u in users:
        uid = str(split.user_ids[u])
        p = stored[uid]
        if p is None:
            continue
        ctx = contexts.context(u)
        free = "\n".join([p.summary, *(e.reason for e in p.explore)])  # what the model could write freely
        full = rendered(p)  # everything a reader sees, cluster names included
        source = words.find(source_text(ctx))
        listed = [(s.name, s.count, s.events_since) for s in listed_clusters(ctx, config)]
        shown = words.find(prefix + prompt.user_block(listed, [ctx.fine_names[c] for c in listed_candidates(ctx, config)]))
        found = words.find(full)
        fields = words.find("\n".join([p.summary, *(i.cluster for i in p.interests), *(e.cluster for e in p.explore)]))
        prompt_words_from_reasons_only += bool((found - shown) and not (fields - shown))
        kinds = {
            "not_in_input": sorted(words.find(free) - source),
            "not_in_prompt": sorted(found - shown),
            "from_input": sorted(found & source),
        }
        for kind, ws in kinds.items():
            if ws:
                personas_with[kind] += 1
                tallies[kind].update(ws)
                if len(examples[kind]) < 5:
                    examples[kind].append({"user": uid, "words": ws, "text": _snippet(full, ws[0])})
        occupation = occupations[u]
        own_occupation += occupation in group and occupation in found
    n = sum(stored[str(split.user_ids[u])] is not None for u in users)
    return {
        "lexicon": {g: len(ws) for g, ws in DEFAULT_LEXICON.items()},
        "matching": "whole words, case-insensitive, trailing plural s, phrase words split by spaces or hyphens",
        "personas_checked": n,
        "filter_acted_at_generation": sum(bool(p and p.provenance.demographic_filtered) for p in stored.values()),
        "definitions": {
            "not_in_input": "summary or explore reason holds a lexicon word that the user's input (history titles, "
            "history / candidate cluster names) does not: what the filter replaces; counted AFTER the filter",
            "not_in_prompt": "the rendered persona (names included) holds a lexicon word that the literal prompt the "
            "model read (shared prefix + the user's block, names cut to compact_name_chars) does not; "
            "not_in_prompt_from_reasons_only of them have it only in a composed reason, which names the history "
            "cluster that proposed the topic (the prompt lists the 6 strongest history clusters only)",
            "from_input": "the rendered persona holds a lexicon word that is also in the user's input (quoted)",
        },
        **{
            kind: {
                "personas": personas_with[kind],
                "words": dict(tallies[kind].most_common(15)),
                "by_group": dict(Counter(group.get(w, "custom") for w in tallies[kind].elements())),
                "examples": examples[kind],
            }
            for kind in tallies
        },
        "not_in_prompt_from_reasons_only": prompt_words_from_reasons_only,
        "own_occupation_in_text": own_occupation,
    }


# -- the part ----------------------------------------------------------------------------------------
def run(quick: bool = False) -> dict:
    """The privacy audit; returns the JSON-able result (``quick``: 300 users, 200 resamples)."""
    import torch
    from threadpoolctl import threadpool_limits

    from personarec.items.build import build_item_space
    from personarec.items.config import ItemsConfig
    from personarec.personas.transitions import TransitionStats

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    split = load(DATASET)
    space = build_item_space(split, ItemsConfig(), show_progress=False)
    transitions = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    users = list(range(split.n_users))
    if quick:
        users = sorted(int(u) for u in np.random.default_rng(SEED).choice(split.n_users, 300, replace=False))
    n_boot = 200 if quick else 1000
    repeats = 2 if quick else 5
    cs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0] if quick else [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    config = persona_config()

    t = time.perf_counter()
    stored, generation = personas(split, space, transitions, users, config)
    generation["seconds"] = round(time.perf_counter() - t, 1)
    train = split.history("train")
    usable = [u for u in users if stored[str(split.user_ids[u])] is not None]
    fallback = sorted(uid for uid, p in stored.items() if p is not None and p.provenance.fallback)
    female, band, occupations = demographics(split)

    t = time.perf_counter()
    x = features(split, space, usable, stored)
    feature_s = time.perf_counter() - t
    t = time.perf_counter()
    with threadpool_limits(1):  # measured: under load, multithreaded BLAS/OpenMP made lbfgs 3-4x slower
        probes = probe(x, female[usable], band[usable], cs, n_boot, repeats)
    probe_s = time.perf_counter() - t
    lex = lexicon_check(split, space, transitions, users, stored, config, occupations)

    real = probes["real"]
    verdict = {
        target: {
            f"{v}_no_better_than_a": not real[target][f"{v}-a"]["better_than_a"] for v in ("b", "c")
        } | {f"{v}_minus_a_upper_ci": real[target][f"{v}-a"]["ci95"][1] for v in ("b", "c")}
        for target in ("gender", "age_macro")
    }
    return {
        "command": "python benchmarks/trust_privacy.py" + (" --quick" if quick else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "dataset": DATASET,
        "split": "default leave-one-out split; every view is built from the TRAINING events only",
        "users": len(users),
        "personas": {
            "engine": "default compact engine: SmolLM2-135M (llama.cpp), batch 16, seed 42, history_stage=valid, "
            f"demographic_filter={config.demographic_filter}",
            **generation,
            "stored": len(usable),
            "unusable_no_persona": len(users) - len(usable),
            "llm_written": len(usable) - len(fallback),
            "fallbacks": len(fallback),
            "fallback_users": fallback,
            "fallback_features": "kept in the probe with the features of the stored fallback record (statistics: "
            "strongest clusters + transition candidates, composed text), embedded and encoded like the LLM ones",
            "version_is_training_history": int(
                sum(stored[str(split.user_ids[u])].version == len(train[u]) for u in usable)
            ),
            "summary_sources": dict(Counter(stored[str(split.user_ids[u])].provenance.summary_source for u in usable)),
        },
        "features": {v: {"what": FEATURES[v], "dim": int(x[v].shape[1])} for v in x},
        "targets": {
            "gender": {"positive": "F", "n_F": int(female[usable].sum()), "n_M": int(len(usable) - female[usable].sum())},
            "age": {"bands": list(AGE_BANDS), "counts": [int((band[usable] == k).sum()) for k in range(len(AGE_BANDS))],
                    "probe": "4-class (multinomial); AUC one-vs-rest per band, macro = their mean"},
        },  # fmt: skip
        "probe": {
            "model": "StandardScaler + LogisticRegression (lbfgs, L2, multinomial for age, max_iter 3000), "
            "one BLAS thread",
            "C_grid": cs,
            "C_selection": "inner stratified 5-fold grid search on log-loss, per outer fold",
            "outer_cv": "stratified 5-fold, shuffled, seed 42; out-of-fold probabilities for every user",
            "bootstrap": f"{n_boot} resamples of users, percentile 95 % CIs; differences paired on the same resamples",
            "test": "'(v) no better than (a)' when the lower end of the (v)-(a) CI is <= 0",
            "cv_seeds": f"the whole probe again with {repeats - 1} other outer-CV seeds, point AUCs (results.cv_seeds): "
            "the fitting variability that the bootstrap over fixed out-of-fold scores does not include",
            "chance": f"the same probe on {repeats} label permutations, point AUCs (results.shuffled), and the "
            "analytic SD of a no-signal AUC",
        },
        "results": probes,
        "verdict": verdict,
        "lexicon_check": lex,
        "seconds": {"total": round(time.perf_counter() - t0, 1), "features": round(feature_s, 1), "probe": round(probe_s, 1)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 users, 200 resamples (writes trust_quick.json)")
    args = ap.parse_args()
    result = run(quick=args.quick)
    from trust import update

    out = RESULTS / ("trust_quick.json" if args.quick else "trust.json")
    update("privacy", result, out=out)
    r = result["results"]["real"]
    for target in ("gender", "age_macro"):
        row = r[target]
        print(target, {v: (row[v]["auc"], row[v]["ci95"]) for v in "abc"},
              {d: (row[d]["diff"], row[d]["ci95"]) for d in ("b-a", "c-a")})  # fmt: skip
    print(f"wrote {out} (key 'privacy')")


if __name__ == "__main__":
    main()
