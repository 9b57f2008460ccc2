"""Cost model: cores (and money) to keep a persona fresh for 1 M, 100 M and 1 B users (part of
``benchmarks/scale.py --parts cost``; pure arithmetic over measured figures, runs in seconds).

Every input is read from a committed result file or measured here from the datasets; the few
that cannot be measured on this machine (a GPU server's tokens/s, prices) are flags, labelled as
assumptions in the output.

Measured inputs:
- **per-persona cost of each engine** on this CPU: ``persona_engine.json`` (compact engine,
  batched and single-sequence personas/s, prompt and generated tokens per persona; the JSON writer
  with the clustered prompt), ``personas.json`` (raw-title vs clustered prompt tokens; the
  teacher's tokens per persona), ``scale.json`` (the refresh fleet's personas/s through Redis, if
  measured). A variant with no run of its own (raw titles) is priced by the token model
  ``core-s = threads x (prompt tokens / prompt tok/s + generated tokens / decode tok/s)``, whose
  error on the two measured variants is reported next to it;
- **activity** from the datasets with second timestamps (ML-100k, ML-latest-small): events per
  user per active day, the refreshes those events cause under the default queue policy
  (debounce 2 s, max wait 15 s: a burst of events -> one refresh), and the peak-to-mean ratio of
  the hour-of-day event histogram (what a synchronous design must provision for).

The ladder (each step changes one thing, so its factor is that lever's gain):
  1. synchronous LLM-on-request, a teacher-class model on GPUs (the multi-step teacher's tokens);
  2. synchronous, the distilled 135M model writing JSON from raw titles (CPU);
  3. + clustered input (the JSON writer on the clustered prompt, measured);
  4. + the compact engine (the model chooses among grounded codes, single sequence, measured);
  5. asynchronous event-driven refresh: only users with new events, bursts coalesced, batched
     (measured), provisioned for the mean rate at a target utilisation instead of the peak.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
USERS = (1_000_000, 100_000_000, 1_000_000_000)
DAY_S = 86_400.0


def _json(name: str) -> dict:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def activity(dataset: str, debounce_s: float = 2.0, max_wait_s: float = 15.0) -> dict:
    """Events and coalesced refreshes per user per active day; hour-of-day peak-to-mean."""
    import polars as pl

    from personarec.data.registry import load_dataset

    frame = load_dataset(dataset).interactions.frame.sort(["user_id", "timestamp", "seq"])
    users = frame["user_id"].to_numpy()
    ts = frame["timestamp"].to_numpy().astype(np.int64)
    new_user = np.r_[True, users[1:] != users[:-1]]
    # a refresh fires at min(last event + debounce, first pending event + max_wait): a new job
    # starts after a gap longer than the debounce or once the current job's window has closed
    refreshes, first = 0, 0
    for i in range(len(ts)):
        if new_user[i] or ts[i] - ts[i - 1] > debounce_s or ts[i] - first > max_wait_s:
            refreshes += 1
            first = ts[i]
    days = frame.group_by("user_id").agg((pl.col("timestamp") // int(DAY_S)).n_unique().alias("days"))["days"].sum()
    hours = np.bincount(((ts % DAY_S) // 3600).astype(int), minlength=24)
    return {
        "dataset": dataset, "users": int(new_user.sum()), "events": int(len(ts)), "active_user_days": int(days),
        "events_per_user_active_day": round(len(ts) / days, 2),
        "refreshes_per_user_active_day": round(refreshes / days, 2),
        "coalescing_events_per_refresh": round(len(ts) / refreshes, 2),
        "hourly_peak_to_mean": round(float(hours.max() / hours.mean()), 2),
    }  # fmt: skip


def engines(scale: dict) -> dict:
    """Core-seconds per persona of each CPU variant (2-thread measurements -> x 2 cores)."""
    pe = _json("persona_engine.json")
    ml = pe["datasets"]["ml-100k"]
    raw = next(r for r in pe["raw_llama_cpp"] if r["weights"] == "Q8_0" and r["threads"] == 2)
    threads = ml["engine"]["threads"]
    tok = _json("personas.json")["tokens"]
    json_run = ml["levers"]["json_writer_v1"]

    def token_model(prompt: float, generated: float) -> float:
        return threads * (prompt / raw["prompt_tok_s"] + generated / raw["decode_tok_s"])

    compact_single = threads / ml["engine"]["raw_single_sequence_personas_per_s"]
    compact_batched = threads / ml["engine"]["personas_per_s"]
    json_clustered = threads / json_run["personas_per_s"]
    gen_json = json_run["generated_tokens_per_persona"]
    checks = {
        "compact_single": {"measured": round(compact_single, 3),
                           "token_model": round(token_model(ml["engine"]["prompt_tokens_per_persona"], ml["engine"]["generated_tokens_per_persona"]), 3)},
        "json_clustered": {"measured": round(json_clustered, 3), "token_model": round(token_model(tok["median_prompt_clustered"], gen_json), 3)},
    }  # fmt: skip
    out = {
        "json_raw_titles": {"core_s": round(token_model(tok["median_prompt_raw"], gen_json), 3), "source": "token model",
                            "prompt_tokens": tok["median_prompt_raw"], "generated_tokens": gen_json},
        "json_clustered": {"core_s": round(json_clustered, 3), "source": "persona_engine.json levers.json_writer_v1",
                           "prompt_tokens": tok["median_prompt_clustered"], "generated_tokens": gen_json},
        "compact_single": {"core_s": round(compact_single, 3), "source": "persona_engine.json engine (single sequence)",
                           "prompt_tokens": ml["engine"]["prompt_tokens_per_persona"], "generated_tokens": ml["engine"]["generated_tokens_per_persona"]},
        "compact_batched": {"core_s": round(compact_batched, 3), "source": "persona_engine.json engine (batch 16)"},
    }  # fmt: skip
    fleet = scale.get("fleet", {})
    if fleet.get("scaling"):
        best = max(fleet["scaling"], key=lambda r: r["personas_per_s"])
        out["compact_batched"] = {"core_s": round(fleet["cores"] / best["personas_per_s"], 3),
                                  "source": f"scale.json fleet ({best['workers']} workers through Redis, batch 16)"}  # fmt: skip
    return {"variants": out, "token_model_check": checks, "raw_llama_q8_0_2_threads": raw}


def model(gpu_output_tok_s: float, core_hour_usd: float, gpu_hour_usd: float, utilisation: float,
          requests_per_refresh: float, datasets: tuple[str, ...] = ("ml-100k", "ml-latest-small")) -> dict:  # fmt: skip
    scale = _json("scale.json")
    eng = engines(scale)
    v = eng["variants"]
    teacher = next(r for r in _json("personas.json")["runs"].values() if r.get("writer") == "teacher")
    acts = [activity(d) for d in datasets]
    refreshes = float(np.mean([a["refreshes_per_user_active_day"] for a in acts]))
    peak = float(np.max([a["hourly_peak_to_mean"] for a in acts]))
    requests = refreshes * requests_per_refresh
    # GPU: decode-bound, prompt (prefill) ignored: a lower bound on the teacher's cost
    teacher_gpu_s = teacher["output_tokens_per_persona"] / gpu_output_tok_s
    steps = [
        ("1 sync, teacher-class LLM on GPU (multi-step JSON)", "gpu", teacher_gpu_s, requests, peak),
        ("2 sync, distilled 135M, JSON from raw titles", "cpu", v["json_raw_titles"]["core_s"], requests, peak),
        ("3 + clustered input (JSON writer)", "cpu", v["json_clustered"]["core_s"], requests, peak),
        ("4 + compact engine (choose among grounded codes)", "cpu", v["compact_single"]["core_s"], requests, peak),
        ("5 async event-driven refresh, coalesced + batched (personarec)", "cpu", v["compact_batched"]["core_s"], refreshes, 1 / utilisation),
    ]
    table = []
    prev = None
    for name, unit, sec, per_day, provision in steps:
        row = {"step": name, "unit": "H100 GPUs" if unit == "gpu" else "CPU cores", "seconds_per_persona": round(sec, 4),
               "personas_per_user_day": round(per_day, 3), "provisioning_factor": round(provision, 2)}  # fmt: skip
        price = gpu_hour_usd if unit == "gpu" else core_hour_usd
        for n in USERS:
            units = n * per_day * sec * provision / DAY_S
            row[f"units_{n:.0e}"] = round(units, 1)
            row[f"usd_per_month_{n:.0e}"] = round(units * price * 24 * 30)
        if prev is not None:
            row["gain_vs_previous"] = round(prev / row["usd_per_month_1e+09"], 2)
        prev = row["usd_per_month_1e+09"]
        table.append(row)
    return {
        "activity": acts, "refreshes_per_user_day": round(refreshes, 3), "requests_per_user_day": round(requests, 3),
        "sync_peak_to_mean": peak, "engines": eng, "teacher_tokens_per_persona": {
            "input": teacher["input_tokens_per_persona"], "output": teacher["output_tokens_per_persona"]},
        "assumptions": {
            "gpu_output_tok_s": gpu_output_tok_s, "gpu_note": "not measured here: an 8B-class model on one H100 with vLLM (third-party figure, ~12.5k output tok/s); prefill ignored",
            "core_hour_usd": core_hour_usd, "gpu_hour_usd": gpu_hour_usd, "async_utilisation": utilisation,
            "requests_per_refresh": requests_per_refresh,
            "activity_note": "every user active every day at the datasets' per-active-day rates (an upper bound for daily actives)",
        },
        "table": table, "total_gain": round(table[0]["usd_per_month_1e+09"] / table[-1]["usd_per_month_1e+09"], 1),
    }  # fmt: skip


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    labels = [r["step"].split(" ", 1)[1] for r in result["table"]]
    for n, marker in zip(USERS, "os^", strict=True):
        ax.plot(range(len(labels)), [r[f"usd_per_month_{n:.0e}"] for r in result["table"]], marker=marker, label=f"{n:,} users")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), [f"{i + 1}" for i in range(len(labels))])
    ax.set_ylabel("USD per month (log)")
    ax.set_xlabel("; ".join(f"{i + 1}: {s[:38]}" for i, s in enumerate(labels)), fontsize=6, wrap=True)
    ax.set_title(f"Keeping personas fresh: {result['total_gain']:,.0f}x cheaper from step 1 to step 5")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
