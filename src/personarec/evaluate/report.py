"""One self-contained HTML report for a run directory (plots embedded as base64 PNG).

The report is a list of *sections* (:data:`SECTIONS`), each turning what it finds in the run
directory into an HTML fragment, or ``None`` to stay out of the page. Other stages add their own
results without touching this file::

    from personarec.evaluate.report import JsonFileSection, register_section
    register_section(JsonFileSection("distill", "Distillation", "distill/metrics.json"))

or with any object that has ``key``, ``title`` and ``render(ctx) -> str | None``. A section
reading ``personas/quality.json`` is registered already. Sections are rendered in list order;
``register_section(..., before="timings")`` places one explicitly.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from personarec.errors import DataError
from personarec.evaluate.ab import EXPLANATION, KIND_AB, KIND_PAIRED, ABResult
from personarec.evaluate.config import EVALS_DIR, eval_dir
from personarec.evaluate.harness import ACCURACY, BEYOND, EvalResult, primary_k

BAR_METRICS = ("ndcg", "recall", "mrr", "novelty", "ild", "serendipity", "exploration")
#: Beyond-accuracy metrics where more is plainly better (bold in tables). Novelty, diversity and
#: exploration describe a trade-off, so none of their values is marked "best".
HIGHER_IS_BETTER = ("coverage", "serendipity")
#: How the unnamed evaluation (``RUN_DIR/eval``) is labelled next to named ones (no name can look like it).
DEFAULT_LABEL = "(default)"


def find_evaluations(run_dir: str | Path) -> dict[str | None, Path]:
    """Every saved evaluation of a run: the unnamed one (key None) first, then the named ones by name."""
    found: dict[str | None, Path] = {}
    if (eval_dir(run_dir) / "results.json").exists():
        found[None] = eval_dir(run_dir)
    named = Path(run_dir) / EVALS_DIR
    if named.is_dir():
        found.update({d.name: d for d in sorted(named.iterdir()) if (d / "results.json").exists()})
    return found


def label(name: str | None) -> str:
    return DEFAULT_LABEL if name is None else name


# -- what sections read -----------------------------------------------------------------------------
@dataclass
class ReportContext:
    """The run directory and lazily loaded artifacts; sections read only what they need.

    ``eval_name`` picks the evaluation the detailed sections show; by default the unnamed one
    (``RUN_DIR/eval``), else the most recently written named one."""

    run_dir: Path
    eval_name: str | None = None
    evaluations: dict[str | None, Path] = field(init=False)
    eval_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.evaluations = find_evaluations(self.run_dir)
        if self.eval_name is not None and self.eval_name not in self.evaluations:
            known = ", ".join(label(n) for n in self.evaluations) or "none"
            raise DataError(f"no evaluation named {self.eval_name!r} in {self.run_dir} (found: {known})")
        if self.eval_name is None and None not in self.evaluations and self.evaluations:
            self.eval_name = max(self.evaluations, key=lambda n: (self.evaluations[n] / "results.json").stat().st_mtime)
        self.eval_dir = self.evaluations.get(self.eval_name, eval_dir(self.run_dir, self.eval_name))

    @cached_property
    def result(self) -> EvalResult | None:
        return EvalResult.load(self.eval_dir) if (self.eval_dir / "results.json").exists() else None

    @cached_property
    def ab(self) -> ABResult | None:
        return ABResult.load(self.eval_dir / "ab") if (self.eval_dir / "ab" / "ab.json").exists() else None

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return self.read_json("manifest.json") or {}

    def read_json(self, relpath: str) -> Any | None:
        p = self.run_dir / relpath
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}: not valid JSON ({exc})") from None

    def model_colors(self) -> dict[str, str]:
        import matplotlib

        names = self.result.models if self.result is not None else []
        cmap = matplotlib.colormaps["tab10"]
        return {m: matplotlib.colors.to_hex(cmap(i % 10)) for i, m in enumerate(names)}


class Section(Protocol):
    key: str
    title: str

    def render(self, ctx: ReportContext) -> str | None: ...


@dataclass
class FunctionSection:
    """A section made from a plain function ``ctx -> html | None``."""

    key: str
    title: str
    fn: Callable[[ReportContext], str | None]

    def render(self, ctx: ReportContext) -> str | None:
        return self.fn(ctx)


@dataclass
class JsonFileSection:
    """Shows a JSON file of the run directory as tables, when the file exists."""

    key: str
    title: str
    relpath: str
    intro: str = ""

    def render(self, ctx: ReportContext) -> str | None:
        data = ctx.read_json(self.relpath)
        if data is None:
            return None
        intro = f"<p>{html.escape(self.intro)}</p>" if self.intro else ""
        return f"{intro}<p class='src'>from <code>{html.escape(self.relpath)}</code></p>{json_to_html(data)}"


SECTIONS: list[Section] = []


def register_section(section: Section, *, before: str | None = None) -> Section:
    """Add (or replace, by ``key``) a report section; ``before`` = key of the section to precede."""
    for i, s in enumerate(SECTIONS):
        if s.key == section.key:
            SECTIONS.pop(i)
            break
    index = next((i for i, s in enumerate(SECTIONS) if s.key == before), len(SECTIONS)) if before else len(SECTIONS)
    SECTIONS.insert(index, section)
    return section


def section(key: str, title: str, *, before: str | None = None) -> Callable[[Callable[[ReportContext], str | None]], Any]:
    """Decorator form of :func:`register_section` for a function ``ctx -> html | None``."""

    def wrap(fn: Callable[[ReportContext], str | None]) -> Callable[[ReportContext], str | None]:
        register_section(FunctionSection(key, title, fn), before=before)
        return fn

    return wrap


# -- HTML and plotting helpers -----------------------------------------------------------------------
def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and abs(v) < 10 ** -digits:
            return f"{v:.3g}"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def num(v: Any) -> float:
    """A stored number as a float; None (a missing value) is NaN."""
    return float("nan") if v is None else float(v)


def num_text(v: Any, spec: str = ".4f") -> str:
    """A number formatted with ``spec``; None or NaN reads "NaN" instead of failing or hiding."""
    x = num(v)
    return "NaN" if math.isnan(x) else format(x, spec)


def ci_text(mean: Any, lo: Any, hi: Any) -> str:
    return f"{num_text(mean)} [{num_text(lo)}, {num_text(hi)}]"


def interval_issue(mean: Any, lo: Any, hi: Any) -> str | None:
    """Why an interval cannot be read as usual: "nan" (no finite mean or bound), "degenerate"
    (zero width) or "outside" (the mean beyond a bound by more than rounding); None when fine."""
    m, a, b = num(mean), num(lo), num(hi)
    if not all(math.isfinite(x) for x in (m, a, b)):
        return "nan"
    tol = 1e-9 * max(1.0, abs(m))
    if b - a <= tol:
        return "degenerate"
    return "outside" if m < a - tol or m > b + tol else None


_ISSUE_TEXT = {
    "nan": "NaN: {group} has no finite mean or interval for {metrics} (no users, or a value undefined for some "
    "user); drawn without error bars",
    "degenerate": "interval degenerate (zero width) for {group}: {metrics}. Every resample has the same mean: every "
    "user has the same value (one evaluated user, or the same list for all users)",
    "outside": "mean outside its interval for {group}: {metrics}; error bars clipped at 0",
}


def interval_notes(frame: pl.DataFrame, group_col: str) -> list[str]:
    """One note per (problem, model or arm) over an intervals table (columns ``metric, mean, ci_low, ci_high``)."""
    found: dict[tuple[str, str], list[str]] = {}
    for r in frame.iter_rows(named=True):
        issue = interval_issue(r["mean"], r["ci_low"], r["ci_high"])
        if issue is not None:
            found.setdefault((issue, str(r[group_col])), []).append(str(r["metric"]))
    return [_ISSUE_TEXT[issue].format(group=g, metrics=", ".join(ms)) for (issue, g), ms in found.items()]


def notes_html(notes: list[str]) -> str:
    return f"<ul class='notes'>{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul>" if notes else ""


def error_bars(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``[2, n]`` error-bar lengths for matplotlib: never negative (a mean a rounding error outside its
    interval made ``errorbar`` raise), 0 where anything is NaN."""
    bars = np.nan_to_num(np.stack([mean - lo, hi - mean]), nan=0.0, posinf=0.0, neginf=0.0)
    return np.maximum(bars, 0.0)


def html_table(rows: list[dict[str, Any]], columns: list[str] | None = None, highlight_best: list[str] | None = None) -> str:
    """A plain table; ``highlight_best`` columns get their maximum in bold."""
    if not rows:
        return "<p class='muted'>(empty)</p>"
    columns = columns or list(rows[0])
    best = {}
    for c in highlight_best or []:
        vals = [v for r in rows if isinstance(v := r.get(c), (int, float)) and not isinstance(v, bool) and not math.isnan(v)]
        if vals:
            best[c] = max(vals)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = " class='best'" if c in best and v == best[c] and len(rows) > 1 else ""
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f"<td{cls}{' data-num' if num else ''}>{fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def json_to_html(data: Any, depth: int = 0) -> str:
    """Render any JSON value readably: scalars inline, dicts as key/value tables, lists of records as tables."""
    if isinstance(data, dict):
        if all(not isinstance(v, (dict, list)) for v in data.values()):
            return html_table([{"field": k, "value": v} for k, v in data.items()])
        parts = []
        scalars = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
        if scalars:
            parts.append(html_table([{"field": k, "value": v} for k, v in scalars.items()]))
        for k, v in data.items():
            if isinstance(v, (dict, list)):
                tag = "h4" if depth == 0 else "h5"
                parts.append(f"<{tag}>{html.escape(str(k))}</{tag}>{json_to_html(v, depth + 1)}")
        return "".join(parts)
    if isinstance(data, list):
        if data and all(isinstance(x, dict) for x in data):
            cols = list(dict.fromkeys(k for x in data for k in x))
            flat = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in x.items()} for x in data]
            return html_table(flat, cols)
        return "<p>" + ", ".join(fmt(x) for x in data) + "</p>"
    return f"<p>{fmt(data)}</p>"


def figure_html(fig: Any, alt: str) -> str:
    """Embed a matplotlib figure as a base64 PNG ``<img>`` and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # layout is done by tight_layout; "tight" bbox would draw twice
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img class='plot' alt='{html.escape(alt)}' src='data:image/png;base64,{data}'/>"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold"})
    return plt


def metric_bars(frame: pl.DataFrame, group_col: str, groups: list[str], metrics: list[str], colors: dict[str, str], title: str) -> Any:
    """Grid of bar charts, one per metric, one bar per group with its CI as an error bar."""
    plt = _plt()
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.7 * nrows + 0.4), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        rows = {r[group_col]: r for r in frame.filter(pl.col("metric") == metric).iter_rows(named=True)}
        xs = [g for g in groups if g in rows]
        means, lo, hi = (np.array([num(rows[g][c]) for g in xs]) for c in ("mean", "ci_low", "ci_high"))
        heights = np.nan_to_num(means)  # a NaN mean: no bar (its note says why)
        ax.bar(range(len(xs)), heights, color=[colors.get(g, "#888") for g in xs], width=0.7)
        ax.errorbar(range(len(xs)), heights, yerr=error_bars(means, lo, hi), fmt="none", ecolor="#222", capsize=4, lw=1.2)
        ax.set_xticks(range(len(xs)), xs, rotation=30 if len(xs) > 3 else 0, ha="right" if len(xs) > 3 else "center")
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
        shown = np.concatenate([means, hi])
        top = float(shown[np.isfinite(shown)].max()) if np.isfinite(shown).any() else 1.0
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    # fixed margins instead of tight_layout: the grid is regular, and layout passes cost full draws
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - 0.55 / fig.get_figheight(), bottom=0.5 / fig.get_figheight(),
                        hspace=0.45, wspace=0.32)  # fmt: skip
    return fig


# -- built-in sections --------------------------------------------------------------------------------
def card_differences(docs: dict[str | None, dict[str, Any]]) -> list[dict[str, Any]]:
    """The protocol-card lines (and the held-out stage) that differ between evaluations: one row per
    field, one column per evaluation, in the card's own words ("seen items: kept in ranking")."""
    cards: dict[str | None, dict[str, str]] = {}
    for name, doc in docs.items():
        lines = [line.partition(":") for line in doc.get("protocol_card", [])]
        cards[name] = {"stage": str(doc.get("stage")), **{f.strip(): v.strip() for f, _, v in lines}}
    fields = list(dict.fromkeys(f for card in cards.values() for f in card))
    return [
        {"field": f, **{label(n): card.get(f, "–") for n, card in cards.items()}}
        for f in fields
        if len({card.get(f) for card in cards.values()}) > 1
    ]


@section("evaluations", "Evaluations compared")
def _evaluations(ctx: ReportContext) -> str | None:
    """Every evaluation of the run side by side (``evaluate --name``): the primary metric per model and
    evaluation, and what differs between their protocol cards."""
    if len(ctx.evaluations) < 2:
        return None
    docs = {n: json.loads((d / "results.json").read_text()) for n, d in ctx.evaluations.items()}
    overview, primary = [], {}
    for n, doc in docs.items():
        k = primary_k(doc["ks"])
        primary[n] = f"ndcg@{k}"
        users = {r.get("users") for r in doc.get("summary", [])}
        seen = doc.get("protocol", {}).get("exclude_seen")
        overview.append({"evaluation": label(n), "directory": str(ctx.evaluations[n].relative_to(ctx.run_dir)),
                         "stage": doc.get("stage"), "cut-offs": ", ".join(map(str, doc["ks"])),
                         "users": users.pop() if len(users) == 1 else "–",
                         "seen items": "–" if seen is None else ("excluded" if seen else "kept"),
                         "models": ", ".join(doc.get("models", [])), "created": doc.get("created")})  # fmt: skip
    models = list(dict.fromkeys(m for doc in docs.values() for m in doc.get("models", [])))
    cells = {(n, r["model"]): r for n, doc in docs.items() for r in doc.get("intervals", []) if r["metric"] == primary[n]}
    table = [
        {"model": m, **{f"{label(n)} ({primary[n]})": ci_text(c["mean"], c["ci_low"], c["ci_high"]) if (c := cells.get((n, m))) else "–"
                        for n in docs}}
        for m in models
    ]  # fmt: skip
    diffs = card_differences(docs)
    if diffs:
        said = "; ".join(f"{d['field']}: " + ", ".join(f"{v} in {e}" for e, v in d.items() if e != "field") for d in diffs)
        cards = (
            f"<p><b>The protocol cards differ</b> ({html.escape(said)}): numbers from evaluations with different "
            "cards are not comparable.</p>" + html_table(diffs)
        )
    else:
        cards = "<p>All protocol cards (and held-out stages) agree: the columns are comparable.</p>"
    return (
        f"<p>{len(docs)} evaluations of this run (<code>personarec evaluate --name NAME</code> writes "
        f"<code>RUN_DIR/{EVALS_DIR}/NAME</code>). The sections below show <b>{html.escape(label(ctx.eval_name))}</b>; "
        "<code>personarec report RUN_DIR --eval NAME</code> shows another.</p>"
        + html_table(overview)
        + f"<h3>Primary metric per model and evaluation: mean [{docs[ctx.eval_name].get('confidence', 0.95):.0%} CI]</h3>"
        + html_table(table)
        + "<h3>Protocol cards</h3>"
        + cards
    )


@section("protocol", "Protocol card")
def _protocol(ctx: ReportContext) -> str | None:
    res = ctx.result
    if res is None:
        card = ctx.read_json("split/protocol.json")
        if card is None:
            return "<p class='muted'>No evaluation and no split found in this run directory.</p>"
        from personarec.data.protocol import ProtocolCard

        lines = ProtocolCard.model_validate(card).lines()
        return "<p>No evaluation yet (run <code>personarec evaluate</code>).</p><pre class='card'>" + html.escape("\n".join(lines)) + "</pre>"
    info = (
        f"<p>Stage <b>{html.escape(res.stage)}</b>, cut-offs {', '.join(map(str, res.ks))}, "
        f"{len(res.users)} evaluated users, models: {', '.join(html.escape(m) for m in res.models)}. "
        "Every number in this report was computed under this card; two numbers are comparable only when their cards agree.</p>"
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in res.notes)
    return info + "<pre class='card'>" + html.escape("\n".join(res.protocol.lines())) + "</pre>" + (f"<ul class='notes'>{notes}</ul>" if notes else "")


def list_notes(res: EvalResult) -> list[str]:
    """What the lists themselves make degenerate: one user, or one list for every user."""
    notes = []
    if len(res.users) == 1:
        notes.append("one evaluated user: every interval has zero width and no difference can be significant")
    for m, recs in res.recs.items():
        if len(recs) > 1 and bool((recs == recs[0]).all()):
            notes.append(
                f"{m} gives all {len(recs)} evaluated users the same list: metrics of the list alone (novelty, "
                "diversity ...) are equal for every user, so their intervals have zero width"
            )
    return notes


@section("summary", "Results")
def _summary(ctx: ReportContext) -> str | None:
    res = ctx.result
    if res is None:
        return None
    cols = res.summary.columns
    acc = [f"{m}@{k}" for m in ACCURACY for k in res.ks if f"{m}@{k}" in cols]
    k = primary_k(res.ks)
    beyond = [f"{m}@{k}" for m in BEYOND if f"{m}@{k}" in cols]
    rows = res.summary.to_dicts()
    pct = f"{res.confidence:.0%}"
    ci = {(r["model"], r["metric"]): r for r in res.intervals.iter_rows(named=True)}
    ci_rows = []
    for m in res.models:
        row: dict[str, Any] = {"model": m}
        for c in [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}"]:
            if (m, c) in ci:
                r = ci[(m, c)]
                row[c] = ci_text(r["mean"], r["ci_low"], r["ci_high"])
        ci_rows.append(row)
    return (
        "<h3>Accuracy (full ranking)</h3>"
        + html_table(rows, ["model", "users", *acc], highlight_best=acc)
        + f"<h3>Beyond accuracy (@{k})</h3>"
        + html_table(rows, ["model", *beyond], highlight_best=[c for c in beyond if c.split("@")[0] in HIGHER_IS_BETTER])
        + "<p class='muted'>Gini: lower = recommendations spread more evenly over the catalogue. "
        "Serendipity counts relevant items outside both the popularity top list and the user's history clusters "
        "(normalised like recall); exploration is the share of recommended items outside the user's history clusters.</p>"
        + f"<h3>Accuracy @{k} with {pct} bootstrap confidence intervals (all evaluated users)</h3>"
        + html_table(ci_rows)
        + notes_html(list_notes(res) + interval_notes(res.intervals, "model"))
    )


@section("bars", "Metrics with confidence intervals")
def _bars(ctx: ReportContext) -> str | None:
    res = ctx.result
    if res is None or res.intervals.height == 0:
        return None
    k = primary_k(res.ks)
    colors = ctx.model_colors()
    metrics = [f"{m}@{k}" for m in BAR_METRICS if f"{m}@{k}" in set(res.intervals["metric"])]
    if not metrics:
        return None
    pct = f"{res.confidence:.0%}"
    out = figure_html(
        metric_bars(res.intervals, "model", res.models, metrics, colors, f"Offline, all {len(res.users)} users: mean and {pct} bootstrap CI"),
        "metric bars, all users",
    )
    ab = ctx.ab
    arm_metrics = [m for m in metrics if m in set(ab.arm_metrics["metric"])] if ab is not None else []
    if ab is not None and arm_metrics:
        sizes = {r["arm"]: r["users"] for r in ab.arm_metrics.iter_rows(named=True)}
        out += figure_html(
            metric_bars(ab.arm_metrics, "arm", ab.arms, arm_metrics, colors,
                        f"Replayed A/B: one random arm per model ({', '.join(f'{a}: {sizes.get(a, 0)}' for a in ab.arms)} users), {pct} CI"),
            "metric bars per A/B arm",
        )  # fmt: skip
        out += notes_html(["A/B arm " + n for n in interval_notes(ab.arm_metrics.filter(pl.col("metric").is_in(arm_metrics)), "arm")])
    return out


@section("tradeoff", "Accuracy vs novelty")
def _tradeoff(ctx: ReportContext) -> str | None:
    res = ctx.result
    k = primary_k(res.ks) if res is not None else 10
    if res is None or f"novelty@{k}" not in res.summary.columns:
        return None
    ci = {(r["model"], r["metric"]): r for r in res.intervals.iter_rows(named=True)}
    points = {m: (ci.get((m, f"novelty@{k}")), ci.get((m, f"ndcg@{k}"))) for m in res.models}
    drawn = {m: xy for m, xy in points.items() if all(r is not None and math.isfinite(num(r["mean"])) for r in xy)}
    skipped = [m for m in res.models if m not in drawn]
    note = notes_html([f"NaN: not drawn (no finite novelty@{k} and ndcg@{k} mean): {', '.join(skipped)}"] if skipped else [])
    if not drawn:
        return note
    plt = _plt()
    colors = ctx.model_colors()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for m, (x, y) in drawn.items():
        xerr, yerr = (error_bars(*(np.array([num(r[c])]) for c in ("mean", "ci_low", "ci_high"))) for r in (x, y))
        ax.errorbar(x["mean"], y["mean"], xerr=xerr, yerr=yerr, fmt="o", ms=9, color=colors[m], capsize=3, label=m)
        ax.annotate(m, (x["mean"], y["mean"]), textcoords="offset points", xytext=(8, 6), fontsize=9)
    ax.set_xlabel(f"novelty@{k} (mean self-information, bits; higher = less popular items)")
    ax.set_ylabel(f"NDCG@{k}")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.2)
    ax.legend(frameon=False, fontsize=8, loc="best")
    fig.tight_layout()
    return "<p>Up = more accurate, right = less popular (more novel) items. Error bars: bootstrap CIs over users.</p>" + figure_html(fig, "accuracy vs novelty") + note


@section("clusters", "Per-cluster coverage")
def _clusters(ctx: ReportContext) -> str | None:
    res = ctx.result
    if res is None:
        return None
    frames = {m: t["cluster_coverage"] for m, t in res.tables.items() if "cluster_coverage" in t and t["cluster_coverage"].height}
    if not frames:
        return "<p class='muted'>No item space (clusters) was given to the evaluation, so per-cluster coverage was not computed.</p>"
    plt = _plt()
    colors = ctx.model_colors()
    base = next(iter(frames.values()))
    order = np.argsort(-base["target_share"].to_numpy(), kind="stable") if "target_share" in base.columns else np.arange(base.height)
    n = len(order)
    k = int(base["k"][0]) if "k" in base.columns else primary_k(res.ks)
    width = min(16.0, max(8.0, 0.18 * n))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(width, 7.6 if n <= 100 else 6.4), sharex=True)
    x = np.arange(n)
    for m, f in frames.items():
        ax1.plot(x, f["coverage"].to_numpy()[order], marker="o", ms=3, lw=1.2, color=colors.get(m), label=m)
        ax2.plot(x, f["rec_share"].to_numpy()[order], marker="o", ms=3, lw=1.2, color=colors.get(m), label=m)
    if "target_share" in base.columns:
        ax2.bar(x, base["target_share"].to_numpy()[order], color="#bbb", label="held-out targets", width=0.8)
    ax2.plot(x, base["catalogue_share"].to_numpy()[order], ls="--", color="#555", lw=1, label="catalogue")
    ax1.set_ylabel(f"share of cluster's items\nrecommended (top {k})")
    ax1.set_ylim(0, 1.05)
    ax2.set_ylabel("share of recommendation slots")
    ax1.legend(frameon=False, fontsize=8, ncol=min(8, len(frames)), loc="lower right", bbox_to_anchor=(1.0, 1.0))
    ax2.legend(frameon=False, fontsize=8, ncol=min(8, len(frames) + 2), loc="lower right", bbox_to_anchor=(1.0, 1.0))
    names = base["name"].to_list()
    if n <= 100:
        ax2.set_xticks(x, [names[i][:26] for i in order], rotation=90, fontsize=6.5 if n > 40 else 8)
        ax2.set_xlim(-0.7, n - 0.3)
    ax2.set_xlabel("fine clusters, sorted by share of held-out targets")
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    rows = []
    for m, f in frames.items():
        cov = f["coverage"].to_numpy()
        rows.append({"model": m, "clusters": n, "clusters never recommended": int((f["covered"].to_numpy() == 0).sum()),
                     "median cluster coverage": float(np.median(cov)), "min cluster coverage": float(cov.min())})  # fmt: skip
    return (
        f"<p>Fine clusters of the item space, sorted by their share of the held-out targets (grey bars). Top: share of "
        f"each cluster's items that some user gets in the top {k}; bottom: where the recommendation slots go, against "
        "where users actually went next and the catalogue's own share.</p>"
        + figure_html(fig, "per-cluster coverage")
        + html_table(rows)
    )


@section("ab", "Replayed A/B test and paired comparison")
def _ab(ctx: ReportContext) -> str | None:
    ab = ctx.ab
    if ab is None:
        return None
    pct = f"{ab.confidence:.0%}"
    parts = [
        f"<p>Control arm: <b>{html.escape(ab.control)}</b>. Two comparisons answer two questions; "
        f"p-values are Holm-adjusted across arms per metric; <b>*</b> = significant at {1 - ab.confidence:.2g}.</p><ul>"
        + "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in EXPLANATION.items())
        + "</ul>"
    ]
    order = {m: i for i, m in enumerate(ab.config.get("metrics", []))}
    for kind in (KIND_AB, KIND_PAIRED):
        rows = []
        chosen = ab.comparisons.filter(pl.col("kind") == kind).to_dicts()
        chosen.sort(key=lambda r: (order.get(r["metric"], len(order)), ab.arms.index(r["model"]) if r["model"] in ab.arms else 0))
        for r in chosen:
            rows.append({
                "metric": r["metric"], "model": r["model"], "users (model / control)": f"{r['n_model']} / {r['n_control']}",
                "model mean": r["model_mean"], "control mean": r["control_mean"], "difference": r["diff"],
                f"{pct} CI": f"[{num_text(r['ci_low'], '+.4f')}, {num_text(r['ci_high'], '+.4f')}]", "test": r["test"],
                "p": num_text(r["p_value"], ".3g"), "p (Holm)": num_text(r["p_holm"], ".3g"), "sig.": "*" if r["significant"] else "",
            })  # fmt: skip
        parts.append(f"<h3>{html.escape(kind)}</h3>" + html_table(rows))
    return "".join(parts)


@section("personas_in_loop", "Personas in the loop")
def _personas_in_loop(ctx: ReportContext) -> str | None:
    """Which persona each persona model's evaluated lists were built from: a result that rests on
    fallback personas says so here."""
    res = ctx.result
    if res is None or not res.personas:
        return None
    rows = []
    for model, n in res.personas.items():
        total = n.get("llm", 0) + n.get("fallback", 0)
        rows.append({"model": model, "lists with an LLM persona": n.get("llm", 0),
                     "lists with the fallback persona": n.get("fallback", 0),
                     "LLM share": f"{n.get('llm', 0) / total:.0%}" if total else "-"})  # fmt: skip
    note = (
        "<p>Each evaluated user's list is built from their stored LLM persona when it describes a prefix of "
        "the history being ranked (never a later one), else from the deterministic cluster-statistics "
        "fallback persona.</p>"
    )
    if all(r["lists with an LLM persona"] == 0 for r in rows):
        note += "<p><b>Every list used the fallback persona: generate personas before training and evaluating.</b></p>"
    return note + html_table(rows)


@section("timings", "Timings")
def _timings(ctx: ReportContext) -> str | None:
    res = ctx.result
    rows = []
    if res is not None:
        for m, t in res.timings.items():
            rows.append({"model": m, "ranking (s)": t.get("rank_s"), "metrics (s)": t.get("metrics_s"), "users / s": t.get("users_per_s")})
    stages = [{"stage": k, "seconds": v.get("seconds"), "finished": v.get("finished")} for k, v in ctx.manifest.get("stages", {}).items()]
    if not rows and not stages:
        return None
    out = ""
    if rows:
        out += "<h3>Evaluation (full ranking, this machine)</h3>" + html_table(rows)
    if stages:
        out += "<h3>Pipeline stages (manifest)</h3>" + html_table(stages)
    return out


register_section(
    JsonFileSection(
        "personas", "Persona quality", "personas/quality.json",
        intro="Quality of the generated user personas (grounding, coverage of history clusters, explore topics).",
    )  # fmt: skip
)


# -- the page -------------------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2329}
header{background:#1f3a5f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 32px;background:#e8edf3;font-size:13px}nav a{margin-right:14px;color:#1f3a5f;text-decoration:none}
main{max-width:1280px;margin:0 auto;padding:8px 32px 40px}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:14px 22px;margin:18px 0}
h2{font-size:18px;margin:4px 0 10px;color:#1f3a5f}h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border-bottom:1px solid #e3e7ec;padding:4px 10px;text-align:left;white-space:nowrap}
th{background:#f0f3f7;font-weight:600}td[data-num]{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:700;color:#0b6b2f}.scroll{overflow-x:auto}
pre.card{background:#0f1c2b;color:#d8e6f3;padding:12px 16px;border-radius:6px;font-size:12.5px;overflow-x:auto}
img.plot{max-width:100%;height:auto;display:block;margin:8px 0}
.muted,.src{color:#65717e;font-size:12.5px}ul.notes{font-size:12.5px;color:#4a5561}
footer{color:#65717e;font-size:12px;text-align:center;padding:12px}
"""


def render_html(ctx: ReportContext, sections: list[Section] | None = None) -> str:
    """The full page: every section that has something to show, in order."""
    rendered = []
    for s in sections if sections is not None else SECTIONS:
        body = s.render(ctx)
        if body:
            rendered.append((s, body))
    nav = "".join(f"<a href='#{html.escape(s.key)}'>{html.escape(s.title)}</a>" for s, _ in rendered)
    blocks = "".join(
        f"<section id='{html.escape(s.key)}'><h2>{html.escape(s.title)}</h2>{body}</section>" for s, body in rendered
    )
    res = ctx.result
    dataset = res.protocol.dataset if res is not None else ctx.manifest.get("config", {}).get("data", {}).get("dataset", "")
    shown = f" · evaluation {html.escape(ctx.eval_name)}" if ctx.eval_name is not None else ""
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    subtitle = f"{html.escape(str(dataset))} · run {html.escape(str(ctx.run_dir))}{shown} · generated {generated}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>personarec report · {html.escape(str(dataset))}</title><style>{CSS}</style></head><body>"
        f"<header><h1>personarec report</h1><p>{subtitle}</p></header><nav>{nav}</nav><main>{blocks}</main>"
        "<footer>self-contained: every plot is embedded; no network access needed</footer></body></html>"
    )


def write_report(
    run_dir: str | Path, output: str | Path | None = None, sections: list[Section] | None = None, eval_name: str | None = None
) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``output``) from whatever the run directory holds.

    ``sections`` defaults to every registered section (:data:`SECTIONS`); ``eval_name`` picks the
    evaluation the detailed sections show (see :class:`ReportContext`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory not found: {run_dir}")
    path = Path(output) if output is not None else run_dir / "report.html"
    page = render_html(ReportContext(run_dir, eval_name), sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# sections that live in their own modules register themselves on import
from personarec.evaluate import persona_section  # noqa: E402, F401
