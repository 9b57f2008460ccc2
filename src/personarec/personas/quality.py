"""Persona quality: are personas valid, grounded, novel, and do they predict what users do next?

Computed from stored personas against held-out data the personas never saw. Each persona's
``version`` (history length) tells which events it was built from, so the ground truth is chosen per
persona: built from training events only -> future = validation + test items (test only when the
writer saw the validation events in hindsight); built from training + validation -> future = test.

- validity rate: share of model outputs that parsed, passed the schema and grounding (from the
  generation logs; stored personas are valid by construction);
- grounding rate (re-checked here): every cluster exists, interests are history clusters, explore
  topics are unseen, lists distinct;
- explore-novelty rate: share of explore topics not in the user's history;
- exploit precision / recall: interest clusters vs the clusters of the user's future items;
- explore hit-rate: share of users whose future items fall in a proposed novel cluster, against the
  baseline that proposes the most frequent cluster transitions (same number of topics per user);
- tokens per prompt, raw titles vs the clustered view; personas/s and tokens/s per backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from personarec.data.splits import Split
from personarec.items.space import ItemSpace
from personarec.personas.config import PromptConfig
from personarec.personas.history import PersonaContext, cluster_stats, item_titles, user_history
from personarec.personas.prompts import PromptBuilder, approx_tokens, domain_of
from personarec.personas.schema import Persona
from personarec.personas.transitions import TransitionStats


class HitRates(BaseModel):
    n_users: int = 0
    explore_hit_rate: float = 0.0
    baseline_hit_rate: float = 0.0  # most frequent transitions, same k per user
    novel_future_rate: float = 0.0  # users whose future has ANY unseen cluster (ceiling)
    exploit_precision: float = 0.0
    exploit_recall: float = 0.0
    baseline_exploit_precision: float = 0.0  # top clusters by recency-weighted count, same k
    baseline_exploit_recall: float = 0.0
    ratio_to_baseline: float | None = None  # explore hit-rate / the baseline's
    ratio_ci95: tuple[float, float] | None = None  # paired bootstrap over users (1,000 resamples)


class TokenComparison(BaseModel):
    n_users: int = 0
    counter: str = "approx"
    median_history_raw: float = 0.0
    median_history_clustered: float = 0.0
    median_prompt_raw: float = 0.0
    median_prompt_clustered: float = 0.0

    @property
    def history_ratio(self) -> float:
        return (
            self.median_history_raw / self.median_history_clustered if self.median_history_clustered else 0.0
        )

    @property
    def prompt_ratio(self) -> float:
        return self.median_prompt_raw / self.median_prompt_clustered if self.median_prompt_clustered else 0.0


class QualityReport(BaseModel):
    n_personas: int = 0
    n_llm: int = 0
    n_fallback: int = 0
    grounding_rate: float = 0.0
    explore_novelty_rate: float = 0.0
    validity: dict[str, Any] = Field(
        default_factory=dict, description="from the generation logs, per backend"
    )
    llm: HitRates = Field(default_factory=HitRates, description="LLM-written personas (no fallback)")
    all: HitRates = Field(default_factory=HitRates, description="every stored persona, fallbacks included")
    hindsight: HitRates = Field(
        default_factory=HitRates, description="hindsight labels, against test items only"
    )
    tokens: TokenComparison = Field(default_factory=TokenComparison)
    throughput: dict[str, Any] = Field(
        default_factory=dict, description="personas/s and tokens/s per backend"
    )
    problems: list[str] = Field(default_factory=list, description="first grounding problems found")

    def to_json(self) -> dict[str, Any]:
        d = self.model_dump()
        d["tokens"]["history_ratio"] = round(self.tokens.history_ratio, 2)
        d["tokens"]["prompt_ratio"] = round(self.tokens.prompt_ratio, 2)
        return d


def _history_at(split: Split, full, user_idx: int, version: int) -> np.ndarray:
    return full[user_idx][:version]


def grounding_problems(persona: Persona, space_names: set[str], history_names: set[str]) -> list[str]:
    """Everything wrong with a persona's topics given the catalogue and the user's history."""
    problems = []
    interests = [i.cluster for i in persona.interests]
    explore = [e.cluster for e in persona.explore]
    problems += [f"unknown cluster {c!r}" for c in interests + explore if c not in space_names]
    problems += [
        f"interest {c!r} not in history" for c in interests if c in space_names and c not in history_names
    ]
    problems += [f"explore {c!r} already in history" for c in explore if c in history_names]
    if len(set(interests)) != len(interests) or len(set(explore)) != len(explore):
        problems.append("repeated topic")
    return problems


def _accumulate(rates: dict[str, list[float]], key: str, value: float) -> None:
    rates.setdefault(key, []).append(value)


def _ratio_ci(hit: np.ndarray, base: np.ndarray, n_boot: int = 1000) -> tuple[float | None, tuple[float, float] | None]:
    """hit.mean() / base.mean() and its 95 % percentile interval, resampling users (paired: both
    rates of a resample come from the same users), seeded so that a report is reproducible."""
    if not base.sum():
        return None, None
    idx = np.random.default_rng(0).integers(0, len(hit), size=(n_boot, len(hit)))
    b = base[idx].mean(axis=1)
    ratios = hit[idx].mean(axis=1)[b > 0] / b[b > 0]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return round(float(hit.mean() / base.mean()), 3), (round(float(lo), 3), round(float(hi), 3))


def _hit_rates(rows: dict[str, list[float]]) -> HitRates:
    n = len(rows.get("hit", []))
    if not n:
        return HitRates()
    mean = {k: float(np.mean(v)) for k, v in rows.items()}
    ratio, ci = _ratio_ci(np.asarray(rows["hit"]), np.asarray(rows["base_hit"]))
    return HitRates(
        ratio_to_baseline=ratio,
        ratio_ci95=ci,
        n_users=n,
        explore_hit_rate=round(mean["hit"], 4),
        baseline_hit_rate=round(mean["base_hit"], 4),
        novel_future_rate=round(mean["novel"], 4),
        exploit_precision=round(mean["p"], 4),
        exploit_recall=round(mean["r"], 4),
        baseline_exploit_precision=round(mean["bp"], 4),
        baseline_exploit_recall=round(mean["br"], 4),
    )


def evaluate_personas(
    personas: Iterable[Persona],
    split: Split,
    space: ItemSpace,
    *,
    transitions: TransitionStats | None = None,
    half_life: float = 20.0,
) -> QualityReport:
    """Grounding, novelty and future-based metrics of stored personas (see module docstring)."""
    transitions = transitions or TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    full = split.history("test")  # train + valid, time-ordered: any persona's history is a prefix
    train_len = split.history("train").lengths()
    valid_t, test_t = split.targets("valid"), split.targets("test")
    index = split.user_index()
    names = set(space.fine_names)
    by_name = space.cluster_by_name()
    report = QualityReport()
    groups: dict[str, dict[str, list[float]]] = {"llm": {}, "all": {}, "hindsight": {}}
    grounded = 0
    explore_total = explore_novel = 0
    for persona in personas:
        report.n_personas += 1
        report.n_fallback += int(persona.provenance.fallback)
        report.n_llm += int(not persona.provenance.fallback)
        u = index.get(persona.user_id)
        if u is None:
            report.problems.append(f"{persona.user_id}: user not in split")
            continue
        hist = _history_at(split, full, u, persona.version)
        seen = {int(c) for c in space.fine[hist]}
        seen_names = {space.fine_names[c] for c in seen}
        probs = grounding_problems(persona, names, seen_names)
        grounded += int(not probs)
        if probs and len(report.problems) < 20:
            report.problems.append(f"{persona.user_id}: " + "; ".join(probs))
        explore_total += len(persona.explore)
        explore_novel += sum(e.cluster not in seen_names for e in persona.explore)
        # which held-out events come after this persona's history?
        if persona.version == train_len[u]:
            future = test_t[u] if persona.provenance.hindsight else np.concatenate([valid_t[u], test_t[u]])
        elif persona.version == train_len[u] + len(valid_t[u]):
            future = test_t[u]
        else:
            continue  # built from a live history this split does not know
        if len(future) == 0:
            continue
        fut = {int(c) for c in space.fine[future]}
        interests = [by_name[i.cluster] for i in persona.interests if i.cluster in by_name]
        explore = [by_name[e.cluster] for e in persona.explore if e.cluster in by_name]
        base_explore = transitions.most_frequent(seen, len(explore) or 1)
        stats = cluster_stats(hist, space, half_life, 0)
        base_interests = [s.cluster for s in stats[: len(interests) or 1]]
        targets = (
            ["hindsight"]
            if persona.provenance.hindsight
            else ["all"] + ([] if persona.provenance.fallback else ["llm"])
        )
        for g in targets:
            rows = groups[g]
            _accumulate(rows, "hit", float(bool(fut & set(explore))))
            _accumulate(rows, "base_hit", float(bool(fut & set(base_explore))))
            _accumulate(rows, "novel", float(bool(fut - seen)))
            _accumulate(rows, "p", len(fut & set(interests)) / max(1, len(interests)))
            _accumulate(rows, "r", len(fut & set(interests)) / len(fut))
            _accumulate(rows, "bp", len(fut & set(base_interests)) / max(1, len(base_interests)))
            _accumulate(rows, "br", len(fut & set(base_interests)) / len(fut))
    report.grounding_rate = round(grounded / report.n_personas, 4) if report.n_personas else 0.0
    report.explore_novelty_rate = round(explore_novel / explore_total, 4) if explore_total else 0.0
    report.llm, report.all, report.hindsight = (_hit_rates(groups[g]) for g in ("llm", "all", "hindsight"))
    return report


def compare_tokens(
    split: Split,
    space: ItemSpace,
    users: Sequence[int],
    prompt: PromptConfig | None = None,
    *,
    count_tokens: Callable[[str], int] | None = None,
    counter_name: str = "approx",
    stage: str = "test",
    n_candidates: int = 8,
    transitions: TransitionStats | None = None,
) -> TokenComparison:
    """Median tokens per user of the history block and of the whole prompt, raw vs clustered."""
    prompt = prompt or PromptConfig()
    count = count_tokens or approx_tokens
    transitions = transitions or TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    seqs = split.history(stage)  # type: ignore[arg-type]
    titles = item_titles(split)
    domain = prompt.domain or domain_of(split)  # the words the engine's prompts use, counted as sent
    builders = {
        mode: PromptBuilder(prompt.model_copy(update={"mode": mode, "domain": domain}), count)
        for mode in ("raw", "clustered")
    }
    sizes: dict[str, list[int]] = {"hr": [], "hc": [], "pr": [], "pc": []}
    for u in users:
        h = user_history(split, int(u), stage, seqs)  # type: ignore[arg-type]
        stats = cluster_stats(
            h.items, space, prompt.recency_half_life, max(prompt.examples_top, prompt.examples_other, 1)
        )
        if not stats:
            continue
        cands = transitions.candidates({s.cluster: s.weight for s in stats}, n_candidates)
        ctx = PersonaContext(h, stats, cands, titles, space.fine_names)
        for mode, hk, pk in (("raw", "hr", "pr"), ("clustered", "hc", "pc")):
            p = builders[mode].persona(ctx)
            sizes[hk].append(p.history_tokens)
            sizes[pk].append(sum(count(m["content"]) for m in p.messages))
    med = {k: float(np.median(v)) if v else 0.0 for k, v in sizes.items()}
    return TokenComparison(
        n_users=len(sizes["hr"]), counter=counter_name,
        median_history_raw=med["hr"], median_history_clustered=med["hc"],
        median_prompt_raw=med["pr"], median_prompt_clustered=med["pc"],
    )  # fmt: skip


def summarise_logs(log_path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(validity per backend, throughput per backend) from ``generation.jsonl`` batch records."""
    p = Path(log_path)
    if not p.exists():
        return {}, {}
    agg: dict[str, dict[str, float]] = {}
    for line in p.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        a = agg.setdefault(
            r["backend"],
            {
                k: 0.0
                for k in (
                    "outputs",
                    "valid",
                    "first",
                    "done",
                    "wall",
                    "out_tok",
                    "in_tok",
                    "llm_s",
                    "fallbacks",
                )
            },
        )
        a["outputs"] += r.get("outputs", 0)
        a["valid"] += r.get("valid_outputs", 0)
        a["first"] += r.get("first_try_valid", 0)
        a["done"] += r.get("generated", 0) + r.get("fallbacks", 0)
        a["fallbacks"] += r.get("fallbacks", 0)
        a["wall"] += r.get("wall_seconds", 0.0)
        a["out_tok"] += r.get("output_tokens", 0)
        a["in_tok"] += r.get("input_tokens", 0)
        a["llm_s"] += r.get("llm_seconds", 0.0)
    validity, throughput = {}, {}
    for name, a in agg.items():
        validity[name] = {
            "outputs": int(a["outputs"]),
            "validity_rate": round(a["valid"] / a["outputs"], 4) if a["outputs"] else None,
            "fallbacks": int(a["fallbacks"]),
        }
        throughput[name] = {
            "personas": int(a["done"]),
            "personas_per_s": round(a["done"] / a["wall"], 4) if a["wall"] else None,
            "output_tokens_per_s": round(a["out_tok"] / a["llm_s"], 2) if a["llm_s"] else None,
            "total_tokens_per_s": round((a["in_tok"] + a["out_tok"]) / a["llm_s"], 2) if a["llm_s"] else None,
        }
    return validity, throughput
