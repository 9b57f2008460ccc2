"""Schema-guided decoding for Hugging Face causal LMs: fill a fixed JSON skeleton token by token.

The decoder walks the JSON schema and writes the structure itself (braces, keys, commas); the
model only decides what the schema leaves open:

- free strings: any token without a quote, backslash or control character, until the model
  picks the closing quote (or the per-string token cap is hit), so the text is a valid JSON
  string body by construction;
- enum strings (cluster names), booleans and numbers (a grid over ``[minimum, maximum]``): a
  choice among allowed strings, constrained by the vectorized trie's LogitsProcessor, so only
  listed values can come out. Enum values inside one array are made distinct (the persona needs
  that and a grammar cannot say it);
- array length: after ``minItems`` the model chooses between ``,`` and ``]`` (also trie-constrained).

The output is therefore always valid JSON with only allowed values. Batch size 1 with a KV cache.
Supported schema subset: object (all properties, schema order), array, string (enum/const/free),
number/integer (grid), boolean, null; anything else raises :class:`ValueError`.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from personarec.personas.constrain import VectorTrie


@dataclass
class TokenTable:
    """Per-tokenizer facts the decoder needs, computed once (decoding the vocabulary ~1 s)."""

    vocab_size: int
    string_safe: np.ndarray  # bool [V]: may appear inside a JSON string as is
    quote_id: int

    @classmethod
    def build(cls, tokenizer: Any, vocab_size: int) -> TokenTable:
        n = min(vocab_size, len(tokenizer))
        texts = tokenizer.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)
        safe = np.zeros(vocab_size, dtype=bool)
        for i, t in enumerate(texts):
            # no quote/backslash/control characters; no partial UTF-8 bytes (decoded as U+FFFD),
            # which would leave a broken character if the string closed right after them
            safe[i] = bool(t) and '"' not in t and "\\" not in t and "\ufffd" not in t and all(ord(c) >= 32 for c in t)
        special = [i for i in getattr(tokenizer, "all_special_ids", []) if 0 <= i < vocab_size]
        safe[special] = False
        quote = tokenizer.encode('"', add_special_tokens=False)
        if len(quote) != 1:
            raise ValueError("tokenizer has no single token for '\"'")
        return cls(vocab_size=vocab_size, string_safe=safe, quote_id=int(quote[0]))


def number_options(schema: dict[str, Any]) -> list[str]:
    """The values a number/integer slot may take: a grid over [minimum, maximum]."""
    if schema.get("type") == "integer":
        lo, hi = int(schema.get("minimum", 0)), int(schema.get("maximum", 100))
        step = max(1, math.ceil((hi - lo + 1) / 201))
        return [str(v) for v in range(lo, hi + 1, step)]
    lo, hi = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
    values = np.linspace(lo, hi, 11)
    span = hi - lo
    decimals = max(1, -math.floor(math.log10(span / 10))) if span > 0 else 1
    return list(dict.fromkeys(f"{v:.{decimals}f}" for v in values))


def _prefix_free(options: Sequence[str]) -> list[str]:
    """JSON allows whitespace after a scalar: pad options when one is a prefix of another."""
    opts = list(options)
    clash = any(a != b and b.startswith(a) for a in opts for b in opts)
    return [o + " " for o in opts] if clash else opts


class SkeletonDecoder:
    """One constrained generation: feed the prompt, then emit the schema's skeleton."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        table: TokenTable,
        *,
        max_tokens: int,
        max_string_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
        trie_cache: OrderedDict[tuple[str, ...], VectorTrie] | None = None,
    ) -> None:
        self.model = model
        self.tok = tokenizer
        self.table = table
        self.max_tokens = max_tokens
        self.max_string_tokens = max_string_tokens
        self.temperature = temperature
        self.gen = torch.Generator().manual_seed(seed if seed is not None else 0)
        self.tries = trie_cache if trie_cache is not None else OrderedDict()
        self.ids: list[int] = []
        self.pending: list[int] = []  # literal tokens not yet run through the model
        self.n_prompt = 0
        self.past: Any = None
        self.logits: torch.Tensor | None = None

    # -- low level ---------------------------------------------------------------------------
    @property
    def n_generated(self) -> int:
        return len(self.ids) + len(self.pending) - self.n_prompt

    def _flush(self) -> None:
        """Run buffered literal tokens through the model in one forward pass (before a decision)."""
        if self.pending:
            ids, self.pending = self.pending, []
            self._feed(ids)

    def _feed(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=x, past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        self.logits = out.logits[0, -1].float()
        self.ids.extend(int(i) for i in ids)

    def _pick(self, scores: torch.Tensor) -> int:
        if self.temperature <= 0:
            return int(torch.argmax(scores))
        probs = torch.softmax(scores / self.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.gen))

    def _encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def literal(self, text: str) -> None:
        self.pending.extend(self._encode(text))

    def _trie(self, options: Sequence[str]) -> VectorTrie:
        key = tuple(options)
        trie = self.tries.get(key)
        if trie is None:
            trie = VectorTrie.from_strings([options], self._encode, self.table.vocab_size)
            self.tries[key] = trie
            while len(self.tries) > 256:
                self.tries.popitem(last=False)
        return trie

    def choice(self, options: Sequence[str]) -> int:
        """Let the model pick one of ``options`` (prefix-free strings); returns its index.

        Where the trie leaves a single continuation the token is forced without asking the model
        (it joins the pending literal tokens), so long cluster names cost one forward pass per
        branching point, not per token. Masking goes through :class:`TrieLogitsProcessor`.
        """
        from personarec.personas.constrain import TrieLogitsProcessor

        trie = self._trie(options)
        proc = TrieLogitsProcessor(trie, [0], prompt_length=len(self.ids) + len(self.pending))
        state = trie.start([0])
        while not trie.is_leaf(state)[0]:
            node = int(state[0])
            if trie.n_children[node] == 1:
                tok = int(trie.edge_token[trie.indptr[node]])
            else:
                self._flush()
                scores = proc(torch.tensor([self.ids], dtype=torch.long), self.logits[None, : self.table.vocab_size].clone())
                tok = self._pick(scores[0])
            self.pending.append(tok)
            state = trie.advance(state, np.array([tok]))
            if state[0] < 0:  # cannot happen with masking; guard against a tokenizer surprise
                raise ValueError("constrained choice left the trie")
        return int(trie.string_ids(state)[0])

    def free_string(self, cap: int) -> None:
        """Text until the model closes the quote (at least one token, at most ``cap``)."""
        self._flush()
        safe = torch.from_numpy(self.table.string_safe)
        quote = self.table.quote_id
        for n in range(max(1, cap)):
            scores = self.logits[: self.table.vocab_size].clone()
            allowed = safe.clone()
            allowed[quote] = n > 0
            tok = self._pick(scores.masked_fill(~allowed, float("-inf")))
            if tok == quote:
                self.pending.append(tok)  # fed together with the literal that follows
                return
            self._feed([tok])
        self.literal('"')

    # -- schema walk -------------------------------------------------------------------------
    def run(self, prompt_ids: Sequence[int], schema: dict[str, Any]) -> str:
        self._feed(prompt_ids)
        self.n_prompt = len(self.ids)
        self.value(schema, "", defaultdict(set))
        self.ids.extend(self.pending)  # the closing literals need no forward pass
        self.pending = []
        return self.tok.decode(self.ids[self.n_prompt :], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _string_cap(self, schema: dict[str, Any]) -> int:
        cap = self.max_string_tokens
        if "maxLength" in schema:  # ~3 characters per token is a safe bound for English
            cap = min(cap, max(1, int(schema["maxLength"]) // 3))
        return max(1, min(cap, self.max_tokens - self.n_generated))

    def value(self, schema: dict[str, Any], path: str, used: dict[str, set[str]]) -> None:
        if "const" in schema:
            self.literal(json.dumps(schema["const"]))
            return
        if "enum" in schema:
            values = list(schema["enum"])
            fresh = [v for v in values if json.dumps(v) not in used[path]] or values
            if all(isinstance(v, str) for v in fresh):
                self.literal('"')
                i = self.choice([json.dumps(v, ensure_ascii=False)[1:] for v in fresh])
            else:
                opts = _prefix_free([json.dumps(v, ensure_ascii=False) for v in fresh])
                i = self.choice(opts)
            used[path].add(json.dumps(fresh[i]))
            return
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and "properties" in schema):
            self.literal("{")
            for j, (key, sub) in enumerate((schema.get("properties") or {}).items()):
                self.literal(("" if j == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": ")
                self.value(sub, f"{path}/{key}", used)
            self.literal("}")
        elif kind == "array":
            self._array(schema)
        elif kind == "string":
            self.literal('"')
            self.free_string(self._string_cap(schema))
        elif kind in ("number", "integer"):
            self.choice(_prefix_free(number_options(schema)))
        elif kind == "boolean":
            self.choice(["true", "false"])
        elif kind == "null":
            self.literal("null")
        else:
            raise ValueError(f"schema construct not supported by the skeleton decoder: {json.dumps(schema)[:120]}")

    def _array(self, schema: dict[str, Any]) -> None:
        items = schema.get("items") or {"type": "string"}
        hi = int(schema.get("maxItems", 8))
        lo = min(max(1, int(schema.get("minItems", 0))), hi)
        self.literal("[")
        seen: dict[str, set[str]] = defaultdict(set)  # enum values already used in this array
        for k in range(hi):
            self.value(items, "", seen)
            if k + 1 >= hi:
                break
            if k + 1 < lo:
                self.literal(", ")
                continue
            if self.n_generated >= self.max_tokens:
                break
            if self.choice(["]", ", "]) == 0:
                return  # the model closed the array
        self.literal("]")
