"""Persona retrieval and the persona hybrid: exploration quota, cluster restriction, explanations,
per-history personas (no later persona on an earlier history), stored LLM personas, persistence.

A synthetic world where the persona means something: 12 fine clusters of 15 items whose embeddings
sit around one centre per cluster, and users who stay in two "home" clusters.
"""

from __future__ import annotations

import numpy as np
import pytest

from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.personas.profiles import ProfileBuilder, UserProfiles
from personarec.personas.schema import ExploreTopic, Interest, Persona, Provenance
from personarec.recommend.base import Recommender, build_recommender, load_recommender
from personarec.recommend.cluster_index import ClusterIndex
from personarec.recommend.persona_hybrid import PersonaHybrid
from personarec.recommend.persona_ranking import quota_schedule
from personarec.recommend.persona_retrieval import PersonaRetrieval
from personarec.recommend.pipeline import RankingPipeline
from tests.recommend.conftest import make_split
from tests.ranking import top

N_FINE, PER, DIM = 12, 15, 16


def explained(model, users, history, k):
    """The explained lists the API would serve for these offline histories."""
    pipeline = RankingPipeline(model)
    return pipeline.rank(pipeline.requests(np.asarray(users), history), k)


def reasons_of(model, user: int, items, history) -> list[str]:
    """Why each of ``items`` is (or would be) in the user's list."""
    request = model.requests_for(np.array([user]), history)[0]
    head = model.score_requests([request])[1][0]
    return [r.reason for r in model.describe_items(request, np.asarray(items), head)]


def world(n_users: int = 40, seed: int = 0) -> tuple[Split, ItemSpace, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_items = N_FINE * PER
    fine = np.repeat(np.arange(N_FINE), PER).astype(np.int32)
    centres = rng.normal(size=(N_FINE, DIM))
    emb = centres[fine] + 0.5 * rng.normal(size=(n_items, DIM))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    train, valid, test = [], [], []
    for _ in range(n_users):
        home = rng.choice(N_FINE, size=2, replace=False)
        pool = np.concatenate([np.flatnonzero(fine == c) for c in home])
        seq = rng.choice(pool, size=12, replace=False).tolist()
        train.append(seq[:10])
        valid.append([seq[10]])
        test.append([seq[11]])
    split = make_split(train, valid, test, n_items)
    space = ItemSpace(
        item_ids=split.item_ids, embeddings=emb, fine=fine, coarse=(fine // 3).astype(np.int32),
        semantic_ids=np.stack([fine, np.arange(n_items)], axis=1).astype(np.int32),
        fine_names=[f"cluster {c}" for c in range(N_FINE)], coarse_names=[f"group {c}" for c in range(N_FINE // 3)],
        fine_parent=(np.arange(N_FINE) // 3).astype(np.int32),
    )  # fmt: skip
    return split, space, centres.astype(np.float32)


class Table(Recommender):
    """Fixed random scores per (user, item): a stand-in base model with no ties."""

    name = "table-test"

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table, self.n_items = table.astype(np.float32), table.shape[1]

    def _fit(self, split, ctx):
        return self

    def score(self, users, history):
        return self.table[np.asarray(users)].copy()


@pytest.fixture(scope="module")
def w():
    return world()


@pytest.fixture(scope="module")
def table(w) -> Table:
    split = w[0]
    return Table(np.random.default_rng(1).random((split.n_users, split.n_items)))


def retrieval(w, **cfg) -> PersonaRetrieval:
    split, space, _ = w
    return PersonaRetrieval.from_config({"query": "history", "per_cluster": 15, **cfg}).fit(
        split, items=space
    )


def hybrid(w, table, **cfg) -> PersonaHybrid:
    split, space, _ = w
    return PersonaHybrid.from_config(cfg).fit(split, items=space, base=table)


def explore_share(model, split, history) -> list[tuple[int, set[int]]]:
    """(user, explore clusters of the persona of that history) for every user."""
    return [(u, set(model.profile(u, history[u]).explore_clusters)) for u in range(split.n_users)]


# -- exploration quota ---------------------------------------------------------------------------------
def test_quota_schedule_prefixes():
    for quota in (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        kinds = quota_schedule(1000, 1000, quota)[:400]  # both pools last
        counts = np.cumsum(kinds)
        p = np.arange(1, len(kinds) + 1)
        assert np.all(np.abs(counts - p * quota) <= 0.5 + 1e-9), quota
    assert quota_schedule(3, 0, 0.5) == [False] * 3  # no explore pool: exploit continues alone
    assert quota_schedule(2, 50, 0.5) == [
        False,
        True,
        False,
        True,
    ]  # exploit runs out: list stops, no pile-up


@pytest.mark.parametrize("kind", ["retrieval", "hybrid"])
@pytest.mark.parametrize("quota", [0.0, 0.2, 0.5])
def test_quota_respected_at_10_and_20(w, table, kind, quota):
    split, space, _ = w
    model = (
        retrieval(w, explore_quota=quota) if kind == "retrieval" else hybrid(w, table, explore_quota=quota)
    )
    history = split.history("train")
    users = np.arange(split.n_users)
    items, _ = top(model, users, history, 20)
    recs = explained(model, users, history, 20)
    checked = 0
    for u, explore in explore_share(model, split, history):
        if not explore:
            continue
        np.testing.assert_array_equal([r.item for r in recs[u]], items[u])
        is_explore = np.array([r.kind == "explore" for r in recs[u]])
        assert all(space.fine[r.item] in explore for r in recs[u] if r.kind == "explore")
        if kind == "retrieval":  # every item of an explore cluster in the list is an explore slot
            np.testing.assert_array_equal(is_explore, np.isin(space.fine[items[u]], list(explore)))
        for k in (10, 20):
            assert abs(int(is_explore[:k].sum()) - round(k * quota)) <= 1, (kind, quota, u, k, is_explore)
        checked += 1
    assert checked >= split.n_users // 2


def test_hybrid_with_quota_zero_is_the_base_top_list(w, table):
    split = w[0]
    history = split.history("train")
    users = np.arange(split.n_users)
    model = hybrid(w, table, explore_quota=0.0)
    got, _ = top(model, users, history, 20)
    want, _ = top(table, users, history, 20)
    np.testing.assert_array_equal(got, want)
    # beyond the slots the full ranking is still the base model's
    got50, _ = top(model, users, history, 50)
    want50, _ = top(table, users, history, 50)
    np.testing.assert_array_equal(got50, want50)


# -- retrieval restricted to clusters ----------------------------------------------------------------
def test_cluster_index_searches_inside_one_cluster(w):
    _, space, _ = w
    index = ClusterIndex(space.embeddings, space.fine, space.n_fine)
    rng = np.random.default_rng(0)
    q = rng.normal(size=(30, DIM)).astype(np.float32)
    clusters = rng.integers(0, N_FINE, size=30)
    dist, idx = index.search(q, clusters, 5)
    for r in range(30):
        members = space.members(int(clusters[r]))
        assert set(idx[r]) <= set(members)
        exact = members[np.argsort(-(space.embeddings[members] @ q[r]), kind="stable")][:5]
        np.testing.assert_array_equal(idx[r], exact)
        np.testing.assert_allclose(dist[r], space.embeddings[exact] @ q[r], rtol=1e-5, atol=1e-5)
    _, big = index.search(q[:2], clusters[:2], 100)  # more than a cluster holds: padded with -1
    assert big.shape[1] == PER and (big >= 0).all()


def test_retrieved_items_come_from_persona_clusters(w):
    split, space, _ = w
    model = retrieval(w, explore_quota=0.3)
    history = split.history("train")
    recs = explained(model, np.arange(split.n_users), history, 20)
    for u, rows in enumerate(recs):
        prof = model.profile(u, history[u])
        interests, explore = {c for c, _ in prof.interests}, set(prof.explore_clusters)
        assert len(rows) == 20
        for r in rows:
            c = int(space.fine[r.item])
            assert r.cluster == space.fine_names[c]
            if r.kind == "interest":
                assert c in interests
            elif r.kind == "explore":
                assert c in explore
            else:
                assert c not in interests | explore


def test_score_is_a_full_matrix_with_the_slots_on_top(w):
    split = w[0]
    model = retrieval(w, explore_quota=0.2, per_cluster=3)
    history = split.history("train")
    users = np.arange(5)
    scores = model.score(users, history)
    assert scores.shape == (5, split.n_items) and scores.dtype == np.float32 and np.isfinite(scores).all()
    lists = model._heads(model.requests_for(users, history), True)
    for row, (slots, _) in enumerate(lists):
        order = np.argsort(-scores[row], kind="stable")
        np.testing.assert_array_equal(order[: len(slots)], [r.item for r in slots])
        assert len(slots) < split.n_items


@pytest.mark.parametrize("kind", ["retrieval", "hybrid"])
def test_seen_items_never_recommended(w, table, kind):
    split, _, _ = w
    model = retrieval(w, explore_quota=0.5) if kind == "retrieval" else hybrid(w, table, explore_quota=0.5)
    for stage in ("train", "test"):
        history = split.history(stage)
        users = np.arange(split.n_users)
        items, _ = top(model, users, history, 30)
        for u in users:
            assert not set(items[u]) & set(history[u].tolist())
        for u, (slots, _) in zip(users, model._heads(model.requests_for(users, history), True), strict=True):  # nor in the head
            assert not {r.item for r in slots} & set(history[u].tolist())


# -- explanations --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["retrieval", "hybrid"])
def test_explanations_match_kind(w, table, kind):
    split, space, _ = w
    model = retrieval(w, explore_quota=0.3) if kind == "retrieval" else hybrid(w, table, explore_quota=0.3)
    history = split.history("train")
    users = np.arange(10)
    recs = explained(model, users, history, 10)
    items, _ = top(model, users, history, 10)
    kinds = set()
    for u, rows in zip(users, recs, strict=True):
        np.testing.assert_array_equal([r.item for r in rows], items[u])
        reasons = reasons_of(model, int(u), items[u], history)
        assert reasons == [r.reason for r in rows]
        for r in rows:
            kinds.add(r.kind)
            if r.kind == "explore":
                assert r.reason.startswith(f"Something new: {r.cluster}.")
            elif r.kind == "interest":
                assert r.reason == f"Because you like {r.cluster}."
            else:
                assert r.kind == "model" and r.reason
    assert "explore" in kinds and ("interest" in kinds or kind == "hybrid")


# -- personas follow the history -------------------------------------------------------------------------
def llm_persona(user_id: str, version: int, interests: list[str], explore: str, **prov) -> Persona:
    return Persona(
        user_id=user_id, version=version, summary="A hand-written test persona.",
        interests=[Interest(cluster=c, weight=1.0 / len(interests)) for c in interests],
        explore=[ExploreTopic(cluster=explore, reason="Chosen by the test.")],
        provenance=Provenance(model="test-llm", backend="test", prompt_version="t1", **prov),
    )  # fmt: skip


def test_persona_describes_the_history_passed_and_llm_persona_used_when_version_matches(w, table, tmp_path):
    from personarec.personas.store.sqlite import SQLiteStore

    split, space, _ = w
    train, test_hist = split.history("train"), split.history("test")  # 10 vs 11 events per user
    u = 3
    builder = ProfileBuilder.from_split(split, space)
    fallbacks = {
        c
        for h in (train, test_hist)
        for c in builder.for_sequence(str(split.user_ids[u]), h[u]).explore_clusters
    }
    seen = set(space.fine[test_hist[u]].tolist())
    target = next(c for c in range(N_FINE) if c not in seen and c not in fallbacks)
    home = sorted(seen)
    store = SQLiteStore(tmp_path / "p.db")
    store.put(
        llm_persona(
            str(split.user_ids[u]),
            len(test_hist[u]),
            [space.fine_names[c] for c in home],
            space.fine_names[target],
        )
    )
    for model in (
        retrieval(w, explore_quota=0.5),
        PersonaHybrid.from_config({"explore_quota": 0.5}).fit(
            split, items=space, base=table, persona_store=store
        ),
    ):
        model.attach(persona_store=store)
        p_valid, p_test = model.profile(u, train[u]), model.profile(u, test_hist[u])
        assert (p_valid.version, p_test.version) == (10, 11)
        assert not p_valid.from_llm and p_test.from_llm  # the test-stage persona never on the train history
        assert p_test.explore_clusters == [target] and target not in p_valid.explore_clusters
        for hist, want in ((test_hist, 5), (train, 0)):
            rows = explained(model, np.array([u]), hist, 10)[0]
            explore = [r for r in rows if r.kind == "explore"]
            assert (
                sum(space.fine[r.item] == target for r in explore) == want
            )  # the LLM's topic fills the quota
            assert len(explore) == 5
        items_test, _ = top(model, np.array([u]), test_hist, 10)
        reasons = reasons_of(model, u, items_test[0], test_hist)
        assert reasons.count(f"Something new: {space.fine_names[target]}. Chosen by the test.") == 5
    # a persona that is a hindsight label or a fallback is never used, even at the right version
    for prov in ({"hindsight": True}, {"fallback": True}):
        other = SQLiteStore(tmp_path / f"{sorted(prov)[0]}.db")
        other.put(
            llm_persona(
                str(split.user_ids[u]),
                len(test_hist[u]),
                [space.fine_names[home[0]]],
                space.fine_names[target],
                **prov,
            )
        )
        assert not retrieval(w).attach(persona_store=other).profile(u, test_hist[u]).from_llm


def test_profiles_build_agrees_with_per_sequence_profiles(w):
    split, space, _ = w
    builder = ProfileBuilder.from_split(split, space)
    for stage, hist in (("valid", split.history("train")), ("test", split.history("test"))):
        built = UserProfiles.build(split, space, stage)
        for u in range(split.n_users):
            p = builder.for_sequence(str(split.user_ids[u]), hist[u])
            assert (p.text, p.interests, p.explore_clusters) == (
                built.texts[u],
                built.interests[u],
                built.explore[u],
            )
            assert p.version == len(hist[u])


# -- queries -------------------------------------------------------------------------------------------------
def name_embedder(space: ItemSpace, centres: np.ndarray):
    """Embeds a text as the mean centre of the cluster names it mentions (an offline stand-in model)."""

    def embed(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), centres.shape[1]), np.float32)
        for r, t in enumerate(texts):
            hits = [
                c
                for c in range(len(space.fine_names))
                if f"{space.fine_names[c]};" in t or f"{space.fine_names[c]}." in t
            ]
            out[r] = centres[hits].mean(axis=0) if hits else 1.0
        return out

    return embed


def test_persona_query_needs_a_text_model(w):
    split, space, centres = w
    with pytest.raises(ConfigError, match="query='persona'"):
        PersonaRetrieval.from_config({"query": "persona"}).fit(split, items=space)
    model = PersonaRetrieval.from_config({"query": "persona", "explore_quota": 0.2}).fit(
        split, items=space, embedder=name_embedder(space, centres)
    )
    history = split.history("train")
    items, _ = top(model, np.arange(split.n_users), history, 10)
    assert items.shape == (split.n_users, 10)


# -- persistence and registry --------------------------------------------------------------------------------
def test_save_load_round_trip(w, tmp_path):
    split, space, centres = w
    history = split.history("test")
    users = np.arange(split.n_users)
    embed = name_embedder(space, centres)
    models = {
        "retrieval": PersonaRetrieval.from_config({"query": "persona", "explore_quota": 0.2}).fit(split, items=space, embedder=embed),
        "mixed": build_recommender("persona_retrieval", {"query": "history", "sasrec_weight": 0.5, "base": {"name": "popular"}}).fit(split, items=space),
        "hybrid": build_recommender("persona_hybrid", {"explore_quota": 0.2, "base": {"name": "itemknn"}}).fit(split, items=space),
    }  # fmt: skip
    assert models["hybrid"].base.name == "itemknn" and models["mixed"].base.name == "popular"
    for key, model in models.items():
        path = model.save(tmp_path / key)
        loaded = load_recommender(path)
        assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
        if key == "retrieval":
            loaded.attach(embedder=embed)  # live resources are re-attached, not stored
        np.testing.assert_array_equal(
            top(loaded, users, history, 20)[0], top(model, users, history, 20)[0]
        )
        first = top(model, users[:1], history, 5)[0][0]
        assert reasons_of(loaded, 0, first, history) == reasons_of(model, 0, first, history)
    assert (tmp_path / "hybrid" / "base" / "config.json").exists()


def test_needs_the_item_space(w):
    with pytest.raises(ConfigError, match="item space"):
        PersonaRetrieval().fit(w[0])


def test_hybrid_head_is_what_serving_ranks(w, table):
    """The first ``slots`` items are exactly recommend.persona_ranking.rank's list for the same scores and persona."""
    from personarec.recommend.persona_ranking import RankingConfig, rank

    split, space, _ = w
    history = split.history("test")
    model = hybrid(w, table, explore_quota=0.2, slots=20)
    items, _ = top(model, np.arange(split.n_users), history, 20)
    for u in range(0, split.n_users, 7):
        prof = model.shaped_profile(model.requests_for(np.array([u]), history)[0])
        served = rank(
            table.table[u],
            history[u],
            space,
            prof,
            20,
            0.2,
            RankingConfig(interest_boost=0.0),
            model_name="table-test",
        )
        assert [r.item for r in served] == items[u].tolist()
