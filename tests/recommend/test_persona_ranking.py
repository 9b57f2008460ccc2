"""The persona-shaped ranking on a tiny hand-made item space (no data files needed)."""

from __future__ import annotations

import numpy as np

from personarec.items.space import ItemSpace
from personarec.personas.schema import PersonaEdits
from personarec.recommend.persona_ranking import RankingConfig, apply_edits, rank
from tests.serve.personas_fixtures import make_persona

NAMES = ["drama", "comedy", "noir", "jazz"]


def space() -> ItemSpace:
    fine = np.repeat(np.arange(4), 10).astype(np.int32)  # 40 items, 10 per cluster
    n = len(fine)
    return ItemSpace(
        item_ids=np.array([str(i) for i in range(n)], dtype=object), embeddings=np.eye(n, 4, dtype=np.float32),
        fine=fine, coarse=np.zeros(n, np.int32), semantic_ids=np.stack([fine, np.arange(n)], 1).astype(np.int32),
        fine_names=NAMES, coarse_names=["all"], fine_parent=np.zeros(4, np.int32),
    )  # fmt: skip


def scores() -> np.ndarray:
    return np.linspace(1.0, 0.0, 40).astype(np.float32)  # the model prefers drama, then comedy, ...


def test_interest_boost_pulls_cluster_up():
    sp = space()
    plain = rank(scores(), np.zeros(0, np.int32), sp, apply_edits(None, None), 10, 0.0, RankingConfig())
    assert [r.cluster for r in plain] == ["drama"] * 10 and all(r.kind == "model" for r in plain)
    prof = apply_edits(make_persona("u", 1, interests=["comedy"], explore=["noir"]), None)
    boosted = rank(scores(), np.zeros(0, np.int32), sp, prof, 10, 0.0, RankingConfig(interest_boost=0.5))
    assert boosted[0].cluster == "comedy" and boosted[0].kind == "interest"


def test_explore_quota_seen_and_blocked():
    sp = space()
    prof = apply_edits(make_persona("u", 1, interests=["drama"], explore=["noir", "jazz"]), None)
    seen = np.array([0, 1, 2], dtype=np.int32)
    out = rank(scores(), seen, sp, prof, 10, 0.4, RankingConfig())
    assert len(out) == 10 and not {0, 1, 2} & {r.item for r in out}
    explore = [r for r in out if r.kind == "explore"]
    assert len(explore) == 4 and {r.cluster for r in explore} == {"noir", "jazz"}
    assert all(r.reason.startswith("Something new") for r in explore)
    edits = PersonaEdits(blocked_topics=["noir"], removed_interests=["drama"], added_topics=["comedy"])
    prof = apply_edits(make_persona("u", 1, interests=["drama"], explore=["noir", "jazz"]), edits)
    assert set(prof.interests) == {"comedy"} and [c for c, _ in prof.explore] == ["jazz"]
    out = rank(scores(), seen, sp, prof, 40, 0.25, RankingConfig(interest_boost=2.0))
    assert "noir" not in {r.cluster for r in out}
    assert out[0].kind == "added_topic" and out[0].cluster == "comedy"
    assert len(out) == 27  # 40 items - 3 seen - 10 blocked


def test_explore_items_are_spread_through_long_lists():
    """Every prefix holds its share of explore items (no pile-up at the end of long lists)."""
    sp = space()
    prof = apply_edits(make_persona("u", 1, interests=["drama"], explore=["noir", "jazz"]), None)
    out = rank(scores(), np.zeros(0, np.int32), sp, prof, 30, 0.3, RankingConfig())
    kinds = [r.kind == "explore" for r in out]
    assert len(out) == 30 and sum(kinds) == 9
    for p in range(1, 31):
        assert abs(sum(kinds[:p]) - p * 0.3) <= 1, f"prefix {p}: {sum(kinds[:p])} explore items"
