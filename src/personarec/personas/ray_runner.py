"""Batch persona generation on a Ray cluster: Ray Data streams users through an actor pool of engines.

The local runner (:func:`personarec.personas.generate.generate_personas`) uses one process; this one
uses as many machines as the cluster has, with the same engine and the same accounting:

- the driver plans: which users still need a persona (resume: the same check as the local runner,
  reading only history lengths), cut into the engine's forward-pass batches exactly as the local
  runner cuts them, so greedy decoding writes the same personas;
- one dataset row is one batch; ``map_batches`` hands rows to a fixed pool of
  :class:`PersonaActor` s, each of which builds its backend once (one model load per actor) and runs
  :meth:`PersonaEngine.personas_for`;
- outcomes stream back to the driver, which stores each persona and counts it
  (:class:`ReportRecorder`), so the store has a single writer and a user is written once. An actor
  that dies mid-batch is restarted and its batch retried by Ray (Ray Data's actor pools default to
  unlimited restarts and task retries); the dead attempt never returned, so nothing of it is stored.
  A stopped job keeps what reached the store and resumes from there.

What every actor needs (split, item space, explore prior) is put once in Ray's object store, so
actors on other nodes need no shared filesystem; the driver holds that object for the whole job,
which is what lets a restarted actor be built again (Ray warns about it at start). With an
``openai`` backend each actor is a client of an OpenAI-compatible server fleet (vLLM, llama.cpp
server) with up to ``personas.concurrency`` of a batch's requests in flight.
The next step for GPU clusters is Ray Data's own LLM processor (``ray.data.llm``, vLLM engines as
actors): it would replace the per-actor backend with continuous batching on GPUs; the planning,
resume and single-writer store here would stay.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.personas.config import PersonasConfig, RayConfig
from personarec.personas.generate import (
    GenerationReport,
    PersonaEngine,
    ReportRecorder,
    UserOutcome,
    batches,
    pending_users,
    resolve_users,
)
from personarec.personas.history import ContextBuilder
from personarec.personas.schema import Persona
from personarec.personas.store.base import PersonaStore
from personarec.personas.transitions import TransitionStats

OUTCOME_FIELDS = (
    "attempts", "outputs", "valid_outputs", "first_try_valid", "duplicates_removed", "summary_replaced",
    "demographic_filtered",
)  # fmt: skip


def outcome_row(user_id: str, out: UserOutcome, engine: PersonaEngine) -> str:
    """One outcome as a JSON string (what crosses from an actor to the driver)."""
    row: dict[str, Any] = {f: getattr(out, f) for f in OUTCOME_FIELDS}
    row.update(
        user_id=user_id, status=out.status, errors=out.errors, format=engine.format,
        model=engine.backend.model_name,
        prefix_tokens=len(engine.compact.prefix) if engine.compact is not None else 0,
        persona=out.persona.model_dump(mode="json") if out.persona is not None else None,
    )  # fmt: skip
    return json.dumps(row)


def outcome_from_row(row: dict[str, Any]) -> UserOutcome:
    persona = Persona.model_validate(row["persona"]) if row["persona"] is not None else None
    return UserOutcome(persona, row["status"], errors=list(row["errors"]), **{f: row[f] for f in OUTCOME_FIELDS})


class PersonaActor:
    """A persona engine living in a Ray actor: built once, then called with batches of user batches."""

    def __init__(self, shared: list, config: dict[str, Any], seed: int) -> None:
        import ray

        from personarec.personas.backends.base import build_backend

        split, space, transitions = ray.get(shared[0])
        pc = PersonasConfig.model_validate(config)
        backend_config = dict(pc.backend_config)
        if pc.backend == "embedded" and not backend_config.get("n_threads"):
            backend_config["n_threads"] = max(1, int(pc.ray.cpus_per_actor))  # as many threads as CPUs reserved
        backend = build_backend(pc.backend, backend_config)
        self.engine = PersonaEngine(split, space, backend, pc, transitions=transitions, seed=seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, chunks = [], []
        for chunk, users in zip(batch["chunk"], batch["users"], strict=True):
            contexts = [self.engine.context(int(u)) for u in users]
            for ctx, out in zip(contexts, self.engine.personas_for(contexts), strict=True):
                rows.append(outcome_row(ctx.user_id, out, self.engine))
                chunks.append(int(chunk))
        return {"outcome": np.array(rows, dtype=object), "chunk": np.array(chunks), "pid": np.full(len(rows), os.getpid())}


def connect(options: RayConfig) -> bool:
    """Join (or start) the Ray cluster; True when this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
    if options.address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(np.ceil(options.actors * options.cpus_per_actor)))
    else:
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {options.address!r}: {exc}") from exc
    return True


def generate_personas_ray(
    split: Split,
    space: ItemSpace,
    users: Sequence[int | str] | int | None,
    store: PersonaStore,
    config: PersonasConfig | None = None,
    *,
    transitions: TransitionStats | None = None,
    seed: int = 0,
    show_progress: bool = True,
    stop_after: int | None = None,
) -> GenerationReport:
    """Generate, validate and store personas for ``users`` on Ray; the report of the local runner.

    ``stop_after``: stop (as a user pressing Ctrl-C would) once that many users are stored; what
    was stored stays and a later call resumes. The backend is built inside the actors, from config.
    """
    import ray

    config = config or PersonasConfig()
    contexts = ContextBuilder(split, space, config, transitions=transitions)
    run_seed = config.seed if config.seed is not None else seed
    user_idx = resolve_users(split, users, run_seed, contexts.stage)
    recorder = ReportRecorder(store, config, len(user_idx), backend=config.backend)
    report = recorder.report
    pending, report.skipped = pending_users(contexts, user_idx, store, config.retry_fallbacks)
    if not pending:
        return recorder.finish()
    chunks = batches(pending, config.batch_size)
    started = connect(config.ray)
    from ray.data import ActorPoolStrategy, DataContext

    from personarec.cli_common import progress

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines drown the bar
    DataContext.get_current().enable_progress_bars = False  # one bar: ours, counted in users
    bar = progress() if show_progress else None
    task = bar.add_task(f"personas on Ray ({config.ray.actors} actors, {config.backend})", total=len(pending)) if bar else None
    shared = [ray.put((split, space, contexts.transitions))]
    dataset = ray.data.from_items([{"chunk": i, "users": c} for i, c in enumerate(chunks)], override_num_blocks=len(chunks))
    outcomes = dataset.map_batches(
        PersonaActor,
        batch_size=1,
        compute=ActorPoolStrategy(size=min(config.ray.actors, len(chunks))),
        num_cpus=config.ray.cpus_per_actor,
        fn_constructor_kwargs={"shared": shared, "config": config.model_dump(mode="json"), "seed": run_seed},
    )
    pids: set[int] = set()
    done_chunks: set[int] = set()
    if bar:
        bar.start()
    try:
        for row in outcomes.iter_rows():
            data = json.loads(row["outcome"])
            pids.add(int(row["pid"]))
            done_chunks.add(int(row["chunk"]))
            report.model = report.model or data["model"]
            report.format, report.prefix_tokens = data["format"], data["prefix_tokens"]
            recorder.record(data["user_id"], outcome_from_row(data))
            if bar:
                bar.advance(task)
            if stop_after is not None and len(report.user_ids) >= stop_after:
                break
    finally:
        if bar:
            bar.stop()
        del outcomes
        if started:
            ray.shutdown()
    report.engine, report.actors = "ray", len(pids)
    report.batches = len(done_chunks) if report.format == "compact" else 0
    return recorder.finish()
