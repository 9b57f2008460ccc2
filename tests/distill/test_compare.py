from __future__ import annotations

import pytest

from personarec.distill.compare import agreement, f1, future_scores, jaccard, topics
from personarec.distill.teacher_data import restrict_to_prompt, student_config, teacher_config
from personarec.personas.config import PersonasConfig


def _p(interests, explore):
    return {"summary": "s", "interests": [{"cluster": c, "weight": 0.5} for c in interests],
            "explore": [{"cluster": c, "reason": "r"} for c in explore]}  # fmt: skip


def test_topic_f1_and_jaccard():
    assert f1({"a", "b"}, {"b", "c"}) == pytest.approx(0.5)
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert f1(set(), {"a"}) == 0.0
    s, t = {"u1": _p(["a", "b"], ["x"])}, {"u1": _p(["a"], ["y"]), "u2": _p(["a"], ["x"])}
    agr = agreement(s, t)
    assert agr["n_users"] == 1
    assert agr["interests_f1"] == pytest.approx(2 / 3, abs=1e-4) and agr["explore_f1"] == 0.0
    assert agr["all_f1"] == pytest.approx(2 * 1 / (3 + 2), abs=1e-4)


def test_future_scores():
    personas = {"u1": _p(["a"], ["x"]), "u2": _p(["a", "b"], ["y"])}
    fut = {"u1": {"x", "c"}, "u2": {"a"}}
    sc = future_scores(personas, fut)
    assert sc["explore_hit_rate"] == 0.5
    assert sc["exploit_precision"] == pytest.approx((0 + 0.5) / 2, abs=1e-4)
    assert sc["topic_f1"] == pytest.approx((f1({"a", "x"}, {"x", "c"}) + f1({"a", "b", "y"}, {"a"})) / 2, abs=1e-4)
    assert topics(personas["u2"], "explore") == {"y"}


def test_targets_are_restricted_to_what_the_student_can_write():
    payload = _p(["a", "b"], ["x", "future-only"])
    target, dropped = restrict_to_prompt(payload, ["a", "b"], ["x", "y"])
    assert [e["cluster"] for e in target["explore"]] == ["x"] and dropped == 1
    none, _ = restrict_to_prompt(_p(["a"], ["future-only"]), ["a"], ["x"])
    assert none is None  # nothing the student's grammar allows: no example


def test_student_never_sees_the_future_and_teacher_does():
    pc = PersonasConfig(history_stage="test")
    s, t = student_config(pc), teacher_config(pc)
    assert (s.mode, s.hindsight, s.history_stage) == ("single", False, "valid")
    assert (t.mode, t.hindsight, t.history_stage) == ("teacher", True, "valid")
