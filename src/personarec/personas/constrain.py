"""Grounding by constrained decoding: topic fields may only hold catalogue cluster names.

Two mechanisms, one per kind of runtime:

- a JSON schema (and its GBNF via llama.cpp's converter) whose topic fields are ``enum`` of
  cluster names, for llama.cpp and guided-JSON servers (:func:`persona_json_schema`);
- a STATIC-style vectorized trie (:class:`VectorTrie`, the seed's Sparse Transition
  Matrix-Accelerated Trie) for token-level decoding in ``transformers``: every allowed string is
  tokenized, the prefix tree is flattened into CSR arrays, and the allowed-next-token mask of a
  whole batch of decoding states is computed with a handful of numpy ops, no Python loop over
  rows. :class:`DictTrie` is the plain reference implementation the tests compare it to.

A grammar cannot make list items distinct; :func:`check_persona_output` checks that (and
grounding, and explore novelty) in code after decoding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Encode = Callable[[str], list[int]]

# --------------------------------------------------------------------------------------------
# JSON schema / GBNF
# --------------------------------------------------------------------------------------------


#: Interest weights as an enum: grammars ignore ``minimum``/``maximum`` on numbers (llama.cpp's
#: converter does), and a small model then writes 1000000000000000; ten levels are enough.
WEIGHT_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(str(n) for n in names))


def persona_json_schema(
    allowed_interest_clusters: Sequence[str],
    allowed_explore_clusters: Sequence[str],
    max_interests: int = 5,
    n_explore: int = 2,
    *,
    min_interests: int = 1,
    min_explore: int | None = None,
    summary_max_length: int = 600,
    reason_max_length: int = 200,
) -> dict[str, Any]:
    """The persona JSON schema with topic fields restricted to catalogue cluster names.

    ``allowed_explore_clusters`` should be built per user as the clusters *not* in the user's
    history, so that explore novelty holds by construction. ``n_explore`` is the maximum number
    of explore topics (``min_explore`` defaults to it, i.e. exactly ``n_explore``); both lists
    are capped at the number of allowed names. Property order is fixed (summary, interests,
    explore) because constrained decoders emit properties in schema order.
    """
    interests = _unique(allowed_interest_clusters)
    explore = _unique(allowed_explore_clusters)
    if not interests:
        raise ValueError("persona_json_schema: no allowed interest clusters")
    if not explore:
        raise ValueError("persona_json_schema: no allowed explore clusters")
    max_i = max(1, min(max_interests, len(interests)))
    min_i = max(1, min(min_interests, max_i))
    max_e = max(1, min(n_explore, len(explore)))
    min_e = max(1, min(max_e if min_explore is None else min_explore, max_e))
    return {
        "type": "object",
        "properties": {
            "summary": {"type": "string", "maxLength": summary_max_length},
            "interests": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "cluster": {"type": "string", "enum": interests},
                        "weight": {"type": "number", "enum": list(WEIGHT_LEVELS)},
                    },
                    "required": ["cluster", "weight"],
                    "additionalProperties": False,
                },
                "minItems": min_i,
                "maxItems": max_i,
            },
            "explore": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "cluster": {"type": "string", "enum": explore},
                        "reason": {"type": "string", "maxLength": reason_max_length},
                    },
                    "required": ["cluster", "reason"],
                    "additionalProperties": False,
                },
                "minItems": min_e,
                "maxItems": max_e,
            },
        },
        "required": ["summary", "interests", "explore"],
        "additionalProperties": False,
    }


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF grammar for a JSON schema, via llama.cpp's own converter (needs llama-cpp-python)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(schema), prop_order=list(schema.get("properties", {})))


@dataclass
class GroundingReport:
    """What a decoded persona gets right; ``problems`` lists every violation in words."""

    parsed: bool
    grounded: bool = False  # every topic is an allowed catalogue cluster
    novel: bool = False  # no explore topic is an existing interest / history cluster
    distinct: bool = False  # no topic repeats within a list
    problems: list[str] = field(default_factory=list)
    data: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.parsed and self.grounded and self.novel and self.distinct


def check_persona_output(
    output: str | dict[str, Any],
    allowed_interest_clusters: Sequence[str],
    allowed_explore_clusters: Sequence[str],
    history_clusters: Sequence[str] = (),
) -> GroundingReport:
    """Post-check a decoded persona: parseable, grounded, explore novel, topics distinct.

    Grammars enforce enums but not distinctness, and a server may ignore the schema altogether;
    this is the code-level guarantee that callers (the teacher, the evaluator) rely on.
    """
    if isinstance(output, str):
        try:
            data = json.loads(output)
        except json.JSONDecodeError as exc:
            return GroundingReport(parsed=False, problems=[f"invalid JSON: {exc}"])
    else:
        data = output
    if not isinstance(data, dict):
        return GroundingReport(parsed=False, problems=["top level is not an object"])
    problems: list[str] = []
    interests = [i.get("cluster") if isinstance(i, dict) else None for i in data.get("interests") or []]
    explore = [e.get("cluster") if isinstance(e, dict) else None for e in data.get("explore") or []]
    if not interests:
        problems.append("no interests")
    if not explore:
        problems.append("no explore topics")
    allowed_i, allowed_e = set(allowed_interest_clusters), set(allowed_explore_clusters)
    bad = [c for c in interests if c not in allowed_i] + [c for c in explore if c not in allowed_e]
    problems += [f"ungrounded topic {c!r}" for c in bad]
    known = set(history_clusters) | {c for c in interests if c is not None}
    stale = [c for c in explore if c in known]
    problems += [f"explore topic {c!r} is already an interest" for c in stale]
    dup = len(set(interests)) != len(interests) or len(set(explore)) != len(explore)
    if dup:
        problems.append("repeated topic within a list")
    return GroundingReport(
        parsed=True,
        grounded=not bad and bool(interests) and bool(explore),
        novel=not stale,
        distinct=not dup,
        problems=problems,
        data=data,
    )


# --------------------------------------------------------------------------------------------
# Tries
# --------------------------------------------------------------------------------------------

_END = -1  # key of the terminal marker in a DictTrie node (its value: the string's index)


class DictTrie:
    """Reference prefix tree: each node is a ``dict[token, child]``; ``node[-1]`` marks a complete
    string. Several roots (one per allowed set) make a forest, like :class:`VectorTrie`.

    Plain Python, one row at a time: the obvious implementation, kept to check the vectorized
    one and as the benchmark's baseline.
    """

    def __init__(self, sequence_sets: Sequence[Sequence[Sequence[int]]], vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)
        self.roots: list[dict[int, Any]] = []
        for seqs in sequence_sets:
            root: dict[int, Any] = {}
            for sid, seq in enumerate(seqs):
                node = root
                for tok in seq:
                    node = node.setdefault(int(tok), {})
                node[_END] = sid
            self.roots.append(root)

    def start(self, root_ids: Sequence[int]) -> list[dict[int, Any] | None]:
        return [self.roots[r] for r in root_ids]

    def allowed_mask(self, states: Sequence[dict[int, Any] | None]) -> np.ndarray:
        mask = np.zeros((len(states), self.vocab_size), dtype=bool)
        for b, node in enumerate(states):
            if node is None:
                continue
            for tok in node:
                if tok != _END:
                    mask[b, tok] = True
        return mask

    def advance(self, states: Sequence[dict[int, Any] | None], tokens: Sequence[int]) -> list[dict[int, Any] | None]:
        return [None if node is None or tok < 0 else node.get(int(tok)) for node, tok in zip(states, tokens)]

    @staticmethod
    def string_id(state: dict[int, Any] | None) -> int:
        return -1 if state is None else int(state.get(_END, -1))

    @staticmethod
    def is_leaf(state: dict[int, Any] | None) -> bool:
        return state is not None and all(k == _END for k in state)


class VectorTrie:
    """A prefix-tree forest flattened into CSR arrays (the seed's STATIC trie).

    Node ``n``'s outgoing edges are ``indptr[n]:indptr[n+1]`` in ``edge_token`` / ``edge_child``,
    sorted by token; ``edge_key = parent * vocab + token`` is globally sorted, so advancing a
    whole batch is one ``searchsorted``. Roots are nodes ``0..n_roots-1`` (one per allowed set,
    so rows of a batch can be constrained to different sets). A state is a node id; ``-1`` is a
    dead state (an off-trie token was taken) with no allowed continuation.
    """

    def __init__(
        self,
        indptr: np.ndarray,
        edge_token: np.ndarray,
        edge_child: np.ndarray,
        string_id: np.ndarray,
        n_roots: int,
        vocab_size: int,
    ) -> None:
        self.indptr = indptr.astype(np.int64)
        self.edge_token = edge_token.astype(np.int64)
        self.edge_child = edge_child.astype(np.int64)
        self.string_id = string_id.astype(np.int64)
        self.n_roots = int(n_roots)
        self.vocab_size = int(vocab_size)
        parent = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))
        self.edge_key = parent * self.vocab_size + self.edge_token
        self.n_children = np.diff(self.indptr)
        # STATIC's padded transition table: row n = node n's child tokens, -1 padded to the max
        # fan-out, so a batch's allowed tokens are one gather. Used when it stays small; the CSR
        # gather below covers forests with a huge fan-out somewhere.
        fan = int(self.n_children.max()) if self.n_nodes else 0
        self.child_table: np.ndarray | None = None
        if 0 < fan and self.n_nodes * fan <= 16_000_000:
            table = np.full((self.n_nodes, fan), -1, dtype=np.int64)
            slot = np.arange(len(self.edge_token)) - np.repeat(self.indptr[:-1], self.n_children)
            table[parent, slot] = self.edge_token
            self.child_table = table

    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def build(cls, sequence_sets: Sequence[Sequence[Sequence[int]]], vocab_size: int) -> VectorTrie:
        """Flatten the tries of several allowed sets (lists of token sequences) into one forest."""
        ref = DictTrie(sequence_sets, vocab_size)
        # BFS numbering: roots first, then each level; children in token order.
        order: list[dict[int, Any]] = list(ref.roots)
        indptr = [0]
        tokens: list[int] = []
        children: list[int] = []
        sids: list[int] = []
        i = 0
        while i < len(order):
            node = order[i]
            sids.append(int(node.get(_END, -1)))
            for tok in sorted(k for k in node if k != _END):
                if not 0 <= tok < vocab_size:
                    raise ValueError(f"token id {tok} outside vocabulary of size {vocab_size}")
                tokens.append(tok)
                children.append(len(order))
                order.append(node[tok])
            indptr.append(len(tokens))
            i += 1
        return cls(
            np.asarray(indptr), np.asarray(tokens, dtype=np.int64), np.asarray(children, dtype=np.int64),
            np.asarray(sids), len(ref.roots), vocab_size,
        )  # fmt: skip

    @classmethod
    def from_strings(cls, string_sets: Sequence[Sequence[str]], encode: Encode, vocab_size: int) -> VectorTrie:
        """Tokenize every allowed string of every set and build the forest. Strings that are a
        prefix of another should carry a terminator (e.g. the closing quote) so that complete
        strings are leaves."""
        return cls.build([[encode(s) for s in strings] for strings in string_sets], vocab_size)

    # -- batch operations (no Python loop over rows) ------------------------------------------
    def start(self, root_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        roots = np.asarray(root_ids, dtype=np.int64)
        if roots.size and (roots.min() < 0 or roots.max() >= self.n_roots):
            raise IndexError("root id out of range")
        return roots.copy()  # roots are nodes 0..n_roots-1

    def _edges(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, edge index) of every outgoing edge of every live state, gathered in one go."""
        live = states >= 0
        s = np.where(live, states, 0)
        counts = np.where(live, self.n_children[s], 0)
        total = int(counts.sum())
        rows = np.repeat(np.arange(len(states)), counts)
        offsets = np.cumsum(counts) - counts
        edge = np.arange(total) - np.repeat(offsets, counts) + np.repeat(self.indptr[s], counts)
        return rows, edge

    def allowed_pairs(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sparse form of the mask: (row, token) of every allowed continuation."""
        states = np.asarray(states, dtype=np.int64)
        if self.child_table is not None:
            toks = self.child_table[np.maximum(states, 0)]
            toks[states < 0] = -1
            rows, cols = np.nonzero(toks >= 0)
            return rows, toks[rows, cols]
        rows, edge = self._edges(states)
        return rows, self.edge_token[edge]

    def allowed_mask(self, states: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Boolean [batch, vocab] mask of allowed next tokens. ``out`` (all False) may be reused."""
        states = np.asarray(states, dtype=np.int64)
        mask = np.zeros((len(states), self.vocab_size), dtype=bool) if out is None else out
        rows, toks = self.allowed_pairs(states)
        mask[rows, toks] = True
        return mask

    def advance(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Next state of every row after taking ``tokens``; -1 where the token leaves the trie."""
        states = np.asarray(states, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        query = np.where(states >= 0, states, 0) * self.vocab_size + tokens
        pos = np.searchsorted(self.edge_key, query)
        pos_c = np.minimum(pos, max(len(self.edge_key) - 1, 0))
        hit = (states >= 0) & (pos < len(self.edge_key))
        if len(self.edge_key):
            hit &= self.edge_key[pos_c] == query
        return np.where(hit, self.edge_child[pos_c] if len(self.edge_child) else -1, -1)

    def string_ids(self, states: np.ndarray) -> np.ndarray:
        """Index (within its set) of the string completed at each state, -1 if none."""
        states = np.asarray(states, dtype=np.int64)
        return np.where(states >= 0, self.string_id[np.maximum(states, 0)], -1)

    def is_leaf(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.int64)
        return (states >= 0) & (self.n_children[np.maximum(states, 0)] == 0)

    # -- torch ---------------------------------------------------------------------------------
    def mask_logits(self, scores: Any, states: np.ndarray, active: np.ndarray | None = None) -> Any:
        """A copy of a torch score matrix where the ``active`` rows keep only allowed tokens
        (others -inf). Sparse: one fill of the output plus a gather/scatter of allowed entries."""
        import torch

        states = np.asarray(states, dtype=np.int64)
        act = np.ones(len(states), dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if not act.any():
            return scores
        rows, toks = self.allowed_pairs(np.where(act, states, -1))
        r, t = torch.from_numpy(rows).to(scores.device), torch.from_numpy(toks).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        out[r, t] = scores[r, t]
        if not act.all():
            free = torch.from_numpy(np.flatnonzero(~act)).to(scores.device)
            out[free] = scores[free]
        return out


class _TrieLogitsProcessorLogic:
    """A ``transformers`` LogitsProcessor constraining each row to the strings of its trie root.

    Tracks one state per row: on each call it advances the states with the tokens appended to
    ``input_ids`` since the last call (the prompt is skipped), then masks the scores of rows still
    inside the trie. Rows that completed a string (a leaf) are left free, so a caller stops or
    switches mode when :attr:`done` is all True. Use as ``TrieLogitsProcessor(trie, roots, n)``.
    """

    def __init__(self, trie: VectorTrie, root_ids: Sequence[int], prompt_length: int) -> None:
        self.trie = trie
        self.states = trie.start(root_ids)
        self.prompt_length = int(prompt_length)
        self._seen = int(prompt_length)

    @property
    def done(self) -> np.ndarray:
        """Rows that completed a string (or fell off the trie, which masking prevents)."""
        return (self.states < 0) | self.trie.is_leaf(self.states)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        length = int(input_ids.shape[1])
        for pos in range(self._seen, length):  # one new token per call in generate()
            tok = input_ids[:, pos].detach().cpu().numpy()
            active = ~self.done
            self.states = np.where(active, self.trie.advance(self.states, tok), self.states)
        self._seen = max(self._seen, length)
        return self.trie.mask_logits(scores, self.states, active=~self.done)


_PROCESSOR_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    # ``TrieLogitsProcessor`` subclasses transformers' LogitsProcessor; built on first use so that
    # importing this module (schemas, tries) does not import transformers/torch.
    global _PROCESSOR_CLASS
    if name == "TrieLogitsProcessor":
        if _PROCESSOR_CLASS is None:
            from transformers import LogitsProcessor

            _PROCESSOR_CLASS = type(
                "TrieLogitsProcessor", (_TrieLogitsProcessorLogic, LogitsProcessor), {"__module__": __name__}
            )
        return _PROCESSOR_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
