"""Grounding: the persona schema, the post-check, and the vectorized trie against the dict trie."""

from __future__ import annotations

import json

import numpy as np
import pytest

from personarec.personas.constrain import DictTrie, VectorTrie, check_persona_output, persona_json_schema

VOCAB = 97


def _random_sets(rng: np.random.Generator, n_sets: int) -> list[list[list[int]]]:
    """Random token sequences with shared prefixes and prefix-of-another strings."""
    sets = []
    for _ in range(n_sets):
        seqs: list[list[int]] = []
        for _ in range(int(rng.integers(1, 60))):
            if seqs and rng.random() < 0.5:  # extend or branch off an existing sequence
                base = seqs[int(rng.integers(len(seqs)))]
                cut = int(rng.integers(0, len(base) + 1))
                seq = base[:cut] + rng.integers(0, VOCAB, int(rng.integers(0 if cut else 1, 4))).tolist()
            else:
                seq = rng.integers(0, VOCAB, int(rng.integers(1, 7))).tolist()
            if seq:
                seqs.append(seq)
        sets.append(seqs)
    return sets


@pytest.mark.parametrize("seed", range(12))
def test_vector_trie_matches_dict_trie_on_random_walks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sets = _random_sets(rng, int(rng.integers(1, 5)))
    ref, vec = DictTrie(sets, VOCAB), VectorTrie.build(sets, VOCAB)
    csr = VectorTrie.build(sets, VOCAB)
    csr.child_table = None  # the CSR gather path (used for forests with a huge fan-out)
    batch = 64
    roots = rng.integers(0, len(sets), batch)
    r_states, v_states = ref.start(roots.tolist()), vec.start(roots)
    checked = 0
    for _ in range(10):
        r_mask, v_mask = ref.allowed_mask(r_states), vec.allowed_mask(v_states)
        np.testing.assert_array_equal(r_mask, v_mask)
        np.testing.assert_array_equal(r_mask, csr.allowed_mask(v_states))
        assert [DictTrie.string_id(s) for s in r_states] == vec.string_ids(v_states).tolist()
        assert [DictTrie.is_leaf(s) for s in r_states] == vec.is_leaf(v_states).tolist()
        # mostly follow the trie, sometimes take an off-trie token (the state dies in both)
        toks = np.empty(batch, dtype=np.int64)
        for b in range(batch):
            allowed = np.flatnonzero(v_mask[b])
            toks[b] = rng.choice(allowed) if len(allowed) and rng.random() < 0.9 else rng.integers(0, VOCAB)
        r_states, v_states = ref.advance(r_states, toks), vec.advance(v_states, toks)
        assert [s is None for s in r_states] == (v_states < 0).tolist()
        checked += int(v_mask.any(axis=1).sum())
    assert checked > batch  # the walks really visited inner nodes


def test_vector_trie_reuses_output_buffer_and_every_string_is_reachable() -> None:
    sets = [[[5, 6, 7], [5, 6], [8]], [[1], [1, 2, 3]]]
    vec = VectorTrie.build(sets, 10)
    for root, seqs in enumerate(sets):
        for sid, seq in enumerate(seqs):
            state = vec.start([root])
            for tok in seq:
                assert vec.allowed_mask(state)[0, tok]
                state = vec.advance(state, np.array([tok]))
            assert vec.string_ids(state)[0] == sid
    out = np.zeros((2, 10), dtype=bool)
    mask = vec.allowed_mask(vec.start([0, 1]), out=out)
    assert mask is out and set(np.flatnonzero(out[0])) == {5, 8} and set(np.flatnonzero(out[1])) == {1}


def test_mask_logits_only_touches_active_rows() -> None:
    torch = pytest.importorskip("torch")
    vec = VectorTrie.build([[[3, 4], [2]]], 6)
    scores = torch.zeros(2, 6)
    out = vec.mask_logits(scores, vec.start([0, 0]), active=np.array([True, False]))
    assert torch.isinf(out[0]).tolist() == [True, True, False, False, True, True]
    assert not torch.isinf(out[1]).any() and not torch.isinf(scores).any()


def test_trie_logits_processor_forces_an_allowed_string() -> None:
    torch = pytest.importorskip("torch")
    from personarec.personas.constrain import TrieLogitsProcessor

    seqs = [[7, 8, 9], [7, 3], [4]]
    vec = VectorTrie.build([seqs], 12)
    proc = TrieLogitsProcessor(vec, [0, 0], prompt_length=2)
    ids = torch.tensor([[1, 2], [1, 2]])
    gen = torch.Generator().manual_seed(0)
    while not proc.done.all():
        scores = proc(ids, torch.randn(2, 12, generator=gen))
        nxt = scores.argmax(-1)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    proc(ids, torch.zeros(2, 12))
    for row, sid in zip(ids[:, 2:].tolist(), vec.string_ids(proc.states).tolist()):
        assert sid >= 0 and row[: len(seqs[sid])] == seqs[sid]


def test_persona_schema_enums_and_caps() -> None:
    schema = persona_json_schema(["A", "B", "A"], ["C"], max_interests=5, n_explore=3)
    props = schema["properties"]
    assert props["interests"]["items"]["properties"]["cluster"]["enum"] == ["A", "B"]
    assert props["interests"]["maxItems"] == 2  # capped at the number of allowed names
    assert props["explore"]["minItems"] == props["explore"]["maxItems"] == 1
    assert list(props) == ["summary", "interests", "explore"]
    with pytest.raises(ValueError):
        persona_json_schema(["A"], [])


def test_check_persona_output_flags_each_violation() -> None:
    good = {"summary": "s", "interests": [{"cluster": "A", "weight": 0.5}], "explore": [{"cluster": "C", "reason": "r"}]}
    assert check_persona_output(json.dumps(good), ["A", "B"], ["C", "D"]).ok
    assert not check_persona_output("{not json", ["A"], ["C"]).parsed
    bad = {**good, "explore": [{"cluster": "Z", "reason": "r"}]}
    assert not check_persona_output(bad, ["A"], ["C"]).grounded
    stale = {**good, "explore": [{"cluster": "A", "reason": "r"}]}
    rep = check_persona_output(stale, ["A"], ["A", "C"])
    assert rep.grounded and not rep.novel
    dup = {**good, "explore": [{"cluster": "C", "reason": "r"}, {"cluster": "C", "reason": "q"}]}
    assert not check_persona_output(dup, ["A"], ["C"]).distinct
    assert not check_persona_output(good, ["A"], ["C"], history_clusters=["C"]).novel
