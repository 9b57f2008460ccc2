"""Report section: do personas improve recommendations? (reads ``RUN_DIR/persona_recs.json``).

Written by ``benchmarks/distill.py``: SASRec vs persona-distilled SASRec vs persona retrieval vs the
hybrid, mean ± std over seeds, the goals, and the accuracy/novelty curve over the exploration
quota. Registered before the A/B section so the page reads: results -> personas -> A/B.
"""

from __future__ import annotations

from typing import Any

from personarec.evaluate.report import ReportContext, _plt, figure_html, fmt, html_table, section

K = 10
COLUMNS = ("ndcg", "recall", "novelty", "serendipity", "exploration", "coverage")


def _mean_std(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("n", 0) == 0:
        return "–"
    return f"{fmt(cell['mean'])} ± {fmt(cell['std'])}" if cell.get("n", 0) > 1 else fmt(cell["mean"])


def _quota_plot(curve: list[dict[str, Any]]) -> str:
    plt = _plt()
    q = [c["quota"] for c in curve]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(q, [c[f"ndcg@{K}"] for c in curve], "o-", color="#1f77b4")
    a1.set_xlabel("exploration quota (share of slots from explore clusters)")
    a1.set_ylabel(f"NDCG@{K}")
    a1.grid(alpha=0.3)
    a2.plot(q, [c.get(f"novelty@{K}") for c in curve], "o-", color="#d62728", label=f"novelty@{K}")
    a2.set_xlabel("exploration quota")
    a2.set_ylabel("novelty (bits)")
    a2.grid(alpha=0.3)
    if curve and f"exploration@{K}" in curve[0]:
        b = a2.twinx()
        b.plot(q, [c[f"exploration@{K}"] for c in curve], "s--", color="#2ca02c", label=f"exploration@{K}")
        b.set_ylabel("share outside history clusters")
        a2.legend(handles=a2.get_lines() + b.get_lines(), frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return figure_html(fig, "accuracy and novelty over the exploration quota")


@section("persona_recs", "Personas in recommendation", before="ab")
def _persona_recs(ctx: ReportContext) -> str | None:
    doc = ctx.read_json("persona_recs.json")
    if not doc:
        return None
    out = []
    p = doc.get("personas", {})
    seeds = sorted(doc.get("seeds", {}))
    out.append(
        f"<p>{p.get('n_users', '?')} users, personas from {p.get('stage', 'training events')}; "
        f"{fmt(100 * p.get('llm_share', 0.0), 1)}% written by the LLM, the rest are the deterministic "
        f"cluster-statistics fallback. Seeds: {', '.join(seeds)} (mean ± std). Full ranking, test targets.</p>"
    )
    rows = []
    for model, cells in doc.get("test_mean_std", {}).items():
        row: dict[str, Any] = {"model": model}
        for c in COLUMNS:
            row[f"{c}@{K}"] = _mean_std(cells.get(f"{c}@{K}"))
        rows.append(row)
    out.append(html_table(rows))
    if doc.get("goals"):
        out.append("<h3>Goals</h3>" + html_table([{"goal": k, "value": v} for k, v in doc["goals"].items()]))
    curve = doc.get("quota_curve")
    if curve:
        out.append("<h3>Exploration quota: accuracy vs novelty</h3>")
        out.append(_quota_plot(curve))
        cols = ["quota", f"ndcg@{K}", "ndcg_relative_change", f"novelty@{K}", "novelty_gain", "serendipity_gain", "within_goal"]
        out.append(html_table([{c: r.get(c) for c in cols} for r in curve]))
    return "".join(out)
