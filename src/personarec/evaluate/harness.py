"""Full-ranking evaluation of several recommenders on the same users, with the protocol card.

For each model: rank the whole catalogue for every evaluated user in batches (the ranking working
memory of one batch is capped at ``rank_memory_mb``, so 10^5 items never hold all users at once),
keep the ``[n_users, max k]`` top-k matrix, and compute every metric family on it. Per-user metric
arrays are kept whole: the replayed A/B and the confidence intervals resample them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from personarec.data.protocol import ProtocolCard
from personarec.data.splits import Split
from personarec.errors import ConfigError, DataError
from personarec.evaluate.metrics import DEFAULT_METRICS, EvalData, Metric, UserBatch, build_metric
from personarec.evaluate.stats import bootstrap_ci
from personarec.items.space import ItemSpace
from personarec.recommend.base import Recommender
from personarec.recommend.pipeline import RankingPipeline

#: Columns shown in the printed "beyond accuracy" table, in order (at the primary k).
BEYOND = ("coverage", "gini", "ild", "novelty", "serendipity", "exploration")
ACCURACY = ("recall", "ndcg", "mrr", "hr")


def file_stem(name: str) -> str:
    """A model name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def primary_k(ks: Sequence[int]) -> int:
    """The cut-off used for one-number views (10 when evaluated, else the middle one)."""
    return 10 if 10 in ks else sorted(ks)[len(ks) // 2]


@dataclass
class EvalResult:
    """Everything an evaluation produced; ``save``/``load`` round-trip through ``RUN_DIR/eval``."""

    stage: str
    ks: tuple[int, ...]
    protocol: ProtocolCard
    users: np.ndarray  # int64 [n_eval] user indices, row order of every per-user table
    per_user: dict[str, pl.DataFrame]  # model -> user_idx + one column per per-user metric
    summary: pl.DataFrame  # one row per model: means of per-user metrics, global metrics, timings
    intervals: pl.DataFrame  # model, metric, mean, ci_low, ci_high (bootstrap over all users)
    tables: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)  # model -> name -> table
    recs: dict[str, np.ndarray] = field(default_factory=dict)  # model -> int32 [n_eval, max k]
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # configs of the metric families used
    confidence: float = 0.95
    ab: Any = None  # an ABResult when the replayed A/B ran
    personas: dict[str, dict[str, int]] = field(default_factory=dict)  # persona model -> {"llm": n, "fallback": m} lists

    @property
    def models(self) -> list[str]:
        return self.summary["model"].to_list()

    def metric_columns(self) -> list[str]:
        """Names of the per-user metrics (``ndcg@10`` ...)."""
        first = next(iter(self.per_user.values()), None)
        return [c for c in first.columns if c != "user_idx"] if first is not None else []

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        for sub in ("per_user", "tables", "recs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        card = self.protocol.model_dump()
        self.protocol.save(d / "protocol.json")
        # the summary parquet carries its protocol card in its schema metadata: it cannot travel alone
        table = self.summary.to_arrow()
        meta = dict(table.schema.metadata or {})
        meta[b"personarec.protocol"] = json.dumps(card).encode()
        meta[b"personarec.stage"] = self.stage.encode()
        pq.write_table(table.replace_schema_metadata(meta), d / "summary.parquet")
        self.intervals.write_parquet(d / "intervals.parquet")
        for model, frame in self.per_user.items():
            frame.write_parquet(d / "per_user" / f"{file_stem(model)}.parquet")
        for model, tables in self.tables.items():
            for name, frame in tables.items():
                (d / "tables" / file_stem(model)).mkdir(parents=True, exist_ok=True)
                frame.write_parquet(d / "tables" / file_stem(model) / f"{name}.parquet")
        for model, recs in self.recs.items():
            np.save(d / "recs" / f"{file_stem(model)}.npy", recs)
        np.save(d / "users.npy", self.users)
        doc = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "stage": self.stage,
            "ks": list(self.ks),
            "confidence": self.confidence,
            "protocol": card,
            "protocol_card": self.protocol.lines(),
            "models": self.models,
            "summary": self.summary.to_dicts(),
            "intervals": self.intervals.to_dicts(),
            "timings": self.timings,
            "personas": self.personas,
            "notes": self.notes,
            "metrics": self.metrics,
            "tables": {m: sorted(t) for m, t in self.tables.items()},
        }
        (d / "results.json").write_text(json.dumps(doc, indent=2, default=float))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> EvalResult:
        d = Path(directory)
        if not (d / "results.json").exists():
            raise DataError(f"no evaluation in {d} (expected results.json); run `personarec evaluate` first")
        doc = json.loads((d / "results.json").read_text())
        models = doc["models"]
        per_user = {m: pl.read_parquet(d / "per_user" / f"{file_stem(m)}.parquet") for m in models}
        tables = {
            m: {n: pl.read_parquet(d / "tables" / file_stem(m) / f"{n}.parquet") for n in names}
            for m, names in doc.get("tables", {}).items()
        }
        recs = {m: np.load(p) for m in models if (p := d / "recs" / f"{file_stem(m)}.npy").exists()}
        return cls(
            stage=doc["stage"],
            ks=tuple(doc["ks"]),
            protocol=ProtocolCard.model_validate(doc["protocol"]),
            users=np.load(d / "users.npy") if (d / "users.npy").exists() else np.array([], dtype=np.int64),
            per_user=per_user,
            summary=pl.read_parquet(d / "summary.parquet"),
            intervals=pl.read_parquet(d / "intervals.parquet"),
            tables=tables,
            recs=recs,
            timings=doc.get("timings", {}),
            personas=doc.get("personas", {}),
            notes=doc.get("notes", []),
            metrics=doc.get("metrics", []),
            confidence=doc.get("confidence", 0.95),
        )


def _resolve_metrics(
    metrics: Sequence[str | Metric] | None, metric_config: Mapping[str, Mapping[str, Any]] | None
) -> list[Metric]:
    out = []
    for m in metrics if metrics is not None else DEFAULT_METRICS:
        out.append(m if isinstance(m, Metric) else build_metric(m, dict((metric_config or {}).get(m, {}))))
    return out


#: Working bytes per (user, item) while ranking one batch: the float32 score block, the negated
#: copy and the int64 argpartition indices of ``recommend.base.top_k`` (measured: peak ~= 4x the
#: score block, see benchmarks/evaluate.py).
RANK_BYTES_PER_CELL = 16


def effective_batch_size(batch_size: int, n_items: int, rank_memory_mb: int) -> int:
    """Largest batch whose ranking working memory (``[batch, n_items]`` x 16 bytes) fits in ``rank_memory_mb``."""
    cap = max(1, (rank_memory_mb * 2**20) // (RANK_BYTES_PER_CELL * max(n_items, 1)))
    return max(1, min(batch_size, cap))


def evaluate_models(
    split: Split,
    models: Mapping[str, Recommender],
    stage: Literal["valid", "test"] = "test",
    ks: Sequence[int] = (5, 10, 20),
    items: ItemSpace | None = None,
    batch_size: int = 1024,
    *,
    metrics: Sequence[str | Metric] | None = None,
    metric_config: Mapping[str, Mapping[str, Any]] | None = None,
    exclude_seen: bool | None = None,
    rank_memory_mb: int = 256,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    show_progress: bool = True,
) -> EvalResult:
    """Rank the full catalogue for every user with a ``stage`` target, with each model, and score it.

    ``exclude_seen=None`` follows ``split.protocol.exclude_seen``; the card saved with the result
    always states what was actually done. Metric families that need an :class:`ItemSpace` are
    skipped, with a note, when ``items`` is None.
    """
    if not models:
        raise ConfigError("no models to evaluate")
    ks = tuple(sorted(set(int(k) for k in ks)))
    exclude = split.protocol.exclude_seen if exclude_seen is None else bool(exclude_seen)
    protocol = split.protocol.model_copy(update={"exclude_seen": exclude})
    data = EvalData.from_split(split, stage, ks, items)
    users = split.eval_users(stage)
    if len(users) == 0:
        raise DataError(f"no user has a {stage} target: nothing to evaluate")
    history = data.history
    kmax = min(max(ks), split.n_items)
    bs = effective_batch_size(batch_size, split.n_items, rank_memory_mb)

    notes: list[str] = []
    families = _resolve_metrics(metrics, metric_config)
    if items is None:
        skipped = [m.name for m in families if m.requires_items]
        if skipped:
            notes.append(f"skipped {', '.join(skipped)}: no item space (embeddings/clusters) was given")
        families = [m for m in families if not m.requires_items]
    if items is None and any(m.name == "coverage" for m in families):
        notes.append("per-cluster coverage skipped: no item space was given")
    notes.append(
        f"{len(users)} users with a {stage} target; top-{kmax} over all {split.n_items} items; "
        f"seen items {'excluded' if exclude else 'kept'}; ranking batch {bs} users"
    )

    per_user: dict[str, pl.DataFrame] = {}
    rows: list[dict[str, Any]] = []
    interval_rows: list[dict[str, Any]] = []
    tables: dict[str, dict[str, pl.DataFrame]] = {}
    all_recs: dict[str, np.ndarray] = {}
    timings: dict[str, dict[str, float]] = {}
    sources: dict[str, dict[str, int]] = {}

    from personarec.cli_common import progress

    for name, model in models.items():
        pipeline = RankingPipeline(model, exclude_seen=exclude)  # the lists the API serves, without reasons
        recs = np.empty((len(users), kmax), dtype=np.int32)
        columns: dict[str, list[np.ndarray]] = {}
        rank_s = metric_s = 0.0
        with progress() if show_progress else _NullProgress() as bar:
            task = bar.add_task(f"evaluate {name}", total=len(users))
            for start in range(0, len(users), bs):
                batch_users = users[start : start + bs]
                t0 = time.perf_counter()
                top = pipeline.top_items(batch_users, history, kmax, exclude_seen=exclude)
                t1 = time.perf_counter()
                recs[start : start + len(batch_users)] = top[:, :kmax]
                batch = UserBatch(batch_users, recs[start : start + len(batch_users)], data)
                for family in families:
                    for col, values in family.per_user(batch).items():
                        columns.setdefault(col, []).append(np.asarray(values, dtype=np.float64))
                metric_s += time.perf_counter() - t1
                rank_s += t1 - t0
                bar.advance(task, len(batch_users))
        t0 = time.perf_counter()
        user_cols = {col: np.concatenate(parts) for col, parts in columns.items()}
        global_vals: dict[str, float] = {}
        model_tables: dict[str, pl.DataFrame] = {}
        for family in families:
            global_vals.update(family.global_(recs, users, data))
            model_tables.update(family.tables(recs, users, data))
        metric_s += time.perf_counter() - t0

        per_user[name] = pl.DataFrame({"user_idx": users, **user_cols})
        if user_cols:
            matrix = np.column_stack(list(user_cols.values()))
            mean, lo, hi = bootstrap_ci(matrix, n_boot, confidence, seed)
            interval_rows += [
                {"model": name, "metric": col, "mean": float(mean[i]), "ci_low": float(lo[i]), "ci_high": float(hi[i])}
                for i, col in enumerate(user_cols)
            ]
        timings[name] = {
            "rank_s": round(rank_s, 4),
            "metrics_s": round(metric_s, 4),
            "users_per_s": round(len(users) / rank_s, 1) if rank_s > 0 else float("inf"),
        }
        rows.append({"model": name, "users": len(users), **{c: float(v.mean()) for c, v in user_cols.items()},
                     **global_vals, "rank_s": timings[name]["rank_s"]})  # fmt: skip
        tables[name] = model_tables
        all_recs[name] = recs
        if pipeline.persona_model:
            sources[name] = {"llm": pipeline.persona_sources["llm"], "fallback": pipeline.persona_sources["fallback"]}

    return EvalResult(
        stage=stage, ks=ks, protocol=protocol, users=users, per_user=per_user,
        summary=pl.DataFrame(rows), intervals=pl.DataFrame(interval_rows, schema=_INTERVAL_SCHEMA),
        tables=tables, recs=all_recs, timings=timings, notes=notes, personas=sources,
        metrics=[m.get_config() for m in families], confidence=confidence,
    )  # fmt: skip


_INTERVAL_SCHEMA = {"model": pl.Utf8, "metric": pl.Utf8, "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}


class _NullProgress:
    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


# -- printing ---------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4f}"
    return str(v)


def result_tables(result: EvalResult) -> list[Table]:
    """The rich tables printed for a result: accuracy at every k, beyond accuracy at the primary k."""
    summary = result.summary
    acc = Table(title=f"Accuracy ({result.stage}, full ranking)")
    acc.add_column("model", style="bold")
    acc_cols = [f"{m}@{k}" for m in ACCURACY[:3] for k in result.ks if f"{m}@{k}" in summary.columns]
    for c in acc_cols:
        acc.add_column(c, justify="right")
    k = primary_k(result.ks)
    beyond_cols = [f"{m}@{k}" for m in BEYOND if f"{m}@{k}" in summary.columns]
    beyond = Table(title=f"Beyond accuracy (@{k}) and timing")
    beyond.add_column("model", style="bold")
    for c in beyond_cols + ["rank_s", "users/s"]:
        beyond.add_column(c, justify="right")
    for row in summary.iter_rows(named=True):
        acc.add_row(row["model"], *[_fmt(row[c]) for c in acc_cols])
        t = result.timings.get(row["model"], {})
        beyond.add_row(
            row["model"], *[_fmt(row[c]) for c in beyond_cols], _fmt(t.get("rank_s")), _fmt(t.get("users_per_s"))
        )
    return [acc, beyond]


def print_result(result: EvalResult, console: Console | None = None) -> None:
    """Print the result tables *with* the protocol card (never one without the other)."""
    from personarec.cli_common import console as default_console

    out = console or default_console
    for table in result_tables(result):
        out.print(table)
    out.print(Panel("\n".join(result.protocol.lines()), title="Protocol card", expand=False))
    for note in result.notes:
        out.print(f"[dim]note: {note}[/]")
    for model, n in result.personas.items():
        style = "yellow" if not n.get("llm") else "dim"
        out.print(f"[{style}]{model}: {n.get('llm', 0)} lists from LLM personas, {n.get('fallback', 0)} from fallback personas[/]")
