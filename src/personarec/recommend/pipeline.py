"""One ranking pipeline for evaluation and serving: scorer -> persona reranker -> explained list.

Stages (LensKit's scorer -> ranker -> reranker, as one object that both entry points call):

1. **score**: any recommender scores the request's history. Persona models
   (:class:`~personarec.recommend.persona_model.PersonaModel`) score a
   :class:`~personarec.recommend.persona_ranking.RankRequest` themselves: their persona reranker
   (exploit boost, explore quota, user edits) is part of the model, so the list evaluation measured
   is the list serving shows. Plain models score the history as a sequence.
2. **select**: seen items (unless the protocol keeps them) and the user's blocked topics are
   removed, then a deterministic top-k (ties to the lower item index). One seen-item rule per
   pipeline: the protocol card the model was fitted under (``model.exclude_seen``), unless the
   caller (an evaluation under another card, ``serve.ranking.exclude_seen``) sets it; persona
   rerankers follow the same rule, so no stage masks what another keeps.
3. **explain**: each item gets its kind and one-line reason (:mod:`personarec.recommend.explain`).

A plain model asked for an explore share (``RankRequest.explore > 0``, e.g. ``?explore=0.2``) gets
the persona reranker :func:`~personarec.recommend.persona_ranking.rank` on top; without one its
list is exactly its evaluated list. ``top_items`` (the evaluation harness) and ``rank`` (the API)
share stages 1-2, so serving a trained model returns the list offline evaluation scored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from personarec.data.splits import UserSequences
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.recommend.base import Recommender, top_k
from personarec.recommend.explain import describe, model_reason
from personarec.recommend.persona_model import PersonaModel
from personarec.recommend.persona_ranking import Ranked, RankingConfig, RankRequest, apply_edits, rank, topic_mask


class RankingPipeline:
    """The one path from histories to ranked lists (see the module docstring)."""

    def __init__(
        self,
        model: Recommender,
        space: ItemSpace | None = None,
        ranking: RankingConfig | None = None,
        *,
        exclude_seen: bool | None = None,
    ) -> None:
        """``space``: the catalogue's clusters (reasons, blocked topics); persona models bring their
        own. Evaluation needs none: it asks for item indices only. ``exclude_seen``: the seen-item
        rule (None = ``ranking.exclude_seen`` if set, else the model's fitted protocol card)."""
        space = space if space is not None else getattr(model, "space", None)
        if space is not None and model.n_items != space.n_items:
            raise ConfigError(f"model {model.name!r} scores {model.n_items} items, the item space has {space.n_items}")
        self.model = model
        self._space = space
        ranking = ranking or RankingConfig()
        if exclude_seen is None:
            exclude_seen = model.exclude_seen if ranking.exclude_seen is None else ranking.exclude_seen
        self.exclude_seen = bool(exclude_seen)
        self.ranking = ranking.model_copy(update={"exclude_seen": self.exclude_seen})
        self.by_name = space.cluster_by_name() if space is not None else {}
        #: persona models: how many evaluated lists (top_items) used an LLM persona vs the fallback
        self.persona_sources: Counter[str] = Counter()

    @property
    def space(self) -> ItemSpace:
        if self._space is None:
            raise ConfigError("this pipeline has no item space: reasons and topic edits need one")
        return self._space

    @property
    def persona_model(self) -> bool:
        return isinstance(self.model, PersonaModel)

    @property
    def added_topic_weight(self) -> float:
        """Weight of a topic the user added (the persona model's own setting, else the reranker's)."""
        return float(getattr(self.model.config, "added_topic_weight", self.ranking.added_topic_weight))

    def explore_share(self, request: RankRequest) -> float:
        """The explore share the request's list is built with."""
        if isinstance(self.model, PersonaModel):
            return self.model.explore_share(request)
        return float(request.explore or 0.0)

    def requests(self, users: np.ndarray, history: UserSequences) -> list[RankRequest]:
        """Offline requests: ``history[u]`` per user (persona models read their attached store)."""
        if isinstance(self.model, PersonaModel):
            return self.model.requests_for(users, history)
        return [RankRequest(user_id=str(u), items=history[int(u)], user_idx=int(u)) for u in users]

    # -- stages 1-2 ------------------------------------------------------------------------------
    def score(
        self, requests: Sequence[RankRequest], *, exclude_seen: bool | None = None
    ) -> tuple[np.ndarray, list[list[Ranked]]]:
        """Score rows ``[len(requests), n_items]`` and, for persona models, each list's head
        (built under ``exclude_seen``, None = the pipeline's rule)."""
        requests = list(requests)
        if isinstance(self.model, PersonaModel):
            return self.model.score_requests(requests, self.exclude_seen if exclude_seen is None else exclude_seen)
        rows, history = UserSequences.at_rows([r.user_idx for r in requests], [r.items for r in requests])
        scores = np.asarray(self.model.score(rows, history), dtype=np.float32)
        return scores, [[] for _ in requests]

    def select(
        self, scores: np.ndarray, requests: Sequence[RankRequest], k: int, *, exclude_seen: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per row after removing seen items (``exclude_seen`` None = the pipeline's rule)
        and blocked topics (in place on ``scores``)."""
        exclude_seen = self.exclude_seen if exclude_seen is None else exclude_seen
        for row, request in enumerate(requests):
            if exclude_seen and len(request.items):
                scores[row, np.asarray(request.items, dtype=np.int64)] = -np.inf
            if request.edits is not None and request.edits.blocked_topics:
                scores[row, topic_mask(self.space, request.edits.blocked_topics, self.by_name)[self.space.fine]] = -np.inf
        return top_k(scores, k)

    def top(
        self, users: np.ndarray, history: UserSequences, k: int, *, exclude_seen: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and their scores per user (``[len(users), k]`` each, best first):
        the list :meth:`rank` explains, without the reasons."""
        requests = self.requests(np.asarray(users, dtype=np.int64), history)
        scores, _ = self.score(requests, exclude_seen=exclude_seen)
        if isinstance(self.model, PersonaModel):  # memoised profiles: reads what scoring just built
            for r in requests:
                self.persona_sources["llm" if self.model.profile_for(r).from_llm else "fallback"] += 1
        return self.select(scores, requests, k, exclude_seen=exclude_seen)

    def top_items(
        self, users: np.ndarray, history: UserSequences, k: int, *, exclude_seen: bool | None = None
    ) -> np.ndarray:
        """Item indices ``[len(users), k]`` (evaluation: no reasons needed, same list as :meth:`rank`)."""
        return self.top(users, history, k, exclude_seen=exclude_seen)[0]

    # -- stage 3 ---------------------------------------------------------------------------------
    def rank(self, requests: Sequence[RankRequest], k: int) -> list[list[Ranked]]:
        """Explained top-``k`` lists (the API): :meth:`score`, :meth:`select`, then reasons."""
        requests = list(requests)
        scores, heads = self.score(requests)
        out = []
        for row, request in enumerate(requests):
            if request.explore and not self.persona_model:
                out.append(self._reranked(request, scores[row], k))
                continue
            items, top = self.select(scores[row : row + 1], [request], k)
            keep = np.isfinite(top[0])  # never list a seen or blocked item, even if k is long
            out.append(self._explain(request, items[0][keep], heads[row], top[0][keep]))
        return out

    def _reranked(self, request: RankRequest, row: np.ndarray, k: int) -> list[Ranked]:
        prof = apply_edits(request.persona, request.edits, self.added_topic_weight)
        return rank(
            row, np.asarray(request.items), self.space, prof, k, float(request.explore or 0.0), self.ranking,
            model_name=self.model.name, by_name=self.by_name,
        )  # fmt: skip

    def _explain(
        self, request: RankRequest, items: np.ndarray, head: list[Ranked], scores: np.ndarray
    ) -> list[Ranked]:
        if isinstance(self.model, PersonaModel):
            return self.model.describe_items(request, items, head, scores)
        prof = apply_edits(request.persona, request.edits, self.added_topic_weight)
        explore, fallback = dict(prof.explore), model_reason(self.model.name)
        out = []
        for item, score in zip(np.asarray(items, dtype=np.int64), scores, strict=True):
            name = self.space.fine_names[self.space.fine[item]]
            kind, reason = describe(name, interests=prof.interests, added=prof.added, explore=explore, fallback_reason=fallback)
            out.append(Ranked(int(item), float(score), kind, name, reason))
        return out
