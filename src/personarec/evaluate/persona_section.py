"""Report section: do personas improve recommendations, and is it their content?

Reads ``RUN_DIR/persona_effect.json``, written by ``benchmarks/distill.py``: SASRec against
persona-distilled SASRec and the persona hybrid, each with LLM personas (embedded default and
student), fallback personas and shuffled personas (another user's: the content control), mean ± std
over seeds, the paired tests, the goal, and the hybrid's accuracy/novelty curve over the exploration
quota. Registered before the A/B section so the page reads: results -> personas -> A/B.
"""

from __future__ import annotations

from typing import Any

from personarec.evaluate.report import ReportContext, _plt, figure_html, fmt, html_table, section

K = 10
NDCG = f"ndcg@{K}"
COLUMNS = ("ndcg", "recall", "novelty", "serendipity", "exploration", "coverage")


def _mean_std(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("n", 0) == 0:
        return "–"
    return f"{fmt(cell['mean'])} ± {fmt(cell['std'])}" if cell.get("n", 0) > 1 else fmt(cell["mean"])


def _arm_plot(ms: dict[str, Any]) -> str:
    """NDCG@10 per arm, mean with ± 1 std over seeds; the SASRec level as a line."""
    plt = _plt()
    arms = list(ms)
    means = [ms[a][NDCG]["mean"] for a in arms]
    stds = [ms[a][NDCG]["std"] for a in arms]
    colors = {"llm": "#1f77b4", "student": "#17becf", "fallback": "#7f7f7f", "shuffled": "#d62728"}
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.bar(range(len(arms)), means, yerr=stds, capsize=4, color=[colors.get(a.rsplit("-", 1)[-1], "#2ca02c") for a in arms])
    if "sasrec" in ms:
        ax.axhline(ms["sasrec"][NDCG]["mean"], color="#2ca02c", lw=1, ls="--", label="SASRec")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
    ax.set_ylabel(f"NDCG@{K} (test), mean ± std")
    lo = min(m - s for m, s in zip(means, stds))
    ax.set_ylim(max(0.0, lo * 0.9), max(m + s for m, s in zip(means, stds)) * 1.05)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return figure_html(fig, "NDCG@10 per arm over seeds")


def _quota_plot(curve: list[dict[str, Any]]) -> str:
    plt = _plt()
    q = [c["quota"] for c in curve]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.plot(q, [c[NDCG] for c in curve], "o-", color="#1f77b4")
    a1.set_xlabel("exploration quota (share of slots from explore clusters)")
    a1.set_ylabel(f"NDCG@{K}")
    a1.grid(alpha=0.3)
    a2.plot(q, [c.get(f"exploration@{K}") for c in curve], "s--", color="#2ca02c")
    a2.set_xlabel("exploration quota")
    a2.set_ylabel(f"exploration@{K} (share outside history clusters)")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    return figure_html(fig, "accuracy and exploration over the exploration quota")


def _persona_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for source, p in (doc.get("personas") or {}).items():
        if not isinstance(p, dict):
            continue
        rows.append({"source": source, "LLM share of profiles": p.get("llm_share_of_profiles"),
                     "generated": p.get("generated"), "fallbacks": p.get("fallbacks"),
                     "personas/s": p.get("personas_per_s"), "model": p.get("model") or p.get("donor")})  # fmt: skip
    return rows


@section("persona_effect", "Persona effect (seeds, paired tests)", before="ab")
def _persona_effect(ctx: ReportContext) -> str | None:
    doc = ctx.read_json("persona_effect.json")
    if not doc:
        return None
    ms = doc.get("test_mean_std", {})
    out = [
        f"<p>{len(doc.get('seeds', []))} seeds ({', '.join(map(str, doc.get('seeds', [])))}), full ranking, test "
        "targets, mean ± std over seeds. Personas are built from training events only. <i>shuffled</i> gives "
        "every user another user's LLM persona: if it does as well as <i>llm</i>, the persona's content does not "
        "matter, only its presence.</p>",
        "<h3>Persona sources</h3>" + html_table(_persona_rows(doc)),
    ]
    rows = [{"arm": m, **{f"{c}@{K}": _mean_std(cells.get(f"{c}@{K}")) for c in COLUMNS}} for m, cells in ms.items()]
    out.append("<h3>Arms</h3>" + html_table(rows))
    if ms and all(NDCG in cells for cells in ms.values()):
        out.append(_arm_plot(ms))
    paired = [
        {"arm": p["arm"], "control": p["control"], "diff NDCG@10": p["diff_mean"], "relative": p.get("relative_gain"),
         "95% CI (seeds)": ("[" + ", ".join(fmt(x) for x in p["ci95"]) + "]") if p.get("ci95") else None,
         "p (paired t, seeds)": p.get("p_paired_t"), "p (Wilcoxon, users)": p["per_user"]["p_wilcoxon"],
         "95% CI (users)": "[" + ", ".join(fmt(x) for x in p["per_user"]["ci95"]) + "]"}
        for p in doc.get("paired", [])
    ]  # fmt: skip
    if paired:
        out.append("<h3>Paired comparisons</h3>" + html_table(paired))
    if doc.get("goal"):
        out.append("<h3>Goal</h3>" + html_table([{"field": k, "value": v} for k, v in doc["goal"].items()]))
    curve = doc.get("quota_curve_seed0")
    if curve:
        out.append("<h3>Hybrid (LLM personas): exploration quota, first seed</h3>" + _quota_plot(curve))
        cols = ["quota", NDCG, "ndcg_relative_change", f"novelty@{K}", f"exploration@{K}", f"coverage@{K}"]
        out.append(html_table([{c: r.get(c) for c in cols} for r in curve]))
    return "".join(out)
