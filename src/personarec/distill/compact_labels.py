"""Hindsight teacher labels for the compact student, at several history cut-offs per user.

The teacher knows what the user did next; the student must guess it from the history alone. For a
training user with training events ``e_1..e_n`` and cut-offs ``n - b`` (``b`` = 0, 3, ..., 27 by default):

- the student's input is the compact prompt of ``e_1..e_{n-b}`` exactly as serving builds it
  (history clusters, explore candidates from the transition prior, no future);
- the future is the next ``window`` training events (``b > 0``), or the user's VALIDATION events
  for the last cut-off (``b = 0``). Test events are never read;
- the answer: ``Next`` is the listed candidate the user reached first in that future; ``Likes``
  puts the listed clusters the user returned to in the future first (``high``), then the strongest
  others (``mid`` for the two strongest listed clusters, else ``low``), up to ``max_interests``.

A cut-off whose future reaches none of the listed candidates has no ``Next`` label and is skipped
(counted): the student learns which candidate, given that one is taken. This is the multi-step
teacher of the JSON path replaced by exact hindsight (a 135M model cannot out-reason the
future itself); a strong teacher behind an OpenAI-compatible server can write the same answer
format from the same facts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from personarec.data.splits import Split
from personarec.distill.dataset import DistillExample
from personarec.items.space import ItemSpace
from personarec.personas.compact import (
    CompactPrompt,
    answer_text,
    listed_candidates,
    listed_clusters,
)
from personarec.personas.config import PersonasConfig
from personarec.personas.history import ClusterStat, UserHistory, build_context, item_titles
from personarec.personas.transitions import TransitionStats


@dataclass
class LabelReport:
    """What the labeller produced and skipped."""

    users: int = 0
    cutoffs_tried: int = 0
    examples: int = 0
    skipped_short: int = 0  # history before the cut-off too short
    skipped_no_hit: int = 0  # the future reaches no listed candidate
    next_positions: dict[str, int] = field(default_factory=dict)  # label code -> examples (position bias check)
    high_interests: int = 0  # interests labelled high (the user returned to them)


def hindsight_likes(listed: list[ClusterStat], future: set[int], max_interests: int) -> list[tuple[int, str]]:
    """(listed position, level) pairs: returned-to clusters high, then the strongest others."""
    back = [i for i, s in enumerate(listed) if s.cluster in future]
    rest = [i for i in range(len(listed)) if i not in back]
    chosen = [(i, "high") for i in back] + [(i, "mid" if i < 2 else "low") for i in rest]
    return chosen[: max(len(back), min(3, max_interests))][:max_interests]


def hindsight_examples(
    split: Split,
    space: ItemSpace,
    transitions: TransitionStats,
    config: PersonasConfig,
    prompt: CompactPrompt,
    users: list[int] | None = None,
    *,
    cutoffs: tuple[int, ...] = (0, 3, 6, 9, 12, 15, 18, 21, 24, 27),
    window: int = 3,
    min_history: int = 5,
) -> tuple[list[DistillExample], LabelReport]:
    """Compact (prompt, answer) pairs for ``users`` (indices; default every user) at each cut-off."""
    train = split.history("train")
    valid = split.targets("valid")
    titles = item_titles(split)
    report = LabelReport()
    positions: Counter[str] = Counter()
    examples: list[DistillExample] = []
    for u in range(split.n_users) if users is None else users:
        lo, hi = int(train.indptr[u]), int(train.indptr[u + 1])
        items, stamps = train.items[lo:hi], train.timestamps[lo:hi]
        report.users += 1
        for back in cutoffs:
            report.cutoffs_tried += 1
            cut = len(items) - back
            if cut < min_history:
                report.skipped_short += 1
                continue
            future_items = valid[u] if back == 0 else items[cut : cut + window]
            history = UserHistory(int(u), str(split.user_ids[u]), items[:cut], stamps[:cut], "valid")
            ctx = build_context(history, space, transitions, config, titles)
            listed, cands = listed_clusters(ctx, config), listed_candidates(ctx, config)
            future = [int(c) for c in space.fine[np.asarray(future_items, dtype=np.int64)]]
            reached = [j for j, c in enumerate(cands) if c in future]
            if not reached:
                report.skipped_no_hit += 1
                continue
            nxt = min(reached, key=lambda j: future.index(cands[j]))  # the first one the user reached
            likes = hindsight_likes(listed, set(future), config.max_interests)
            report.high_interests += sum(level == "high" for _, level in likes)
            positions[str(nxt + 1)] += 1
            rows = [(s.name, s.count, s.events_since) for s in listed]
            msgs = prompt.messages(rows, [space.fine_names[c] for c in cands])
            examples.append(DistillExample(history.user_id, msgs, answer_text(likes, nxt)))
    report.examples = len(examples)
    report.next_positions = dict(sorted(positions.items()))
    return examples, report
