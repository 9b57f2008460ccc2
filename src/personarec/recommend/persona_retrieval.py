"""Persona-driven recommenders: retrieval from the persona's clusters with an exploration quota,
and a hybrid that keeps a base model's list and gives explore slots to the persona.

Both describe the history they are asked to score: ``score(users, history)`` builds each user's
profile from ``history[u]`` (the stored LLM persona when its ``version == len(history[u])`` and it
is :func:`~personarec.personas.profiles.usable`, else the deterministic fallback persona of that
history), so a validation run (train history) never sees a persona written after the validation
event, and a test run (train + valid) uses the persona of the longer history.

* :class:`PersonaRetrieval` (``persona_retrieval``) -- a query vector per user (``query="persona"``:
  the persona text embedded with the item model; ``"history"``: recency-weighted mean of the history's
  item vectors), candidates retrieved with faiss *inside* each interest cluster (budget shared by
  persona weight) and each explore cluster, scored by similarity (optionally mixed, as percentile
  ranks, with a base model's score and training popularity), then laid out so that every prefix of
  the first ``slots`` items holds ``round(p * explore_quota)`` explore items. A short interest pool
  is backfilled with the most similar items outside the explore clusters. On ML-100k similarity
  alone is weak (titles + genres); ``sasrec_weight``/``popularity_weight`` matter there.
* :class:`PersonaHybrid` (``persona_hybrid``) -- the base model's (SASRec by default) scores ranked by
  :func:`personarec.recommend.persona_ranking.rank`, the exact exploit + explore-quota + explanation logic used
  at serving time, so offline numbers measure what serving does.

``score()`` of both returns a full ``[n_users, n_items]`` matrix, as the evaluation harness ranks
it: the persona-shaped list (the "slots") gets the highest scores in slot order, every other item
follows in the underlying order (similarity, resp. the base model's), so full-ranking metrics are
well defined. :meth:`recommend_explained` returns the same lists as
:class:`~personarec.recommend.persona_ranking.Ranked` records with the one-line reason from the persona, and
:meth:`explain` gives the reason of any item.

Context keys of ``fit``: ``items`` (ItemSpace, required), ``persona_store`` (PersonaStore, optional:
LLM personas), ``base`` (an already fitted Recommender, optional), ``embedder`` (optional: a
``TextEmbedder`` or a callable ``list[str] -> float32 [n, dim]`` for ``query="persona"``; default:
the item space's own model from ``space.meta["config"]``).

Persistence: ``save`` writes the config, the item space (``items/``), the user ids, training
popularity and transition counts (the fallback persona's explore candidates) and the base model
(``base/``). The persona store and a context-given embedder are live resources, not state: re-attach
them with :meth:`attach` after ``load`` (without a store every user gets the fallback persona).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator

from personarec.data.splits import Split, UserSequences
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.personas.config import PersonasConfig
from personarec.personas.profiles import ProfileBuilder, UserProfile
from personarec.personas.transitions import TransitionStats
from personarec.recommend.base import (
    Recommender,
    RecommenderConfig,
    build_recommender,
    load_recommender,
    register,
)
from personarec.recommend.persona_ranking import Profile, Ranked, RankingConfig, quota_schedule, rank

Embedder = Callable[[list[str]], np.ndarray]

#: Slot scores live in (SLOT_BASE, SLOT_BASE + 1]; every other item scores at most ~1.
SLOT_BASE = 3.0


# -- the cluster-restricted ANN index ---------------------------------------------------------------
class ClusterIndex:
    """Inner-product ANN over the item vectors that is searched *inside one fine cluster* per query.

    A faiss ``IndexIVFFlat`` whose inverted lists ARE the fine clusters: items are added
    pre-assigned to their own cluster (``add_preassigned``; the coarse quantizer holds the cluster
    centroids but is never used to route), and every (query, cluster) pair is one row of a single
    batched ``search_preassigned`` call with ``nprobe = 1``. Why this over one flat index per
    cluster: one C++ call (no Python loop over users x clusters), one index object to build, and
    the per-row cost is only the scan of that cluster's list (~25 items per fine cluster by
    default, so ~10k items and thousands of (user, cluster) rows take milliseconds). Exact within
    the cluster (flat codes); "approximate" only in that it never looks outside it, which is the
    point. Rebuilt from the item space on load (cheaper than storing it).
    """

    def __init__(self, vectors: np.ndarray, fine: np.ndarray, n_clusters: int) -> None:
        import faiss
        from faiss.contrib.ivf_tools import add_preassigned

        x = np.ascontiguousarray(vectors, dtype=np.float32)
        fine = np.asarray(fine, dtype=np.int64)
        self.n_clusters, self.dim = int(n_clusters), int(x.shape[1])
        self.sizes = np.bincount(fine, minlength=self.n_clusters)
        centroids = np.zeros((self.n_clusters, self.dim), dtype=np.float32)
        np.add.at(centroids, fine, x)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        self.quantizer = faiss.IndexFlatIP(self.dim)
        self.quantizer.add(centroids)
        self.index = faiss.IndexIVFFlat(self.quantizer, self.dim, self.n_clusters, faiss.METRIC_INNER_PRODUCT)
        self.index.is_trained = True  # the lists are given, not learned
        # keep the ids array alive in this frame: add_preassigned rebinds its own `ids` to a raw
        # pointer, so a temporary would be freed before faiss copies it (garbage labels)
        ids = np.arange(len(x), dtype=np.int64)
        add_preassigned(self.index, x, fine, ids)
        self.index.nprobe = 1

    def search(self, queries: np.ndarray, clusters: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of cluster ``clusters[r]`` for query row ``r``: similarities and item
        indices ``[rows, k]``, best first; ``-1`` pads clusters with fewer than ``k`` items."""
        from faiss.contrib.ivf_tools import search_preassigned

        q = np.ascontiguousarray(queries, dtype=np.float32)
        rows = len(q)
        k = max(1, min(int(k), int(self.sizes.max(initial=1))))
        if rows == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        lists = np.asarray(clusters, dtype=np.int64).reshape(rows, 1)
        dist, idx = search_preassigned(self.index, q, k, lists, np.zeros((rows, 1), dtype=np.float32))
        return dist, idx


# -- shared machinery ------------------------------------------------------------------------------
class PersonaModelConfig(RecommenderConfig):
    explore_quota: float = Field(
        0.2, ge=0.0, le=1.0, description="share of list slots given to explore clusters"
    )
    exclude_seen: bool = Field(
        True, description="never put an item of the history into the persona-shaped list"
    )
    persona: dict[str, Any] = Field(
        default_factory=dict,
        description="personas config (max_interests, max_explore, prompt.recency_half_life...) of the fallback persona",
    )
    num_threads: int = Field(1, ge=1, description="faiss / torch threads while scoring")
    profile_cache: int = Field(8192, ge=0, description="profiles kept in memory, keyed by (user, history)")

    @field_validator("persona")
    @classmethod
    def _valid_persona_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        PersonasConfig.model_validate(value)  # fail at config time, not at fit
        return value


class _PersonaModel(Recommender):
    """Fit/persistence/profile plumbing shared by the two persona recommenders."""

    config_class = PersonaModelConfig
    uses_base: bool = True

    def __init__(self, config: PersonaModelConfig | None = None) -> None:
        super().__init__(config)
        self.space: ItemSpace | None = None
        self.builder: ProfileBuilder | None = None
        self.user_ids: np.ndarray = np.zeros(0, dtype=object)
        self.popularity: np.ndarray = np.zeros(0, dtype=np.float32)  # training counts per item
        self.base: Recommender | None = None
        self.persona_store: Any = None
        self.embedder: Any = None
        self._profiles: OrderedDict[tuple, UserProfile] = OrderedDict()

    @property
    def cfg(self) -> PersonaModelConfig:
        return self.config  # type: ignore[return-value]

    def personas_config(self) -> PersonasConfig:
        return PersonasConfig.model_validate(self.cfg.persona)

    # -- fitting ------------------------------------------------------------------------------
    def _needs_base(self) -> bool:
        return self.uses_base

    def _base_spec(self) -> dict[str, Any] | None:
        return getattr(self.cfg, "base", None)

    def fit(self, split: Split, **context: Any) -> Self:
        space = context.get("items")
        if not isinstance(space, ItemSpace):
            raise ConfigError(f"{self.name} needs the item space: fit(split, items=ItemSpace)")
        if space.n_items != split.n_items:
            raise ConfigError(f"item space has {space.n_items} items, the split {split.n_items}")
        self.n_items = split.n_items
        self.space = space
        self.user_ids = np.asarray(split.user_ids, dtype=object)
        train = split.history("train")
        self.popularity = np.bincount(train.items, minlength=split.n_items).astype(np.float32)
        self.builder = ProfileBuilder(
            space, TransitionStats.fit(train, space.fine, space.n_fine), self.personas_config()
        )
        self.persona_store = context.get("persona_store")
        self.embedder = context.get("embedder")
        self._profiles.clear()
        self.base = None
        if self._needs_base():
            base = context.get("base")
            if base is None:
                spec = dict(self._base_spec() or {"name": "sasrec"})
                base = build_recommender(str(spec.pop("name", "sasrec")), spec)
                rest = {k: v for k, v in context.items() if k not in ("base", "persona_store", "embedder")}
                base.fit(split, **rest)
            if base.n_items != split.n_items:
                raise ConfigError(
                    f"base model {base.name!r} scores {base.n_items} items, the split has {split.n_items}"
                )
            self.base = base
        self._after_fit(fitting=True)
        return self

    def _after_fit(self, fitting: bool = False) -> None:
        """Build derived structures (indices) once ``space`` is set (fit and load)."""

    def attach(self, *, persona_store: Any = None, embedder: Any = None) -> Self:
        """Re-attach live resources after :meth:`load` (or swap them): a persona store, an embedder."""
        if persona_store is not None:
            self.persona_store = persona_store
            self._profiles.clear()
        if embedder is not None:
            self.embedder = embedder
            getattr(self, "_text_cache", {}).clear()
        return self

    # -- profiles -----------------------------------------------------------------------------
    def profile(self, user: int, items: np.ndarray) -> UserProfile:
        """The persona of user ``user`` for exactly the history ``items`` (see module docstring)."""
        assert self.builder is not None, "fit or load the model first"
        items = np.asarray(items, dtype=np.int32)
        user_id = str(self.user_ids[user]) if 0 <= user < len(self.user_ids) else f"user-{user}"
        persona = self.persona_store.get(user_id) if self.persona_store is not None else None
        key = (
            int(user),
            len(items),
            hash(items.tobytes()),
            None if persona is None else (persona.version, persona.provenance.created_at),
        )
        hit = self._profiles.get(key)
        if hit is not None:
            self._profiles.move_to_end(key)
            return hit
        prof = self.builder.profile(_history(user, user_id, items), persona)
        if self.cfg.profile_cache:
            self._profiles[key] = prof
            while len(self._profiles) > self.cfg.profile_cache:
                self._profiles.popitem(last=False)
        return prof

    def ranking_profile(self, prof: UserProfile) -> Profile:
        """The :class:`recommend.persona_ranking.Profile` of a user profile (no user edits offline)."""
        assert self.space is not None
        names = self.space.fine_names
        return Profile(
            interests={names[c]: w for c, w in prof.interests},
            explore=[(names[c], r) for c, r in prof.explore],
            summary=prof.summary,
        )

    # -- recommending with reasons ------------------------------------------------------------
    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        lists = self._slots(np.asarray(users, dtype=np.int64), history)
        return self._scores_from(lists)

    def _slots(self, users: np.ndarray, history: UserSequences) -> list[tuple[list[Ranked], np.ndarray]]:
        """Per user: the persona-shaped head (Ranked records) and the order key of all items."""
        raise NotImplementedError

    def _scores_from(self, lists: list[tuple[list[Ranked], np.ndarray]]) -> np.ndarray:
        out = np.empty((len(lists), self.n_items), dtype=np.float32)
        for row, (slots, rest) in enumerate(lists):
            out[row] = rest
            if slots:
                idx = np.fromiter((r.item for r in slots), dtype=np.int64, count=len(slots))
                out[row, idx] = SLOT_BASE + (len(slots) - np.arange(len(slots), dtype=np.float32)) / len(
                    slots
                )
        return out

    def recommend_explained(
        self, users: np.ndarray, history: UserSequences, k: int = 10, *, exclude_seen: bool = True
    ) -> list[list[Ranked]]:
        """The same top-``k`` as :meth:`recommend`, each item as a :class:`Ranked` record (kind,
        cluster, one-line reason from the persona); ``score`` is the item's score in :meth:`score`."""
        from personarec.recommend.base import mask_seen, top_k

        users = np.asarray(users, dtype=np.int64)
        lists = self._slots(users, history)
        scores = self._scores_from(lists)
        if exclude_seen:
            mask_seen(scores, users, history)
        items, top = top_k(scores, k)
        out = []
        for row, u in enumerate(users):
            keep = np.isfinite(top[row])
            out.append(
                self._records(int(u), items[row][keep], history[int(u)], lists[row][0], top[row][keep])
            )
        return out

    def explain(self, user_idx: int, items: np.ndarray, history: UserSequences | np.ndarray) -> list[str]:
        """One line per item: why it is (or would be) in ``user_idx``'s list given ``history`` (a
        UserSequences indexed by user, or the user's own chronological item sequence)."""
        seq = _user_items(user_idx, history)
        slots = self._slots(np.array([user_idx]), _single(user_idx, seq))[0][0]
        return [r.reason for r in self._records(user_idx, np.asarray(items), seq, slots)]

    def _records(
        self,
        user_idx: int,
        items: np.ndarray,
        seq: np.ndarray,
        slots: list[Ranked],
        scores: np.ndarray | None = None,
    ) -> list[Ranked]:
        """Slot items keep the record the list was built with; any other item is explained by
        its cluster's place in the persona (explore topic, interest, or neither)."""
        assert self.space is not None, "fit or load the model first"
        in_slots = {r.item: r for r in slots}
        prof = self.profile(user_idx, seq)
        names = self.space.fine_names
        weights, reasons = dict(prof.interests), dict(prof.explore)
        out = []
        for j, item in enumerate(np.asarray(items, dtype=np.int64)):
            score = float(scores[j]) if scores is not None else float("nan")
            if int(item) in in_slots:
                r = in_slots[int(item)]
                out.append(Ranked(r.item, score, r.kind, r.cluster, r.reason))
                continue
            c = int(self.space.fine[item])
            name = names[c]
            if c in reasons:
                out.append(
                    Ranked(int(item), score, "explore", name, f"Something new: {name}. {reasons[c]}".strip())
                )
            elif c in weights:
                out.append(Ranked(int(item), score, "interest", name, f"Because you like {name}."))
            else:
                out.append(Ranked(int(item), score, "model", name, self._model_reason()))
        return out

    def _model_reason(self) -> str:
        return "Close to what you watched recently."

    # -- persistence --------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        assert self.space is not None and self.builder is not None, "fit the model first"
        self.space.save(directory / "items")
        t = self.builder.transitions
        counts = t.counts.tocsr()
        np.savez(
            directory / "state.npz",
            popularity=self.popularity,
            t_data=counts.data, t_indices=counts.indices, t_indptr=counts.indptr,
            t_shape=np.array(counts.shape), t_popularity=t.popularity,
        )  # fmt: skip
        (directory / "users.json").write_text(json.dumps([str(u) for u in self.user_ids]))
        if self.base is not None:
            self.base.save(directory / "base")

    def _load_state(self, directory: Path) -> None:
        self.space = ItemSpace.load(directory / "items")
        state = np.load(directory / "state.npz")
        counts = sp.csr_matrix(
            (state["t_data"], state["t_indices"], state["t_indptr"]),
            shape=tuple(int(s) for s in state["t_shape"]),
        )
        transitions = TransitionStats(counts=counts, popularity=state["t_popularity"])
        self.popularity = state["popularity"]
        self.builder = ProfileBuilder(self.space, transitions, self.personas_config())
        self.user_ids = np.asarray(json.loads((directory / "users.json").read_text()), dtype=object)
        self.base = load_recommender(directory / "base") if (directory / "base").exists() else None
        self._after_fit(fitting=False)


def _history(user: int, user_id: str, items: np.ndarray):
    from personarec.personas.history import UserHistory

    return UserHistory(
        user_idx=int(user),
        user_id=user_id,
        items=items,
        timestamps=np.zeros(len(items), np.int64),
        stage="live",
    )


def _user_items(user: int, history: UserSequences | np.ndarray) -> np.ndarray:
    return history[int(user)] if isinstance(history, UserSequences) else np.asarray(history, dtype=np.int32)


def _single(user: int, seq: np.ndarray) -> UserSequences:
    """A UserSequences in which ``user`` has history ``seq`` (and every earlier user none)."""
    seq = np.asarray(seq, dtype=np.int32)
    indptr = np.zeros(int(user) + 2, dtype=np.int64)
    indptr[-1] = len(seq)
    return UserSequences(indptr=indptr, items=seq, timestamps=np.zeros(len(seq), dtype=np.int64))


def percentile(scores: np.ndarray) -> np.ndarray:
    """Row-wise percentile ranks in (0, 1] (1 = best; stable ties by index), like recommend.persona_ranking."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    n = s.shape[1]
    order = np.argsort(-s, axis=1, kind="stable")
    z = np.empty_like(s)
    np.put_along_axis(
        z, order, np.broadcast_to(1.0 - np.arange(n, dtype=np.float32) / max(n, 1), s.shape), axis=1
    )
    return z


# -- persona retrieval --------------------------------------------------------------------------
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
class PersonaRetrieval(_PersonaModel):
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
    def _slots(self, users: np.ndarray, history: UserSequences) -> list[tuple[list[Ranked], np.ndarray]]:
        import faiss

        assert self.space is not None and self.index is not None, "fit or load the model first"
        cfg, space = self.cfg, self.space
        faiss.omp_set_num_threads(cfg.num_threads)
        seqs = [history[int(u)] for u in users]
        profiles = [self.profile(int(u), s) for u, s in zip(users, seqs, strict=True)]
        q = self.queries(profiles, seqs)
        sim = q @ space.embeddings.T  # [B, n]: candidate scores and the order of everything else
        pop = (
            percentile(self.popularity[None])[0]
            if len(self.popularity)
            else np.zeros(self.n_items, np.float32)
        )
        w_base = cfg.sasrec_weight if self.base is not None else 0.0
        if w_base > 0 or cfg.popularity_weight > 0:  # percentile ranks: one scale for every signal
            mix = (1 - w_base - cfg.popularity_weight) * percentile(sim) + cfg.popularity_weight * pop[None]
            if w_base > 0:
                import torch

                torch.set_num_threads(cfg.num_threads)
                mix = mix + w_base * percentile(self.base.score(users, history))
        else:
            mix = sim

        # one (query, cluster) row per interest and explore cluster of every user; `want` unseen
        # items are needed from it, so the search asks for want + (seen items of that cluster)
        rows_user, rows_cluster, rows_want, rows_k = [], [], [], []
        for b, prof in enumerate(profiles):
            seen_counts = (
                np.bincount(space.fine[seqs[b]], minlength=space.n_fine) if cfg.exclude_seen else None
            )
            total = sum(w for _, w in prof.interests) or 1.0
            budget = cfg.per_cluster * len(prof.interests)
            wanted = [(c, max(1, int(round(budget * w / total)))) for c, w in prof.interests]
            if cfg.explore_quota > 0:
                wanted += [(c, cfg.per_cluster) for c, _ in prof.explore]
            for c, want in wanted:
                rows_user.append(b)
                rows_cluster.append(c)
                rows_want.append(want)
                rows_k.append(want + (int(seen_counts[c]) if seen_counts is not None else 0))
        _, found = self.index.search(
            q[rows_user], np.array(rows_cluster, dtype=np.int64), max(rows_k, default=1)
        )

        per_user: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in users]
        for r, (b, c, want) in enumerate(zip(rows_user, rows_cluster, rows_want, strict=True)):
            per_user[b].append((c, want, found[r]))
        out = []
        for b, prof in enumerate(profiles):
            seen = np.zeros(self.n_items, dtype=bool)
            if cfg.exclude_seen:
                seen[seqs[b]] = True
            slots = self._layout(prof, per_user[b], mix[b], seen)
            # everything else in similarity order, at most ~1 (< SLOT_BASE); popularity breaks ties
            rest = (mix[b] - float(mix[b].max(initial=0.0)) + 1.0 + 1e-6 * pop).astype(np.float32)
            out.append((slots, rest))
        return out

    def _layout(
        self, prof: UserProfile, found: list[tuple[int, int, np.ndarray]], mix: np.ndarray, seen: np.ndarray
    ) -> list[Ranked]:
        """Exploit pool (interest candidates by boosted score) and explore queues (per cluster, by
        score, taken round-robin) interleaved by :func:`quota_schedule`."""
        assert self.space is not None
        names, fine = self.space.fine_names, self.space.fine
        weights = dict(prof.interests)
        reasons = dict(prof.explore)
        top_w = max(weights.values(), default=0.0) or 1.0
        exploit: dict[int, float] = {}
        queues: list[list[int]] = []
        for j, (c, want, ids) in enumerate(found):
            ids = ids[ids >= 0]
            ids = ids[~seen[ids]][:want]
            if j < len(prof.interests):  # rows hold the interest clusters first, then explore clusters
                for i in ids:
                    exploit[int(i)] = float(mix[i]) + self.cfg.interest_boost * weights[c] / top_w
            else:
                queues.append([int(i) for i in ids[np.argsort(-mix[ids], kind="stable")]])
        exploit_items = sorted(exploit, key=lambda i: (-exploit[i], i))
        explore_items: list[int] = []
        taken = set(exploit)
        n_slots = self.cfg.slots
        for depth in range(max((len(qq) for qq in queues), default=0)):
            for qq in queues:
                if depth < len(qq) and qq[depth] not in taken:
                    explore_items.append(qq[depth])
                    taken.add(qq[depth])
        # interest candidates are few (a share of per_cluster per cluster): backfill the exploit side
        # with the most similar items outside the explore clusters, so a short pool neither stops
        # the list early nor lets explore-cluster items in through the similarity-ordered tail
        need = n_slots - len(exploit_items)
        if need > 0:
            cand = np.array(mix, dtype=np.float64, copy=True)
            cand[seen] = -np.inf
            if taken:
                cand[list(taken)] = -np.inf
            if prof.explore:
                cand[np.isin(fine, prof.explore_clusters)] = -np.inf
            m = min(need, int(np.isfinite(cand).sum()))
            if m > 0:
                top = np.argpartition(-cand, m - 1)[:m]
                top = top[np.lexsort((top, -cand[top]))]
                for i in top:
                    exploit[int(i)] = float(mix[i])
                exploit_items += [int(i) for i in top]
        kinds = quota_schedule(len(exploit_items), len(explore_items), self.cfg.explore_quota)[:n_slots]
        out: list[Ranked] = []
        xi = ei = 0
        for is_explore in kinds:
            if is_explore:
                i, ei = explore_items[ei], ei + 1
                name = names[fine[i]]
                reason = reasons.get(int(fine[i]), "")
                out.append(
                    Ranked(i, float(mix[i]), "explore", name, f"Something new: {name}. {reason}".strip())
                )
            else:
                i, xi = exploit_items[xi], xi + 1
                name = names[fine[i]]
                if int(fine[i]) in weights:
                    out.append(Ranked(i, exploit[i], "interest", name, f"Because you like {name}."))
                else:
                    out.append(Ranked(i, exploit[i], "model", name, self._model_reason()))
        return out


# -- the hybrid ---------------------------------------------------------------------------------
class PersonaHybridConfig(PersonaModelConfig):
    base: dict[str, Any] = Field(
        default_factory=lambda: {"name": "sasrec"},
        description="base model sub-config (name + fields), fitted unless a fitted `base` is passed to fit",
    )
    slots: int = Field(
        20,
        ge=1,
        description="length of the persona-shaped head of the list (the k given to recommend.persona_ranking.rank)",
    )
    interest_boost: float = Field(
        0.0, ge=0.0, description="recommend.persona_ranking interest boost; 0 keeps the base model's exploit order"
    )


@register
class PersonaHybrid(_PersonaModel):
    """Base model's top list with ``explore_quota`` of the slots given to persona explore clusters,
    ranked by :func:`personarec.recommend.persona_ranking.rank` (what serving does)."""

    name = "persona_hybrid"
    config_class = PersonaHybridConfig

    @property
    def cfg(self) -> PersonaHybridConfig:
        return self.config  # type: ignore[return-value]

    def _model_reason(self) -> str:
        name = self.base.name if self.base is not None else None
        return f"Ranked highly by the {name or 'recommendation'} model for your history."

    def ranking_config(self) -> RankingConfig:
        return RankingConfig(interest_boost=self.cfg.interest_boost, exclude_seen=self.cfg.exclude_seen)

    def _slots(self, users: np.ndarray, history: UserSequences) -> list[tuple[list[Ranked], np.ndarray]]:
        assert self.space is not None and self.base is not None, "fit or load the model first"
        base_scores = np.asarray(self.base.score(users, history), dtype=np.float32)
        z = percentile(base_scores)
        rc, by_name = self.ranking_config(), self.space.cluster_by_name()
        out = []
        for b, u in enumerate(users):
            seq = history[int(u)]
            prof = self.ranking_profile(self.profile(int(u), seq))
            slots = rank(
                base_scores[b], seq, self.space, prof, self.cfg.slots, self.cfg.explore_quota, rc,
                model_name=self.base.name, by_name=by_name,
            )  # fmt: skip
            out.append((slots, z[b]))  # everything else in the base model's order, in (0, 1]
        return out
