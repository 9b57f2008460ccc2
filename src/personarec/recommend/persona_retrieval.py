"""Persona retrieval (``persona_retrieval``): candidates from the persona's own clusters.

A query vector per user (``query="persona"``: the persona text embedded with the item model;
``"history"``: recency-weighted mean of the history's item vectors), candidates retrieved with
faiss *inside* each interest cluster (budget shared by persona weight) and each explore cluster
(:class:`~personarec.recommend.cluster_index.ClusterIndex`), scored by similarity (optionally mixed,
as percentile ranks, with a base model's score and training popularity), then laid out so that
every prefix of the first ``slots`` items holds ``round(p * explore_quota)`` explore items. A short
interest pool is backfilled with the most similar items outside the explore clusters. On ML-100k
similarity alone is weak (titles + genres); ``sasrec_weight``/``popularity_weight`` matter there.
Shared behaviour (profiles, full score matrix, persistence): :mod:`personarec.recommend.persona_model`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from personarec.data.splits import UserSequences
from personarec.errors import ConfigError
from personarec.personas.profiles import UserProfile
from personarec.recommend.base import (
    register,
)
from personarec.recommend.cluster_index import ClusterIndex
from personarec.recommend.persona_model import PersonaModel, PersonaModelConfig
from personarec.recommend.explain import describe, explore_reason
from personarec.recommend.persona_ranking import (
    Profile,
    Ranked,
    RankRequest,
    interleave,
    percentile,
    round_robin,
    topic_mask,
)


class PersonaRetrievalConfig(PersonaModelConfig):
    query: Literal["persona", "history"] = Field(
        "persona",
        description="persona: the persona text embedded with the item model; history: recency-weighted mean of history item vectors",
    )
    per_cluster: int = Field(
        50,
        ge=1,
        description="candidates per explore cluster; interest clusters share per_cluster x n_interests by weight",
    )
    slots: int = Field(
        100,
        ge=1,
        description="length of the persona-shaped head of the list: the quota holds for every prefix up to it",
    )
    half_life: float = Field(20.0, gt=0, description="recency half-life (events) of the history query")
    max_history: int = Field(200, ge=1, description="most recent events the history query reads")
    interest_boost: float = Field(
        0.1, ge=0.0, description="added to an interest candidate's score x its cluster weight / top weight"
    )
    sasrec_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="mix of the base model's percentile rank into the score (0 = similarity only)",
    )
    popularity_weight: float = Field(
        0.0, ge=0.0, le=1.0, description="mix of the training-popularity percentile rank into the score"
    )
    base: dict[str, Any] | None = Field(
        None,
        description="base model sub-config (name + fields) fitted when sasrec_weight > 0 and no `base` is passed; None = sasrec defaults",
    )

    @model_validator(mode="after")
    def _weights_sum(self) -> PersonaRetrievalConfig:
        if self.sasrec_weight + self.popularity_weight > 1:
            raise ValueError(
                "sasrec_weight + popularity_weight must be <= 1 (the rest is the similarity's weight)"
            )
        return self


@register
class PersonaRetrieval(PersonaModel):
    """Retrieve from the persona's interest and explore clusters; see the module docstring."""

    name = "persona_retrieval"
    config_class = PersonaRetrievalConfig

    def __init__(self, config: PersonaRetrievalConfig | None = None) -> None:
        super().__init__(config)
        self.index: ClusterIndex | None = None
        self._text_cache: dict[str, np.ndarray] = {}

    @property
    def cfg(self) -> PersonaRetrievalConfig:
        return self.config  # type: ignore[return-value]

    def _needs_base(self) -> bool:
        return self.cfg.sasrec_weight > 0

    def _model_reason(self) -> str:
        return (
            "Close to your persona." if self.cfg.query == "persona" else "Close to what you watched recently."
        )

    def _after_fit(self, fitting: bool = False) -> None:
        assert self.space is not None
        self.index = ClusterIndex(self.space.embeddings, self.space.fine, self.space.n_fine)
        self._text_cache = {}
        if fitting and self.cfg.query == "persona":  # fail early; after load, attach() may still come
            self._resolve_embedder(check_only=True)

    # -- queries ------------------------------------------------------------------------------
    def _resolve_embedder(self, check_only: bool = False) -> Any:
        if self.embedder is not None:
            return self.embedder
        assert self.space is not None
        items_cfg = self.space.meta.get("config")
        if not items_cfg:
            raise ConfigError(
                "persona_retrieval query='persona' needs the item space's text model (space.meta['config'], "
                "set by `personarec items build`) or an `embedder` in the fit context / attach(); "
                "or use query='history'"
            )
        if check_only:
            return None
        from personarec.items.config import ItemsConfig
        from personarec.items.embed import TextEmbedder

        self.embedder = TextEmbedder(ItemsConfig.model_validate(items_cfg))
        return self.embedder

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of persona texts with the item model (memoised per text)."""
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            embedder = self._resolve_embedder()
            if hasattr(embedder, "embed"):
                vecs, _ = embedder.embed(missing, show_progress=False)
            else:
                vecs = embedder(missing)
            vecs = np.asarray(vecs, dtype=np.float32)
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            self._text_cache.update(zip(missing, vecs, strict=True))
        dim = self.space.embeddings.shape[1] if self.space is not None else 0
        out = np.stack([self._text_cache[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)
        if out.shape[1] != dim:
            raise ConfigError(
                f"persona embeddings have dim {out.shape[1]}, item embeddings {dim}: use the item model"
            )
        return out

    def history_query(self, seq: np.ndarray) -> np.ndarray:
        assert self.space is not None
        seq = np.asarray(seq, dtype=np.int64)[-self.cfg.max_history :]
        if not len(seq):
            return np.zeros(self.space.embeddings.shape[1], dtype=np.float32)
        w = np.power(0.5, np.arange(len(seq) - 1, -1, -1) / self.cfg.half_life)
        q = (w[:, None] * self.space.embeddings[seq]).sum(axis=0)
        return (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)

    def queries(self, profiles: list[UserProfile], seqs: list[np.ndarray]) -> np.ndarray:
        if self.cfg.query == "persona":
            return self.embed_texts([p.text for p in profiles])
        return np.stack([self.history_query(s) for s in seqs]) if seqs else np.zeros((0, 1), np.float32)

    # -- retrieval ----------------------------------------------------------------------------
    def _mix(self, q: np.ndarray, requests: list[RankRequest]) -> tuple[np.ndarray, np.ndarray]:
        """Candidate scores ``[B, n]`` (similarity, optionally mixed with the base model and
        popularity as percentile ranks) and the popularity percentile (tie-breaker)."""
        cfg, space = self.cfg, self.space
        assert space is not None
        sim = q @ space.embeddings.T
        pop = (
            percentile(self.popularity[None])[0]
            if len(self.popularity)
            else np.zeros(self.n_items, np.float32)
        )
        w_base = cfg.sasrec_weight if self.base is not None else 0.0
        if w_base <= 0 and cfg.popularity_weight <= 0:
            return sim, pop
        mix = (1 - w_base - cfg.popularity_weight) * percentile(sim) + cfg.popularity_weight * pop[None]
        if w_base > 0:
            import torch

            torch.set_num_threads(cfg.num_threads)
            rows, history = UserSequences.at_rows([r.user_idx for r in requests], [r.items for r in requests])
            mix = mix + w_base * percentile(self.base.score(rows, history))
        return mix, pop

    def _heads(self, requests: list[RankRequest], exclude_seen: bool) -> list[tuple[list[Ranked], np.ndarray]]:
        import faiss

        assert self.space is not None and self.index is not None, "fit or load the model first"
        cfg, space = self.cfg, self.space
        faiss.omp_set_num_threads(cfg.num_threads)
        seqs = [np.asarray(r.items, dtype=np.int32) for r in requests]
        profiles = [self.profile_for(r) for r in requests]
        shaped = [self.shaped_profile(r, p) for r, p in zip(requests, profiles, strict=True)]
        q = self.queries(profiles, seqs)
        mix, pop = self._mix(q, requests)
        by_name = space.cluster_by_name()
        plans = [self._plan(p, by_name, self.explore_share(r)) for p, r in zip(shaped, requests, strict=True)]

        # one (query, cluster) row per interest and explore cluster of every request; `want` unseen
        # items are needed from it, so the search asks for want + (seen items of that cluster)
        rows_user, rows_cluster, rows_want, rows_k = [], [], [], []
        for b, (interests, explore, share) in enumerate(plans):
            seen_counts = np.bincount(space.fine[seqs[b]], minlength=space.n_fine) if exclude_seen else None
            total = sum(w for _, w in interests) or 1.0
            budget = cfg.per_cluster * len(interests)
            wanted = [(c, max(1, int(round(budget * w / total)))) for c, w in interests]
            if share > 0:
                wanted += [(c, cfg.per_cluster) for c, _ in explore]
            for c, want in wanted:
                rows_user.append(b)
                rows_cluster.append(c)
                rows_want.append(want)
                rows_k.append(want + (int(seen_counts[c]) if seen_counts is not None else 0))
        _, found = self.index.search(
            q[rows_user], np.array(rows_cluster, dtype=np.int64), max(rows_k, default=1)
        )
        per_user: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in requests]
        for r, (b, c, want) in enumerate(zip(rows_user, rows_cluster, rows_want, strict=True)):
            per_user[b].append((c, want, found[r]))
        out = []
        for b, (prof, plan) in enumerate(zip(shaped, plans, strict=True)):
            excluded = np.zeros(self.n_items, dtype=bool)
            if exclude_seen:
                excluded[seqs[b]] = True
            excluded |= topic_mask(space, prof.blocked, by_name)[space.fine]
            slots = self._layout(prof, plan, per_user[b], mix[b], excluded)
            # everything else in similarity order, at most ~1 (< SLOT_BASE); popularity breaks ties
            rest = (mix[b] - float(mix[b].max(initial=0.0)) + 1.0 + 1e-6 * pop).astype(np.float32)
            out.append((slots, rest))
        return out

    @staticmethod
    def _plan(
        prof: Profile, by_name: dict[str, int], share: float
    ) -> tuple[list[tuple[int, float]], list[tuple[int, str]], float]:
        """Interest clusters (with weights) and explore clusters (with reasons; retrieved from only
        with a share > 0, but kept out of the exploit backfill either way)."""
        interests = [(by_name[c], w) for c, w in prof.interests.items() if c in by_name]
        explore = [(by_name[c], r) for c, r in prof.explore if c in by_name]
        return interests, explore, share

    def _layout(
        self,
        prof: Profile,
        plan: tuple[list[tuple[int, float]], list[tuple[int, str]], float],
        found: list[tuple[int, int, np.ndarray]],
        mix: np.ndarray,
        excluded: np.ndarray,
    ) -> list[Ranked]:
        """Exploit pool (interest candidates by boosted score) and explore queues (per cluster, by
        score, taken round-robin) interleaved by :func:`interleave`."""
        assert self.space is not None
        names, fine = self.space.fine_names, self.space.fine
        interests, explore, share = plan
        weights = dict(interests)
        top_w = max(weights.values(), default=0.0) or 1.0
        exploit: dict[int, float] = {}
        queues: list[list[int]] = []
        for j, (c, want, ids) in enumerate(found):
            ids = ids[ids >= 0]
            ids = ids[~excluded[ids]][:want]
            if j < len(interests):  # rows hold the interest clusters first, then explore clusters
                for i in ids:
                    exploit[int(i)] = float(mix[i]) + self.cfg.interest_boost * weights[c] / top_w
            else:
                queues.append([int(i) for i in ids[np.argsort(-mix[ids], kind="stable")]])
        exploit_items = sorted(exploit, key=lambda i: (-exploit[i], i))
        explore_items = [i for i in round_robin(queues, self.n_items) if i not in exploit]
        # interest candidates are few (a share of per_cluster per cluster): backfill the exploit side
        # with the most similar items outside the explore clusters, so a short pool neither stops
        # the list early nor lets explore-cluster items in through the similarity-ordered tail
        need = self.cfg.slots - len(exploit_items)
        if need > 0:
            cand = np.array(mix, dtype=np.float64, copy=True)
            cand[excluded] = -np.inf
            cand[exploit_items + explore_items] = -np.inf
            if explore:
                cand[np.isin(fine, [c for c, _ in explore])] = -np.inf
            m = min(need, int(np.isfinite(cand).sum()))
            if m > 0:
                top = np.argpartition(-cand, m - 1)[:m]
                top = top[np.lexsort((top, -cand[top]))]
                for i in top:
                    exploit[int(i)] = float(mix[i])
                exploit_items += [int(i) for i in top]
        reasons, fallback = dict(prof.explore), self._model_reason()
        records = []
        for i in interleave(exploit_items, explore_items, share, leftover=False)[: self.cfg.slots]:
            name = names[fine[i]]
            if i in exploit:
                kind, reason = describe(name, interests=prof.interests, added=prof.added, explore={}, fallback_reason=fallback)
                records.append(Ranked(i, exploit[i], kind, name, reason))
            else:
                records.append(Ranked(i, float(mix[i]), "explore", name, explore_reason(name, reasons.get(name, ""))))
        return records
