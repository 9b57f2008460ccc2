from __future__ import annotations

import json

import pytest

from personarec.distill.dataset import build_examples, load_examples, save_examples, split_examples
from personarec.errors import DataError


def test_build_examples_canonicalises_targets(pairs):
    ex = build_examples(pairs, [f"u{i}" for i in range(len(pairs))])
    assert [e.user_id for e in ex] == ["u0", "u1", "u2", "u3"]
    assert json.loads(ex[0].target) == json.loads(pairs[0][1])
    # one spelling whatever the input spacing
    spaced = build_examples([(pairs[0][0], json.dumps(json.loads(pairs[0][1]), indent=4))])
    assert spaced[0].target == ex[0].target


@pytest.mark.parametrize(
    "messages, target, msg",
    [
        ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "{}", "assistant"),
        ([{"role": "system", "content": "x"}], "{}", "no user turn"),
        ([{"role": "user", "content": "x"}], "not json", "not valid JSON"),
        ([{"role": "user", "content": "x"}], "[1, 2]", "JSON object"),
    ],
)
def test_build_examples_rejects_bad_pairs(messages, target, msg):
    with pytest.raises(DataError, match=msg):
        build_examples([(messages, target)])


def test_split_is_by_user_and_roundtrips(tmp_path, pairs):
    ex = build_examples(pairs * 3, [f"u{i}" for i in range(12)])
    train, held = split_examples(ex, 0.25, seed=1)
    assert len(held) == 3 and not {e.user_id for e in train} & {e.user_id for e in held}
    assert load_examples(save_examples(ex, tmp_path / "ex.jsonl")) == ex
