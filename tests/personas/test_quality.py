"""Persona quality metrics on hand-made personas whose right answers are known."""

from __future__ import annotations

import pytest

from personarec.personas.quality import evaluate_personas
from personarec.personas.schema import ExploreTopic, Interest, Persona, Provenance
from personarec.personas.transitions import TransitionStats
from tests.personas.spaces import genre_space


@pytest.fixture(scope="module")
def space(ml100k_split):
    return genre_space(ml100k_split)


def _persona(uid: str, version: int, interests: list[str], explore: list[str], **prov) -> Persona:
    return Persona(
        user_id=uid,
        version=version,
        summary="s",
        interests=[Interest(cluster=c, weight=0.5) for c in interests],
        explore=[ExploreTopic(cluster=c, reason="r") for c in explore],
        provenance=Provenance(model="m", backend="b", prompt_version="p", **prov),
    )


def _users_with_novel_test_item(split, space, n):
    full, test = split.history("test"), split.targets("test")
    out = []
    for u in range(split.n_users):
        seen = set(space.fine[full[u]].tolist())
        c = int(space.fine[test[u][0]])
        if c not in seen:
            out.append((u, c, seen))
        if len(out) == n:
            break
    return out


def test_explore_hit_and_exploit_precision_recall(ml100k_split, space):
    split = ml100k_split
    full = split.history("test")
    users = _users_with_novel_test_item(split, space, 4)
    assert len(users) == 4
    personas = []
    for k, (u, c, seen) in enumerate(users):
        names = space.fine_names
        other_unseen = next(x for x in range(space.n_fine) if x not in seen and x != c)
        explore = [names[c]] if k < 2 else [names[other_unseen]]  # 2 of 4 users: hit
        interests = [names[int(space.fine[full[u][-1]])]]
        personas.append(_persona(str(split.user_ids[u]), len(full[u]), interests, explore))
    t = TransitionStats.fit(split.history("train"), space.fine, space.n_fine)
    r = evaluate_personas(personas, split, space, transitions=t)
    assert r.n_personas == 4 and r.grounding_rate == 1.0 and r.explore_novelty_rate == 1.0
    assert r.llm.n_users == 4 and r.llm.explore_hit_rate == 0.5
    assert r.llm.novel_future_rate == 1.0  # every chosen user's test item is in an unseen cluster
    assert r.llm.exploit_precision == 0.0 and r.llm.exploit_recall == 0.0  # future is novel: no overlap
    # the baseline is computed the same way for the same users
    expected = sum(c in t.most_frequent(seen, 1) for (_, c, seen) in users) / 4
    assert r.llm.baseline_hit_rate == pytest.approx(expected)


def test_grounding_violations_are_found(ml100k_split, space):
    split = ml100k_split
    full = split.history("test")
    u = 0
    seen_names = sorted({space.fine_names[c] for c in space.fine[full[u]]})
    unseen = [n for n in space.fine_names if n not in seen_names]
    good = _persona(str(split.user_ids[u]), len(full[u]), seen_names[:2], unseen[:1])
    leaked = _persona(str(split.user_ids[1]), len(full[1]), [unseen[0]], [seen_names[0]])
    r = evaluate_personas([good, leaked], split, space)
    assert r.grounding_rate == 0.5
    assert r.n_fallback == 0 and r.n_llm == 2
    assert any("already in history" in p for p in r.problems) or any(
        "not in history" in p for p in r.problems
    )


def test_ground_truth_follows_persona_version(ml100k_split, space):
    """A persona from training events only is scored on valid + test; hindsight ones on test only."""
    split = ml100k_split
    train, valid, test = split.history("train"), split.targets("valid"), split.targets("test")

    def novel_both(u: int) -> bool:
        seen = set(space.fine[train[u]].tolist())
        vc, tc = int(space.fine[valid[u][0]]), int(space.fine[test[u][0]])
        return vc != tc and vc not in seen and tc not in seen

    u = next(u for u in range(split.n_users) if novel_both(u))
    vc = int(space.fine[valid[u][0]])
    names = space.fine_names
    interest = [names[int(space.fine[train[u][-1]])]]
    plain = _persona(str(split.user_ids[u]), len(train[u]), interest, [names[vc]])
    hind = _persona(str(split.user_ids[u]), len(train[u]), interest, [names[vc]], hindsight=True)
    assert evaluate_personas([plain], split, space).all.explore_hit_rate == 1.0  # valid item counts
    r = evaluate_personas([hind], split, space)
    assert r.hindsight.n_users == 1 and r.hindsight.explore_hit_rate == 0.0  # it saw valid: test only
    assert r.all.n_users == 0 and r.llm.n_users == 0


def test_ratio_ci_is_paired_and_brackets_the_ratio():
    import numpy as np

    from personarec.personas.quality import _ratio_ci

    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.1).astype(float)
    ratio, (lo, hi) = _ratio_ci(base.copy(), base)
    assert ratio == 1.0 and lo == hi == 1.0  # paired: the same users give the same rate every resample
    hit = np.maximum(base, (rng.random(400) < 0.1).astype(float))
    ratio, (lo, hi) = _ratio_ci(hit, base)
    assert 1.0 <= lo < ratio < hi
    assert _ratio_ci(hit, np.zeros(400)) == (None, None)
