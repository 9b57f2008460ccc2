from __future__ import annotations

import numpy as np
import pytest

from personarec.errors import ConfigError
from personarec.items.config import ItemsConfig
from personarec.items.embed import BUNDLED_ID, EmbeddingCache, TextEmbedder, embed_texts, model_key, resolve_model


def test_ml100k_embeddings_are_unit_float32(ml100k_space, ml100k_split):
    emb = ml100k_space.embeddings
    assert emb.shape == (ml100k_split.n_items, 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert ml100k_space.meta["embedding"]["n_texts"] == ml100k_split.n_items


def test_second_run_embeds_nothing(ml100k_space, ml100k_split, items_config, items_cache):
    emb, stats = embed_texts(ml100k_split.catalogue.texts(), items_config, items_cache, show_progress=False)
    assert stats.n_computed == 0
    assert stats.n_cached == stats.n_unique > 0
    np.testing.assert_array_equal(emb, ml100k_space.embeddings)


def test_identical_texts_share_one_vector(ml100k_space, ml100k_split):
    texts = ml100k_split.catalogue.texts()
    first: dict[str, int] = {}
    pairs = []
    for i, t in enumerate(texts):
        if t in first:
            pairs.append((first[t], i))
        first.setdefault(t, i)
    assert pairs, "ML-100k has duplicated item texts"
    for a, b in pairs:
        np.testing.assert_array_equal(ml100k_space.embeddings[a], ml100k_space.embeddings[b])


def test_cache_serves_known_texts_and_encodes_only_new_ones(tmp_path):
    config = ItemsConfig()
    emb1, s1 = embed_texts(["space opera", "romantic comedy", "space opera"], config, tmp_path, show_progress=False)
    assert (s1.n_unique, s1.n_computed, s1.n_cached) == (2, 2, 0)
    np.testing.assert_array_equal(emb1[0], emb1[2])
    emb2, s2 = embed_texts(["romantic comedy", "heist thriller", "space opera"], config, tmp_path, show_progress=False)
    assert (s2.n_computed, s2.n_cached) == (1, 2)
    np.testing.assert_allclose(emb2[0], emb1[1], atol=1e-6)
    np.testing.assert_allclose(emb2[2], emb1[0], atol=1e-6)
    # The encoder groups texts of similar length; a text's vector must not depend on its batch.
    assert float(emb2[1] @ emb1[0]) < 0.99
    cache = TextEmbedder(config, tmp_path).cache
    assert len(cache) == 3
    cache.compact()
    assert len(cache) == 3 and len(list(cache.directory.glob("shard-*.parquet"))) == 1


def test_cache_can_be_turned_off(tmp_path):
    config = ItemsConfig(cache=False)
    _, s1 = embed_texts(["a quiet western"], config, tmp_path, show_progress=False)
    _, s2 = embed_texts(["a quiet western"], config, tmp_path, show_progress=False)
    assert s1.n_computed == s2.n_computed == 1
    assert not any(tmp_path.rglob("shard-*.parquet"))


def test_bundled_model_resolves_offline_and_aliases_share_a_cache():
    source, model_id, bundled = resolve_model("all-MiniLM-L6-v2")
    assert bundled and model_id == BUNDLED_ID and source.endswith("model")
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2")[1] == model_id
    assert model_key(model_id) != model_key(model_id, max_seq_length=64)
    assert model_key(model_id) != model_key("BAAI/bge-small-en-v1.5")
    assert resolve_model("BAAI/bge-small-en-v1.5") == ("BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", False)


def test_unloadable_model_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load embedding model"):
        embed_texts(["x"], ItemsConfig(model="no-such-org/no-such-model-xyz"), tmp_path, show_progress=False)


def test_cache_lookup_on_empty_store(tmp_path):
    found, vectors = EmbeddingCache(tmp_path / "none").lookup([b"\0" * 32])
    assert not found.any() and vectors is None
