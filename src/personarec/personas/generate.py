"""Batch persona generation: contexts -> writer (with retries) -> validation -> store, or the fallback.

:class:`PersonaEngine` holds what every user shares (histories in CSR form, titles, transition
statistics, the prompt builder and the writer) and turns one user into a :class:`Persona`; it is
also what the serving refresh worker can call for a live history (:meth:`PersonaEngine.persona_for`).
:func:`generate_personas` runs it over many users: thread pool (remote backends overlap their
latency), progress bar, resumable (a user whose stored persona already has this history version is
skipped), and it never dies on one user: after ``1 + retries`` failed attempts (timeout/HTTP error,
invalid JSON, refusal, schema or grounding violation) the user gets the deterministic fallback
persona (``provenance.fallback = True``) and is listed in the report's failures.

Every LLM-written persona passes the demographic filter (``personas.demographic_filter``,
:mod:`personarec.personas.privacy`) before it leaves the engine, so the batch runners (local, Ray)
and the serving refresh workers, which all call :meth:`PersonaEngine.personas_for` /
:meth:`PersonaEngine.persona_for`, store only screened personas; what it did is counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from personarec.data.splits import Split
from personarec.errors import ConfigError, DataError
from personarec.items.space import ItemSpace
from personarec.personas.backends.base import Generation, LLMBackend, LLMError
from personarec.personas.compact import COMPACT_VERSION, CompactWriter
from personarec.personas.config import PersonasConfig
from personarec.personas.fallback import fallback_persona
from personarec.personas.history import ContextBuilder, PersonaContext, UserHistory
from personarec.personas.privacy import Finding, lexicon, screen, source_text
from personarec.personas.prompts import PROMPT_VERSION, PromptBuilder, domain_of
from personarec.personas.schema import ExploreTopic, Interest, Persona, Provenance
from personarec.personas.summary import check_summary, compose_reason, compose_summary
from personarec.personas.teacher import Draft, OutputError, build_writer
from personarec.personas.transitions import TransitionStats
from personarec.personas.store.base import PersonaStore


class Failure(BaseModel):
    user_id: str
    errors: list[str]
    fallback: bool = Field(description="a fallback persona was stored instead")


class GenerationReport(BaseModel):
    """What a batch did; written to ``RUN_DIR/personas/generation.json``."""

    backend: str
    model: str
    writer: str
    hindsight: bool
    prompt_mode: str
    prompt_version: str = PROMPT_VERSION
    requested: int = 0
    generated: int = 0  # valid LLM personas stored
    fallbacks: int = 0
    skipped: int = 0  # already up to date in the store (resumed)
    unusable: int = 0  # users no persona can be built for (no history / every cluster seen)
    attempts: int = 0
    outputs: int = 0  # attempts where the model produced text (not an LLM error)
    valid_outputs: int = 0
    first_try_valid: int = 0
    duplicates_removed: int = 0  # repeated topics dropped from otherwise valid answers
    format: str = "json"
    engine: str = "local"  # the batch runner: local | ray
    actors: int = 0  # ray: actor processes that wrote personas (a restarted actor counts again)
    batches: int = 0  # compact: forward-pass batches run
    prefix_tokens: int = 0  # compact: tokens of the shared prefix (evaluated once per decoder)
    summaries_composed: int = 0  # LLM personas whose summary is composed from the fields
    summaries_replaced: int = 0  # json: a model summary failed the consistency check and was replaced
    demographic_filtered: int = 0  # users whose persona the demographic filter acted on (replaced or rejected)
    error_counts: dict[str, int] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    llm_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[Failure] = Field(default_factory=list)
    user_ids: list[str] = Field(default_factory=list, description="users processed (not skipped)")

    @property
    def validity_rate(self) -> float:
        """Share of model outputs that parsed, validated and were grounded."""
        return self.valid_outputs / self.outputs if self.outputs else 0.0

    @property
    def personas_per_s(self) -> float:
        done = self.generated + self.fallbacks
        return done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of LLM time."""
        return self.output_tokens / self.llm_seconds if self.llm_seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"failures", "user_ids"})
        d.update(
            validity_rate=round(self.validity_rate, 4),
            personas_per_s=round(self.personas_per_s, 4),
            tokens_per_s=round(self.tokens_per_s, 2),
            n_failures=len(self.failures),
        )
        return d


@dataclass
class UserOutcome:
    persona: Persona | None
    status: Literal["generated", "fallback", "unusable"]
    attempts: int = 0
    outputs: int = 0
    valid_outputs: int = 0
    first_try_valid: bool = False
    duplicates_removed: int = 0
    errors: list[str] = field(default_factory=list)
    draft: Draft | None = None
    summary_replaced: bool = False
    demographic_filtered: int = 0  # times the demographic filter acted (texts replaced or attempts rejected)


class _Serialized(LLMBackend):
    """Wraps a backend that must not run two calls at once (a llama.cpp context is single-threaded)."""

    def __init__(self, inner: LLMBackend) -> None:  # noqa: D107 - no config of its own
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.config = inner.config
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def generate(self, messages, **kwargs) -> Generation:  # type: ignore[override]
        with self._lock:
            return self.inner.generate(messages, **kwargs)

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return self.inner.count_tokens(text)


class PersonaEngine:
    """Writes personas for the users of one split with one backend; shared by batch and serving."""

    def __init__(
        self,
        split: Split,
        space: ItemSpace,
        backend: LLMBackend,
        config: PersonasConfig | None = None,
        *,
        transitions: TransitionStats | None = None,
        seed: int = 0,
    ) -> None:
        if space.n_items != split.n_items:
            raise DataError(
                f"item space has {space.n_items} items but the split has {split.n_items}; rebuild the items"
            )
        self.split, self.space, self.config = split, space, config or PersonasConfig()
        thread_safe = bool(getattr(backend, "thread_safe", False))
        self.backend = backend if thread_safe or self.config.concurrency == 1 else _Serialized(backend)
        self.seed = self.config.seed if self.config.seed is not None else seed
        domain = self.config.prompt.domain or domain_of(split)
        self.config = self.config.model_copy(
            update={"prompt": self.config.prompt.model_copy(update={"domain": domain})}
        )
        self.contexts = ContextBuilder(split, space, self.config, transitions=transitions)
        self.builder = PromptBuilder(self.config.prompt, count_tokens=self.backend.count_tokens)
        self.writer = build_writer(self.config.mode, self.builder, self.config, space.fine_names)
        self.format = resolve_format(self.config, backend)
        self.compact: CompactWriter | None = None
        self.keep_choices = False  # benchmarks: keep each user's CompactChoice (model scores) in .choices
        self.choices: dict[str, Any] = {}
        if self.format == "compact":
            decoder = backend.batch_decoder(self.config.batch_size)  # type: ignore[attr-defined]
            self.compact = CompactWriter(decoder, self.config, domain, list(space.fine_names))

    @property
    def stage(self) -> str:
        return self.contexts.stage

    def context(self, user_idx: int) -> PersonaContext:
        return self.contexts.context(user_idx)

    def context_for(self, history: UserHistory, next_items: np.ndarray | None = None) -> PersonaContext:
        """Context of a live history (the serving refresh worker's entry point)."""
        return self.contexts.context_for(history, next_items)

    # -- one user --------------------------------------------------------------------------
    def _provenance(
        self, ctx: PersonaContext, draft: Draft, attempts: int, *, prompt_version: str | None = None, **extra: Any
    ) -> Provenance:
        return Provenance(
            **extra,
            model=draft.model or self.backend.model_name,
            backend=self.backend.name,
            prompt_version=prompt_version or f"{PROMPT_VERSION}/{self.config.prompt.mode}",
            history_last_timestamp=ctx.history.last_timestamp,
            history_length=ctx.history.version,
            input_tokens=draft.prompt_tokens,
            output_tokens=draft.completion_tokens,
            latency_s=round(draft.latency_s, 4),
            attempts=attempts,
            writer=self.config.mode,
            hindsight=ctx.hindsight is not None,
        )

    def persona_for(self, ctx: PersonaContext) -> UserOutcome:
        """Write one persona: retries, then the fallback. Never raises for model/output trouble."""
        cfg = self.config
        if (unusable := _unusable(ctx)) is not None:
            return unusable
        total = Draft(payload={})
        out = UserOutcome(None, "fallback", draft=total)
        base_seed = self.seed * 1_000_003 + ctx.history.user_idx
        for attempt in range(1 + cfg.retries):
            out.attempts += 1
            draft = Draft(payload={})
            temperature = cfg.temperature if attempt == 0 else cfg.retry_temperature
            try:
                self.writer.write(
                    ctx, self.backend, temperature=temperature, seed=base_seed + 7919 * attempt, draft=draft
                )
                persona = Persona(
                    user_id=ctx.user_id,
                    version=ctx.history.version,
                    summary=draft.payload["summary"],
                    interests=[Interest(**i) for i in draft.payload["interests"]],
                    explore=[ExploreTopic(**e) for e in draft.payload["explore"]],
                    provenance=self._provenance(ctx, _merge(total, draft), out.attempts, format=self.format),
                )
                persona = self._screened(ctx, persona, out)
            except LLMError as exc:
                out.errors.append(f"llm_error: {exc}")
            except OutputError as exc:
                out.outputs += 1
                out.errors.append(str(exc))
            except ValidationError as exc:
                out.outputs += 1
                out.errors.append(f"schema: {exc.errors()[0].get('msg', exc)}")
            except Exception as exc:  # noqa: BLE001 - one user's bug must not end the batch
                out.errors.append(f"error: {type(exc).__name__}: {exc}")
            else:
                out.outputs += 1
                out.valid_outputs += 1
                out.first_try_valid = attempt == 0
                out.duplicates_removed = int(draft.steps.get("duplicates_removed", 0))
                if out.demographic_filtered and not persona.provenance.demographic_filtered:  # a rejected attempt
                    prov = persona.provenance.model_copy(update={"demographic_filtered": True})
                    persona = persona.model_copy(update={"provenance": prov})
                out.persona, out.status = self._checked_summary(ctx, persona, out), "generated"
                return out
            _merge(total, draft)
        out.persona = self._fallback_persona(ctx, total, out.attempts, filtered=out.demographic_filtered > 0)
        return out

    def _screened(self, ctx: PersonaContext, persona: Persona, out: UserOutcome) -> Persona:
        """The demographic filter: a summary or explore reason holding a lexicon word that the user's
        input does not hold is replaced by the text composed from the fields (``replace``), or the
        attempt fails with ``OutputError("demographic")`` so that the retry / fallback path runs
        (``reject``). Either way it is counted (``out.demographic_filtered``, an error line naming the
        words, ``provenance.demographic_filtered``); the composed texts hold only catalogue names of
        the user's context, so a replacement is clean unless a custom lexicon lists a word of the
        fixed wording ("Mostly", "Also liked by people who like"): then the persona is rejected too."""
        action = self.config.demographic_filter
        if action == "off":
            return persona
        words = lexicon(self.config.demographic_words)
        source = source_text(ctx)
        finding = screen(persona.summary, [e.reason for e in persona.explore], source, words)
        if not finding:
            return persona
        out.demographic_filtered += 1
        if action == "replace":
            replaced = self._replaced(ctx, persona, finding)
            again = screen(replaced.summary, [e.reason for e in replaced.explore], source, words)
            if not again:
                out.errors.append(f"demographic: replaced, {finding.detail()}")
                return replaced
            finding = again
        raise OutputError("demographic", f"rejected, {finding.detail()}")

    def _replaced(self, ctx: PersonaContext, persona: Persona, finding: Finding) -> Persona:
        """``persona`` with each flagged text replaced by its composed form (flagged in provenance)."""
        cfg = self.config
        update: dict[str, Any] = {}
        if "summary" in finding.fields:
            interests = [i.model_dump() for i in persona.interests]
            explore = [e.model_dump() for e in persona.explore]
            update["summary"] = compose_summary(interests, explore, ctx, cfg.summary_max_chars)
        sources = {ctx.fine_names[c]: ctx.source_name(r) for r, c in enumerate(ctx.candidates)}
        explore = [
            e.model_copy(update={"reason": compose_reason(sources.get(e.cluster), cfg.reason_max_chars)})
            if f"reason:{j}" in finding.fields
            else e
            for j, e in enumerate(persona.explore)
        ]
        update["explore"] = explore
        prov: dict[str, Any] = {"demographic_filtered": True}
        if "summary" in update:
            prov["summary_source"] = "composed"
        update["provenance"] = persona.provenance.model_copy(update=prov)
        return persona.model_copy(update=update)

    def _checked_summary(self, ctx: PersonaContext, persona: Persona, out: UserOutcome) -> Persona:
        """A model-written summary that disagrees with the fields is replaced by the composed one."""
        payload = {"interests": [i.model_dump() for i in persona.interests], "explore": [e.model_dump() for e in persona.explore]}
        problems = check_summary(persona.summary, payload, self.space.fine_names)
        if not problems:
            return persona
        out.summary_replaced = True
        out.errors.append("summary: " + "; ".join(problems))
        summary = compose_summary(payload["interests"], payload["explore"], ctx, self.config.summary_max_chars)
        prov = persona.provenance.model_copy(update={"summary_source": "composed"})
        return persona.model_copy(update={"summary": summary, "provenance": prov})

    def _fallback_persona(
        self, ctx: PersonaContext, draft: Draft, attempts: int, *, filtered: bool = False
    ) -> Persona:
        """The statistics-only persona (not screened: its text is catalogue names in fixed wording)."""
        prov = self._provenance(
            ctx, draft, attempts, format=self.format, summary_source="composed", demographic_filtered=filtered
        )
        return fallback_persona(ctx, prov, self.config.max_interests, self.config.max_explore)

    def _fallback(self, ctx: PersonaContext, errors: list[str], *, filtered: bool = False) -> UserOutcome:
        persona = self._fallback_persona(ctx, Draft(payload={}), 1, filtered=filtered)
        return UserOutcome(persona, "fallback", attempts=1, errors=errors, demographic_filtered=int(filtered))

    def personas_for(self, contexts: Sequence[PersonaContext]) -> list[UserOutcome]:
        """Write personas for several users: batched with the compact writer, one by one otherwise.
        Never raises for model trouble; every user gets an outcome (generated, fallback, unusable)."""
        if self.compact is None:  # one call per user; a remote backend overlaps ``concurrency`` of them
            if self.config.concurrency == 1 or len(contexts) < 2:
                return [self.persona_for(c) for c in contexts]
            with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(contexts))) as pool:
                return list(pool.map(self.persona_for, contexts))
        outs: list[UserOutcome | None] = [None] * len(contexts)
        todo = []
        for i, ctx in enumerate(contexts):
            outs[i] = _unusable(ctx)
            if outs[i] is None:
                todo.append(i)
        size = self.config.batch_size
        for lo in range(0, len(todo), size):
            chunk = todo[lo : lo + size]
            for i, out in zip(chunk, self._compact_batch([contexts[i] for i in chunk]), strict=True):
                outs[i] = out
        return [o for o in outs if o is not None]

    def _compact_batch(self, contexts: list[PersonaContext]) -> list[UserOutcome]:
        assert self.compact is not None
        writer = self.compact
        pairs = [writer.request(c) for c in contexts]
        try:
            results, stats = writer.decoder.run(
                writer.prefix, [r for r, _ in pairs], temperature=self.config.temperature, seed=self.seed
            )
        except LLMError as exc:
            return [self._fallback(c, [f"llm_error: {exc}"]) for c in contexts]
        self.last_batch = stats
        share = stats.seconds / max(len(contexts), 1)
        outs = []
        for ctx, (_, program), res in zip(contexts, pairs, results, strict=True):
            if res.error:
                outs.append(self._fallback(ctx, [f"llm_error: {res.error}"]))
                continue
            try:
                choice = writer.choice(ctx, program)
                if self.keep_choices:
                    self.choices[ctx.user_id] = choice
                payload = writer.payload(ctx, choice)
                draft = Draft(
                    payload=payload, prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                    latency_s=share, calls=1, model=self.backend.model_name,
                )  # fmt: skip
                persona = Persona(
                    user_id=ctx.user_id,
                    version=ctx.history.version,
                    summary=payload["summary"],
                    interests=[Interest(**i) for i in payload["interests"]],
                    explore=[ExploreTopic(**e) for e in payload["explore"]],
                    provenance=self._provenance(
                        ctx, draft, 1, format="compact", summary_source="composed", prompt_version=COMPACT_VERSION
                    ),
                )
            except (ValueError, ValidationError) as exc:  # cannot happen by construction; counted if it does
                outs.append(self._fallback(ctx, [f"schema: {exc}"]))
                continue
            out = UserOutcome(None, "generated", attempts=1, outputs=1, valid_outputs=1, first_try_valid=True)
            try:
                out.persona = self._screened(ctx, persona, out)
            except OutputError as exc:  # rejected by the demographic filter: no retry in a batch, the fallback
                out = self._fallback(ctx, [str(exc)], filtered=True)
                out.outputs = 1
            outs.append(out)
        return outs


def _unusable(ctx: PersonaContext) -> UserOutcome | None:
    """The outcome of a user no persona can be built for, or None."""
    if not ctx.stats:
        return UserOutcome(None, "unusable", errors=["empty history"])
    if not ctx.candidates:
        return UserOutcome(None, "unusable", errors=["no unseen cluster left to explore"])
    return None


def resolve_format(config: PersonasConfig, backend: LLMBackend) -> str:
    """``compact`` when asked for or when ``auto`` and the backend can batch; else ``json``."""
    inner = getattr(backend, "inner", backend)
    can_batch = hasattr(inner, "batch_decoder")
    if config.format == "compact" and not can_batch:
        raise ConfigError(
            f"personas.format = 'compact' needs a backend with batched decoding (embedded); {backend.name!r} has none"
        )
    if config.mode == "teacher":
        return "json"  # the multi-step teacher writes free text by design
    if config.format == "auto":
        return "compact" if can_batch else "json"
    return config.format


def _merge(total: Draft, part: Draft) -> Draft:
    total.prompt_tokens += part.prompt_tokens
    total.completion_tokens += part.completion_tokens
    total.latency_s += part.latency_s
    total.calls += part.calls
    total.model = part.model or total.model
    part.prompt_tokens = part.completion_tokens = part.calls = 0  # counted once
    part.latency_s = 0.0
    return total


# -- batch ---------------------------------------------------------------------------------------
def resolve_users(
    split: Split, users: Sequence[int | str] | int | None, seed: int = 0, stage: str = "test"
) -> list[int]:
    """User indices from explicit indices/ids, or a deterministic sample of ``users`` evaluation users."""
    if users is None:
        return list(range(split.n_users))
    if isinstance(users, int | np.integer):
        pool = split.eval_users("test" if stage == "test" else "valid")
        if users >= len(pool):
            return sorted(int(u) for u in pool)
        rng = np.random.default_rng(seed)
        return sorted(int(u) for u in rng.choice(pool, size=int(users), replace=False))
    index = split.user_index()
    out = []
    for u in users:
        if isinstance(u, int | np.integer):
            if not 0 <= int(u) < split.n_users:
                raise ConfigError(f"user index {u} out of range 0..{split.n_users - 1}")
            out.append(int(u))
        elif str(u) in index:
            out.append(index[str(u)])
        else:
            raise ConfigError(f"unknown user id {u!r}")
    return out


def is_done(store: PersonaStore, user_id: str, version: int, retry_fallbacks: bool) -> bool:
    """A user whose stored persona already covers this history is skipped (resume)."""
    existing = store.status(user_id)
    if existing is None:
        return False
    stored_version, fallback = existing
    if stored_version > version:
        return True  # the store keeps the newer one anyway
    if stored_version == version:
        return not (retry_fallbacks and fallback)
    return False


def pending_users(
    contexts: ContextBuilder, user_idx: Sequence[int], store: PersonaStore, retry_fallbacks: bool
) -> tuple[list[int], int]:
    """The users of ``user_idx`` that still need a persona, and how many were skipped.

    Reads only each user's history length (the persona version), not a full context, so a
    driver can plan a large job without scoring anyone's explore candidates."""
    pending = []
    for u in user_idx:
        history = contexts.history(u)
        if not is_done(store, history.user_id, history.version, retry_fallbacks):
            pending.append(int(u))
    return pending, len(user_idx) - len(pending)


class ReportRecorder:
    """Stores each outcome's persona and counts it into the report: the one place both batch runners
    (local and Ray) account for users, so their reports mean the same thing."""

    def __init__(
        self, store: PersonaStore, config: PersonasConfig, requested: int, *, backend: str, model: str = "",
        format: str = "json",
    ) -> None:  # fmt: skip
        self.report = GenerationReport(
            backend=backend, model=model, writer=config.mode, hindsight=config.hindsight,
            prompt_mode=config.prompt.mode, requested=requested, format=format,
        )  # fmt: skip
        self.store = store
        self.errors: Counter[str] = Counter()
        self.start = time.perf_counter()

    def record(self, user_id: str, out: UserOutcome) -> None:
        report = self.report
        report.user_ids.append(user_id)
        report.attempts += out.attempts
        report.outputs += out.outputs
        report.valid_outputs += out.valid_outputs
        report.first_try_valid += int(out.first_try_valid)
        report.duplicates_removed += out.duplicates_removed
        report.summaries_replaced += int(out.summary_replaced)
        report.demographic_filtered += int(out.demographic_filtered > 0)
        if out.status == "generated" and out.persona is not None:
            report.summaries_composed += int(out.persona.provenance.summary_source == "composed")
        for e in out.errors:
            self.errors[e.split(":", 1)[0]] += 1
        if out.persona is not None:
            self.store.put(out.persona)
            report.input_tokens += out.persona.provenance.input_tokens
            report.output_tokens += out.persona.provenance.output_tokens
            report.llm_seconds += out.persona.provenance.latency_s
        if out.status == "generated":
            report.generated += 1
        elif out.status == "fallback":
            report.fallbacks += 1
        else:
            report.unusable += 1
        if out.status != "generated":
            report.failures.append(Failure(user_id=user_id, errors=out.errors, fallback=out.status == "fallback"))

    def finish(self) -> GenerationReport:
        self.report.error_counts = dict(self.errors)
        self.report.llm_seconds = round(self.report.llm_seconds, 4)
        self.report.wall_seconds = round(time.perf_counter() - self.start, 4)
        return self.report


def batches(users: Sequence[int], size: int) -> list[list[int]]:
    """Consecutive chunks of ``size`` users: the forward-pass batches of the compact engine (both
    runners cut the same way, so greedy decoding gives the same personas)."""
    return [list(users[lo : lo + size]) for lo in range(0, len(users), size)]


def generate_personas(
    split: Split,
    space: ItemSpace,
    backend: LLMBackend,
    users: Sequence[int | str] | int | None,
    store: PersonaStore,
    config: PersonasConfig | None = None,
    *,
    engine: PersonaEngine | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> GenerationReport:
    """Generate, validate and store personas for ``users`` (indices, ids, or a sample size)."""
    config = config or PersonasConfig()
    engine = engine or PersonaEngine(split, space, backend, config, seed=seed)
    user_idx = resolve_users(split, users, engine.seed, engine.stage)
    recorder = ReportRecorder(
        store, config, len(user_idx), backend=backend.name, model=backend.model_name, format=engine.format
    )
    report = recorder.report
    pending, report.skipped = pending_users(engine.contexts, user_idx, store, config.retry_fallbacks)

    from personarec.cli_common import progress

    bar = progress() if show_progress else None
    task = bar.add_task(f"personas ({backend.name}, {config.mode})", total=len(pending)) if bar else None
    if bar:
        bar.start()
    try:
        if engine.compact is not None:
            report.prefix_tokens = len(engine.compact.prefix)
            for chunk in batches(pending, engine.config.batch_size):
                contexts = [engine.context(u) for u in chunk]
                for ctx, out in zip(contexts, engine.personas_for(contexts), strict=True):
                    recorder.record(ctx.user_id, out)
                report.batches += 1
                if bar:
                    bar.advance(task, len(chunk))
        else:
            with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
                futures = {pool.submit(engine.persona_for, engine.context(u)): u for u in pending}
                for fut in as_completed(futures):
                    out = fut.result()  # persona_for never raises for model trouble
                    recorder.record(str(split.user_ids[futures[fut]]), out)
                    if bar:
                        bar.advance(task)
    finally:
        if bar:
            bar.stop()
    return recorder.finish()


# -- export --------------------------------------------------------------------------------------
def export_personas(store: PersonaStore, path: str | Path, fmt: Literal["jsonl", "parquet"] = "jsonl") -> int:
    """Write every stored persona (as generated, without user edits) to JSONL or parquet."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    exported_at = time.time()  # before the read: an erasure during the export counts as "since"
    personas = [pp for u in sorted(store.user_ids()) if (pp := store.get(u)) is not None]
    if fmt == "jsonl":
        with p.open("w") as fh:
            for persona in personas:
                fh.write(persona.model_dump_json() + "\n")
    elif fmt == "parquet":
        import polars as pl

        rows = [json.loads(x.model_dump_json()) for x in personas]
        frame = pl.DataFrame(rows) if rows else pl.DataFrame({"user_id": [], "version": []})
        frame.write_parquet(p)
    else:
        raise ConfigError(f"unknown export format {fmt!r}; use jsonl or parquet")
    write_export_manifest(p, [x.user_id for x in personas], exported_at)
    return len(personas)


def export_manifest_path(export: str | Path) -> Path:
    p = Path(export)
    return p.with_name(p.name + ".manifest.json")


def write_export_manifest(export: Path, user_ids: list[str], exported_at: float) -> None:
    """Beside every export: when it was taken and whose personas it holds, so that the users erased
    since (``personarec erasures --since-export``) can be named and removed from the copy."""
    manifest = {"export": export.name, "exported_at": exported_at, "users": len(user_ids), "user_ids": user_ids}
    export_manifest_path(export).write_text(json.dumps(manifest))
