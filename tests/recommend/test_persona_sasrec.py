"""Persona-distilled SASRec: alpha=0 is SASRec bit for bit, the persona loss is applied (and only
in its epochs), every pooling / loss / layer option runs, personas never see validation or test
events, and a saved model scores like the trained one without any personas."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.personas.profiles import UserProfiles
from personarec.personas.schema import ExploreTopic, Interest, Persona, Provenance
from personarec.recommend.base import FitContext, build_recommender, load_recommender
from personarec.recommend.persona_sasrec import PersonaSASRec
from tests.recommend.conftest import cyclic_split, make_split

TINY = dict(max_len=16, hidden=32, n_blocks=1, n_heads=1, dropout=0.0, lr=1e-2, batch_size=16,
            max_epochs=3, patience=4, patience_steps=0, seed=0, num_threads=1, show_progress=False)  # fmt: skip


def random_personas(n_users: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_users, dim)).astype(np.float32)


def all_scores(model, split) -> np.ndarray:
    return model.score(np.arange(split.n_users), split.history("test"))


class HashEmbedder:
    """Deterministic stand-in for the sentence model: a text's vector is a function of the text only."""

    model_id = "hash-test"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts, show_progress=False):
        self.seen.extend(texts)
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")).normal(size=8) for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), 8), None


# -- wiring ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(), dict(n_blocks=2, layer=0, pooling="attention", dropout=0.1)])
def test_alpha_zero_reproduces_sasrec_exactly(options):
    split = cyclic_split(n_users=40)
    base = {k: v for k, v in dict(TINY, **options).items() if k not in ("layer", "pooling")}
    plain = build_recommender("sasrec", base).fit(split)
    persona = build_recommender("persona_sasrec", dict(TINY, **options, alpha=0.0)).fit(
        split, persona_vectors=random_personas(split.n_users)
    )
    np.testing.assert_array_equal(all_scores(persona, split), all_scores(plain, split))
    state = persona.net.state_dict()
    for key, value in plain.net.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    assert any(k.startswith("persona_head.") for k in state)  # the head was there, trained on zero weight
    assert [h["valid_ndcg"] for h in persona.history_] == [h["valid_ndcg"] for h in plain.history_]
    assert all("aux_loss" in h for h in persona.history_)  # computed as a diagnostic even at alpha=0


def test_persona_loss_decreases_and_changes_the_model():
    split = cyclic_split(n_users=40)
    cfg = dict(TINY, max_epochs=6, early_stopping=False, aux_epochs=6)
    vectors = random_personas(split.n_users)
    zero = PersonaSASRec.from_config(dict(cfg, alpha=0.0)).fit(split, persona_vectors=vectors)
    aligned = PersonaSASRec.from_config(dict(cfg, alpha=1.0)).fit(split, persona_vectors=vectors)
    aux = [h["aux_loss"] for h in aligned.history_]
    assert aux[-1] < 0.7 * aux[0], aux
    assert aux[-1] < zero.history_[-1]["aux_loss"]  # the alignment is learned, not incidental
    assert not np.allclose(all_scores(aligned, split), all_scores(zero, split))
    for h in aligned.history_:  # the recorded loss is the weighted sum of both terms
        assert h["loss"] == pytest.approx(h["rec_loss"] + 1.0 * h["aux_loss"], rel=1e-5)


def test_persona_loss_only_in_the_first_aux_epochs():
    split = cyclic_split(n_users=30)
    model = PersonaSASRec.from_config(dict(TINY, max_epochs=4, early_stopping=False, aux_epochs=2, alpha=0.5))
    model.fit(split, persona_vectors=random_personas(split.n_users))
    assert [h["aux_weight"] for h in model.history_] == [0.5, 0.5, 0.0, 0.0]
    assert ["aux_loss" in h for h in model.history_] == [True, True, False, False]


def test_aux_epochs_zero_never_applies_the_persona_loss():
    split = cyclic_split(n_users=30)
    vectors = random_personas(split.n_users)
    cfg = dict(TINY, max_epochs=2, early_stopping=False)
    a = PersonaSASRec.from_config(dict(cfg, aux_epochs=0, alpha=1.0)).fit(split, persona_vectors=vectors)
    b = build_recommender("sasrec", cfg).fit(split)
    np.testing.assert_array_equal(all_scores(a, split), all_scores(b, split))


@pytest.mark.parametrize("pooling", ["mean", "last", "attention"])
@pytest.mark.parametrize("aux_loss", ["mse", "cosine", "infonce"])
def test_every_pooling_and_loss_runs(pooling, aux_loss):
    split = cyclic_split(n_users=20)
    model = PersonaSASRec.from_config(dict(TINY, max_epochs=2, pooling=pooling, aux_loss=aux_loss, alpha=0.5))
    model.fit(split, persona_vectors=random_personas(split.n_users))
    assert all(np.isfinite(h["aux_loss"]) and h["aux_loss"] >= 0 for h in model.history_)
    assert np.isfinite(all_scores(model, split)).all()
    assert (model.net.persona_head.query is not None) == (pooling == "attention")


def test_pooling_ignores_padding():
    model = PersonaSASRec.from_config(dict(TINY, pooling="mean"))
    states = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    real = torch.tensor([[True, True, True], [False, False, True]])
    pooled = model.pool(states, real)
    torch.testing.assert_close(pooled, torch.stack([states[0].mean(0), states[1, 2]]))
    model = PersonaSASRec.from_config(dict(TINY, pooling="last"))
    torch.testing.assert_close(model.pool(states, real), states[:, -1])


@pytest.mark.parametrize(("layer", "block"), [(0, 0), (-2, 0), (1, None), (-1, None)])
def test_layer_picks_the_pooled_block(layer, block):
    split = cyclic_split(n_users=16)
    model = PersonaSASRec.from_config(dict(TINY, n_blocks=2, layer=layer, max_epochs=1, alpha=0.5))
    seen: dict[str, object] = {}
    original_pool = model.pool

    def spy_pool(states, real):
        seen["pooled"] = states
        return original_pool(states, real)

    model.pool = spy_pool  # type: ignore[method-assign]
    original_build = model._build

    def build_and_spy(n_items):
        net = original_build(n_items)
        forward_blocks = net.forward_blocks

        def spy(tokens, last_only=False):
            hidden, blocks = forward_blocks(tokens, last_only=last_only)
            if net.training:  # validation scoring passes here too (in eval mode)
                seen["hidden"], seen["blocks"] = hidden, blocks
            return hidden, blocks

        net.forward_blocks = spy
        return net

    model._build = build_and_spy  # type: ignore[method-assign]
    model.fit(split, persona_vectors=random_personas(split.n_users))
    expected = seen["hidden"] if block is None else seen["blocks"][block]
    assert seen["pooled"] is expected


def test_bad_layer_and_missing_personas_are_config_errors():
    with pytest.raises(ValueError, match="layer"):
        PersonaSASRec.from_config(dict(TINY, n_blocks=2, layer=2))
    split = cyclic_split(n_users=10)
    with pytest.raises(ConfigError, match="persona"):
        PersonaSASRec.from_config(TINY).fit(split)
    with pytest.raises(ConfigError, match="shape"):
        PersonaSASRec.from_config(TINY).fit(split, persona_vectors=random_personas(split.n_users - 1))


# -- leakage --------------------------------------------------------------------------------


def hand_space(n_items: int) -> ItemSpace:
    """Items i -> fine cluster i // 3 (unique names), two coarse topics."""
    fine = (np.arange(n_items) // 3).astype(np.int32)
    n_fine = int(fine.max()) + 1
    fine_parent = (np.arange(n_fine) % 2).astype(np.int32)
    emb = np.eye(n_items, dtype=np.float32)
    return ItemSpace(
        item_ids=np.array([str(i) for i in range(n_items)], dtype=object),
        embeddings=emb,
        fine=fine,
        coarse=fine_parent[fine],
        semantic_ids=np.stack([fine_parent[fine], fine, np.arange(n_items) % 3], axis=1).astype(np.int32),
        fine_names=[f"topic {c}" for c in range(n_fine)],
        coarse_names=["left", "right"],
        fine_parent=fine_parent,
    )


TRAIN = [[0, 1, 3, 4, 6], [0, 1, 2, 9], [3, 4, 5, 10], [6, 7, 8, 0], [9, 10, 11, 1]]
VALID = [[2], [3], [1], [1], [4]]
TEST = [[5], [4], [2], [3], [0]]


def test_validation_and_test_items_never_reach_the_personas():
    space = hand_space(12)
    split = make_split(TRAIN, VALID, TEST, n_items=12)
    # user 0's held-out events move to clusters it never saw in training
    changed = make_split(TRAIN, [[11, 10]] + VALID[1:], [[9]] + TEST[1:], n_items=12)
    a = UserProfiles.build(split, space, stage="valid")
    b = UserProfiles.build(changed, space, stage="valid")
    assert a.texts == b.texts
    # the comparison is not vacuous: a persona that may see validation events does change
    assert UserProfiles.build(changed, space, stage="test").texts[0] != b.texts[0]

    model = PersonaSASRec.from_config(TINY)
    va, info = model.persona_vectors(split, FitContext(items=space, embedder=HashEmbedder()))
    vb, _ = model.persona_vectors(changed, FitContext(items=space, embedder=HashEmbedder()))
    np.testing.assert_array_equal(va, vb)
    assert info["llm_share"] == 0.0 and info["stage"] == "valid"


def test_a_stored_persona_that_saw_validation_events_is_not_used(tmp_path):
    from personarec.personas.store.sqlite import SQLiteStore

    space = hand_space(12)
    split = make_split(TRAIN, VALID, TEST, n_items=12)
    store = SQLiteStore(tmp_path / "personas.db")

    def persona(user: int, version: int, summary: str) -> Persona:
        return Persona(
            user_id=f"u{user}", version=version, summary=summary,
            interests=[Interest(cluster="topic 0", weight=1.0)],
            explore=[ExploreTopic(cluster="topic 3", reason="test")],
            provenance=Provenance(model="test-llm", backend="test", prompt_version="t"),
        )  # fmt: skip

    store.put(persona(0, len(TRAIN[0]) + len(VALID[0]), "LEAKED summary written from train + valid"))
    store.put(persona(1, len(TRAIN[1]), "LLM summary of the training history"))
    embedder = HashEmbedder()
    model = PersonaSASRec.from_config(dict(TINY, max_epochs=1))
    model.fit(split, items=space, persona_store=store, embedder=embedder)
    texts = embedder.seen
    assert "LEAKED" not in texts[0] and texts[0] == UserProfiles.build(split, space).texts[0]
    assert texts[1].startswith("LLM summary of the training history")
    assert model.persona_info_["llm_share"] == pytest.approx(1 / 5) and model.persona_info_["n_llm"] == 1
    store.close()


# -- persistence ----------------------------------------------------------------------------


def test_save_load_gives_identical_scores_without_personas(tmp_path):
    split = cyclic_split(n_users=30)
    model = build_recommender("persona_sasrec", dict(TINY, pooling="attention", alpha=0.5))
    model.fit(split, persona_vectors=random_personas(split.n_users))
    model.save(tmp_path / "m")
    again = load_recommender(tmp_path / "m")
    assert isinstance(again, PersonaSASRec) and again.get_config() == model.get_config()
    np.testing.assert_array_equal(all_scores(again, split), all_scores(model, split))
    seq = split.history("test")[0]
    np.testing.assert_array_equal(again.score_sequence(seq), model.score_sequence(seq))
    for key, value in model.net.state_dict().items():
        torch.testing.assert_close(again.net.state_dict()[key], value, rtol=0, atol=0)
    assert again.persona_info_ == model.persona_info_


# -- real data ------------------------------------------------------------------------------


def genre_space(split) -> ItemSpace:
    """ML-100k items clustered by their first two genre labels (no embedding model needed)."""
    genres = split.catalogue.frame["genres"].to_list()
    keys = [" & ".join(sorted(g)[:2]) if g else "Unlabelled" for g in genres]
    fine_names = sorted(set(keys))
    fine = np.array([fine_names.index(k) for k in keys], dtype=np.int32)
    coarse_names = sorted({n.split(" & ")[0] for n in fine_names})
    fine_parent = np.array([coarse_names.index(n.split(" & ")[0]) for n in fine_names], dtype=np.int32)
    return ItemSpace(
        item_ids=split.item_ids, embeddings=np.eye(len(keys), 4, dtype=np.float32), fine=fine,
        coarse=fine_parent[fine], semantic_ids=np.stack([fine_parent[fine], fine, np.arange(len(keys))], axis=1).astype(np.int32),
        fine_names=fine_names, coarse_names=coarse_names, fine_parent=fine_parent,
    )  # fmt: skip


@pytest.mark.slow
def test_ml100k_personas_embedded_with_the_sentence_model(ml100k_split, tmp_path):
    """The full path on real data: fallback personas of every user, MiniLM vectors, one epoch."""
    split = ml100k_split
    model = PersonaSASRec.from_config(dict(TINY, max_len=20, max_epochs=1, early_stopping=False, batch_size=128))
    model.fit(split, items=genre_space(split), embed_cache=tmp_path / "emb")
    info = model.persona_info_
    assert info["n_users"] == split.n_users and info["dim"] == 384 and info["llm_share"] == 0.0
    assert "MiniLM" in info["model"]
    assert np.isfinite(model.history_[0]["aux_loss"])
    assert model.net.persona_head.proj.in_features == 384


def test_early_stopping_waits_for_the_end_of_the_persona_phase():
    split = cyclic_split(n_users=20)
    cfg = dict(TINY, max_epochs=12, early_stopping=True, patience=1, lr=1e-6, aux_epochs=4, alpha=0.5)
    model = PersonaSASRec.from_config(cfg).fit(split, persona_vectors=random_personas(split.n_users))
    assert model.min_epochs() == 5 and len(model.history_) >= 5  # a flat validation curve cannot stop it earlier
    plain = PersonaSASRec.from_config(dict(cfg, alpha=0.0)).fit(split, persona_vectors=random_personas(split.n_users))
    assert plain.min_epochs() == 0 and len(plain.history_) < 5  # alpha = 0 keeps SASRec's rule
