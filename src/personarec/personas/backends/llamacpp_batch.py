"""Many users per forward pass on llama.cpp: a shared-prefix, multi-sequence, constrained decoder.

The persona prompt is a long fixed part (instructions and a worked example) plus a short block per
user. :class:`BatchDecoder` evaluates the fixed part once into sequence 0 of a unified KV cache and
copies it (``llama_memory_seq_cp``: the cells are shared, not duplicated) to every user's sequence,
so only the user's block is ever evaluated. All active users advance together: one ``llama_decode``
per step carries every sequence's next token(s), which turns the memory-bound matrix-vector decode
of one user into a matrix-matrix product over the batch.

What a sequence may emit is decided by a :class:`TokenProgram`, one per user: at every step it says
``Choose`` (pick among these token ids), ``Force`` (append these tokens, no sampling), ``Score``
(record log-probabilities of these ids, e.g. to rank candidates in one pass) or ``Done``. Invalid
output cannot be produced: the mask is applied before the choice, not checked after.

Greedy choices are deterministic; a batch gives the same tokens as the same users decoded one by
one, and the reused prefix gives the same tokens as a cold prompt (both tested), up to
floating-point ties.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from personarec.errors import ConfigError
from personarec.personas.backends.base import LLMError


@dataclass(frozen=True)
class Choose:
    """Sample (greedy at temperature 0) one token among ``ids``."""

    ids: np.ndarray


@dataclass(frozen=True)
class Force:
    """Append these tokens without sampling (format text the program knows)."""

    ids: tuple[int, ...]


@dataclass(frozen=True)
class Score:
    """Give the program the log-probabilities (full-vocabulary softmax) of ``ids`` at this point."""

    ids: np.ndarray


@dataclass(frozen=True)
class Done:
    pass


Step = Choose | Force | Score | Done


class TokenProgram(Protocol):
    """The per-user state machine that constrains decoding."""

    def step(self) -> Step: ...

    def accept(self, token: int) -> None:
        """A token was chosen (after ``Choose``) or appended (each id of a ``Force``)."""

    def scored(self, logprobs: np.ndarray) -> None:
        """The answer to the last ``Score`` step, aligned with its ids."""


@dataclass
class SequenceRequest:
    """One user's block (token ids after the shared prefix) and the program that constrains it."""

    tokens: list[int]
    program: TokenProgram
    max_steps: int = 64


@dataclass
class SequenceResult:
    tokens: list[int] = field(default_factory=list)  # generated (chosen + forced)
    prompt_tokens: int = 0  # the user's block only (the prefix is shared)
    completion_tokens: int = 0
    chosen_tokens: int = 0  # tokens that needed a choice (not forced)
    error: str | None = None


@dataclass
class BatchStats:
    """Cost of one :meth:`BatchDecoder.run` call."""

    users: int = 0
    decode_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefix_tokens: int = 0
    prefix_evaluated: bool = False
    seconds: float = 0.0


class BatchDecoder:
    """A llama.cpp context with ``max_batch`` user sequences over one shared prefix.

    Not thread-safe by design (one context); :meth:`run` takes an internal lock so that a backend
    shared between threads serialises whole batches.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        lora_path: str | None = None,
        n_ctx: int = 8192,
        n_threads: int = 1,
        max_batch: int = 16,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
    ) -> None:
        try:
            from llama_cpp import _internals, llama_cpp
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("batched decoding needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36'") from exc
        import logging

        quiet = logging.getLogger("llama-cpp-python")  # llama.cpp's own log lines go through this logger
        if quiet.level == logging.NOTSET:  # nobody asked for them: keep progress bars readable
            quiet.setLevel(logging.ERROR)
        self._lib = llama_cpp
        self.max_batch = max_batch
        self.n_batch = n_batch
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        try:
            self._model = _internals.LlamaModel(path_model=str(model_path), params=mparams, verbose=False)
        except ValueError as exc:
            raise ConfigError(f"llama.cpp could not load {model_path}: {exc}") from exc
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = max_batch + 1  # sequence 0 holds the shared prefix
        cparams.kv_unified = True  # one buffer: the prefix's cells are shared by every sequence
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        try:
            self._ctx = _internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        except ValueError as exc:
            raise ConfigError(f"llama.cpp could not create a context (n_ctx={n_ctx}): {exc}") from exc
        self._lora = None
        if lora_path:
            self._lora = llama_cpp.llama_adapter_lora_init(self._model.model, str(lora_path).encode("utf-8"))
            if self._lora is None:
                raise ConfigError(f"llama.cpp could not load the LoRA adapter {lora_path}")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, scales):
                raise ConfigError(f"llama.cpp could not apply the LoRA adapter {lora_path}")
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self.n_vocab = self._model.n_vocab()
        self.n_ctx = n_ctx
        self._prefix: tuple[int, ...] = ()
        self._lock = threading.Lock()
        self._pieces: list[str] | None = None

    # -- vocabulary ------------------------------------------------------------------------
    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of ``text`` (chat-template markers parsed when ``special``), no BOS."""
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, tokens: list[int]) -> str:
        return self._model.detokenize(tokens, special=False).decode("utf-8", errors="replace")

    @property
    def pieces(self) -> list[str]:
        """Text of every token id (for building masks from strings)."""
        if self._pieces is None:
            self._pieces = [
                self._model.token_to_piece(i, special=False).rstrip(b"\x00").decode("utf-8", errors="replace")
                for i in range(self.n_vocab)
            ]
        return self._pieces

    # -- decoding --------------------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        b = self._batch
        b.n_tokens = len(entries)
        for i, (tok, pos, seq, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want
        rc = self._lib.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            raise LLMError(f"llama_decode returned {rc} (KV cache full? n_ctx={self.n_ctx})")

    def _logits(self, i: int) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self._ctx.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32, copy=True)

    def _set_prefix(self, prefix: list[int], stats: BatchStats) -> None:
        stats.prefix_tokens = len(prefix)
        if tuple(prefix) == self._prefix:
            return
        self._lib.llama_memory_clear(self._mem, True)
        self._prefix = ()
        for lo in range(0, len(prefix), self.n_batch):
            chunk = prefix[lo : lo + self.n_batch]
            self._decode([(t, lo + j, 0, False) for j, t in enumerate(chunk)])
            stats.decode_calls += 1
        self._prefix = tuple(prefix)
        stats.prefix_evaluated = True

    def run(
        self,
        prefix: list[int],
        requests: list[SequenceRequest],
        *,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> tuple[list[SequenceResult], BatchStats]:
        """Decode every request on top of ``prefix`` (evaluated once and kept while it is unchanged)."""
        if len(requests) > self.max_batch:
            raise ValueError(f"{len(requests)} requests for a decoder of max_batch={self.max_batch}")
        with self._lock:
            start = time.perf_counter()
            stats = BatchStats(users=len(requests))
            try:
                self._set_prefix(prefix, stats)
                results = self._run(requests, temperature, seed, stats)
            except LLMError:
                self._prefix = ()  # the cache may hold a partial batch: rebuild next time
                raise
            finally:
                for s in range(1, len(requests) + 1):
                    self._lib.llama_memory_seq_rm(self._mem, s, -1, -1)
            stats.seconds = time.perf_counter() - start
            return results, stats

    def _run(
        self, requests: list[SequenceRequest], temperature: float, seed: int, stats: BatchStats
    ) -> list[SequenceResult]:
        n_prefix = len(self._prefix)
        results = [SequenceResult(prompt_tokens=len(r.tokens)) for r in requests]
        pending: list[list[int]] = [list(r.tokens) for r in requests]
        positions = [n_prefix] * len(requests)
        steps = [0] * len(requests)
        active = []
        rng = np.random.default_rng(seed)
        for k, r in enumerate(requests):
            if not r.tokens:
                results[k].error = "empty prompt"
                continue
            if n_prefix + len(r.tokens) + r.max_steps > self.n_ctx:
                results[k].error = f"prompt of {n_prefix + len(r.tokens)} tokens does not fit n_ctx={self.n_ctx}"
                continue
            self._lib.llama_memory_seq_cp(self._mem, 0, k + 1, -1, -1)
            active.append(k)
        stats.prompt_tokens = sum(len(r.tokens) for k, r in enumerate(requests) if k in active)
        while active:
            # one decode call: every active sequence's pending tokens, within n_batch
            entries: list[tuple[int, int, int, bool]] = []
            wants: list[tuple[int, int]] = []  # (sequence index, batch row of its logits)
            for k in active:
                room = self.n_batch - len(entries)
                if room <= 0:
                    break
                take = pending[k][:room]
                finishes = len(take) == len(pending[k])
                for j, t in enumerate(take):
                    entries.append((t, positions[k] + j, k + 1, finishes and j == len(take) - 1))
                positions[k] += len(take)
                pending[k] = pending[k][len(take) :]
                if finishes:
                    wants.append((k, len(entries) - 1))
            self._decode(entries)
            stats.decode_calls += 1
            for k, row in wants:
                logits = self._logits(row)
                self._advance(k, requests[k], results[k], logits, pending, steps, temperature, rng)
            active = [k for k in active if pending[k]]
        for r in results:
            stats.generated_tokens += r.completion_tokens
        return results

    def _advance(
        self,
        k: int,
        request: SequenceRequest,
        result: SequenceResult,
        logits: np.ndarray,
        pending: list[list[int]],
        steps: list[int],
        temperature: float,
        rng: np.random.Generator,
    ) -> None:
        """Run sequence ``k``'s program on fresh logits until it needs the next forward pass."""
        program = request.program
        fed: list[int] = []
        have_logits = True
        finished = False
        while True:
            step = program.step()
            if isinstance(step, Done):
                finished = True
                break
            if isinstance(step, Force):
                for t in step.ids:
                    program.accept(int(t))
                    result.tokens.append(int(t))
                    fed.append(int(t))
                result.completion_tokens += len(step.ids)
                have_logits = False
                continue
            if not have_logits:
                break  # Choose / Score need the logits after the forced tokens: decode first
            if steps[k] >= request.max_steps:
                result.error = f"program did not finish in {request.max_steps} steps"
                break
            steps[k] += 1
            if isinstance(step, Score):
                program.scored(_log_softmax_at(logits, step.ids))
                continue
            ids = np.asarray(step.ids, dtype=np.int64)
            if len(ids) == 0:
                result.error = "program offered no token to choose"
                break
            token = int(ids[_pick(logits[ids], temperature, rng)])
            program.accept(token)
            result.tokens.append(token)
            result.completion_tokens += 1
            result.chosen_tokens += 1
            fed.append(token)
            have_logits = False
        # the next forward pass feeds what was chosen/forced since these logits, unless finished
        pending[k] = [] if finished or result.error else fed

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()
        self._model.close()


def _log_softmax_at(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    m = float(logits.max())
    lse = m + float(np.log(np.exp(logits - m).sum()))
    return logits[np.asarray(ids, dtype=np.int64)] - lse


def _pick(values: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(values))  # first maximum: deterministic tie-break
    z = (values - values.max()) / temperature
    p = np.exp(z)
    return int(rng.choice(len(values), p=p / p.sum()))
