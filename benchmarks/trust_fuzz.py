"""Hostile input for every data loader (issue 12, part 5) -> key "fuzz" of benchmarks/results/trust.json.

    .venv/bin/python benchmarks/trust_fuzz.py [--examples N]

Runs the hypothesis strategies of ``tests/data/loader_fuzz.py`` (the same ones
``tests/data/test_fuzz_loaders.py`` runs in CI) outside pytest, ``N`` derandomized examples per
target, and counts per loader what happened to each case: ``ok`` (a well-formed dataset, and the
exact events when the case knows them), ``clear_error`` (a one-line DataError naming the file, and
the line of the injected bad row) or a bug (any other exception, or the property failing), listed
with its type and message. Bugs are counted, not raised, so every case runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))  # tests.data.loader_fuzz: the strategies and the property

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from tests.data.loader_fuzz import TARGETS, Case, check  # noqa: E402


def _run_target(loader: str, strategy: Any, n: int) -> dict[str, Any]:
    """``n`` drawn cases of one target: outcome counts and the distinct bugs."""
    outcomes: Counter[str] = Counter()
    bugs: dict[tuple[str, str], dict[str, Any]] = {}

    @settings(
        max_examples=n, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )  # fmt: skip
    @given(case=strategy)
    def run(case: Case) -> None:
        try:
            outcomes[check(loader, case)] += 1
        except Exception as exc:  # noqa: BLE001 - a bug is counted and listed, the run goes on
            outcomes["bug"] += 1
            message = str(exc).splitlines()[0][:200] if str(exc) else ""
            key = (type(exc).__name__, message[:80])
            entry = bugs.setdefault(key, {
                "type": key[0], "message": message, "count": 0, "options": case.options,
                "files": {k: repr(v[:300]) for k, v in case.files.items()},  # the first case, to reproduce it
            })  # fmt: skip
            entry["count"] += 1

    run()
    return {
        "tried": sum(outcomes.values()), "ok": outcomes["ok"], "clear_error": outcomes["clear_error"],
        "bugs": list(bugs.values()),
    }  # fmt: skip


def fuzz_summary(n: int = 100) -> dict[str, Any]:
    """Per loader: cases tried, loaded ok, refused with a clear error, and bugs (with per-target detail)."""
    out: dict[str, Any] = {}
    for target, (loader, strategy) in TARGETS.items():
        res = _run_target(loader, strategy, n)
        agg = out.setdefault(loader, {"tried": 0, "ok": 0, "clear_error": 0, "bugs": [], "targets": {}})
        for key in ("tried", "ok", "clear_error"):
            agg[key] += res[key]
        agg["bugs"] += [dict(b, target=target) for b in res["bugs"]]
        agg["targets"][target] = {k: res[k] for k in ("tried", "ok", "clear_error")} | {"bugs": len(res["bugs"])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=200, help="drawn cases per target (default 200)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    loaders = fuzz_summary(args.examples)
    from tests.data.test_fuzz_loaders import FUZZ_CASES, MAX_EXAMPLES, REGRESSION_EXAMPLES

    result = {
        "what": "hypothesis fuzzing of every data loader: structured files with one injected bad row, "
        "and byte-mutated / random files; property = well-formed dataset or one-line DataError naming file (and line)",
        "examples_per_target": args.examples,
        "derandomized": True,
        "loaders": loaders,
        "total": {k: sum(v[k] for v in loaders.values()) for k in ("tried", "ok", "clear_error")}
        | {"bugs": sum(len(v["bugs"]) for v in loaders.values())},
        "ci": {
            "test": "tests/data/test_fuzz_loaders.py", "cases": FUZZ_CASES, "drawn_per_target": MAX_EXAMPLES,
            "regression_examples": REGRESSION_EXAMPLES,
        },  # fmt: skip
        "seconds": round(time.perf_counter() - t0, 1),
    }
    from trust import update

    out = RESULTS / "trust.json"
    update("fuzz", result, out=out, merge=True)  # the events-API figures of `trust.py --parts fuzz` stay
    for loader, v in loaders.items():
        print(f"{loader:8s} tried {v['tried']:5d}  ok {v['ok']:5d}  clear_error {v['clear_error']:5d}  bugs {len(v['bugs'])}")
    print(f"wrote {out} (key 'fuzz') in {result['seconds']} s")


if __name__ == "__main__":
    main()
