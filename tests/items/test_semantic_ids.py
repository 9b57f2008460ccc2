from __future__ import annotations

import numpy as np
import polars as pl

from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.data.splits import make_split
from personarec.items.build import build_item_space
from personarec.items.config import ItemsConfig
from personarec.items.semantic_ids import RQKMeans, RQKMeansConfig, add_uniqueness_digit, semantic_ids


def test_ml100k_ids_are_unique(ml100k_space):
    ids = ml100k_space.semantic_ids
    assert ids.shape == (ml100k_space.n_items, 4) and ids.dtype == np.int32
    assert len(np.unique(ids, axis=0)) == len(ids)
    meta = ml100k_space.meta["semantic_ids"]
    assert meta["collisions"] == 0
    assert meta["codes"] == 64 and ids[:, :3].max() < 64 and ids.min() >= 0
    assert len(meta["utilisation"]) == 3 and all(0 < u <= 1 for u in meta["utilisation"])
    # residual levels must explain more and more of the embedding
    assert meta["relative_residual"] == sorted(meta["relative_residual"], reverse=True)
    # duplicated texts (identical vectors) collide on the codes and are told apart by the digit
    assert meta["colliding_items"] >= 2 and meta["max_suffix"] >= 1


def test_saved_codebooks_reproduce_the_codes(ml100k_space):
    rq = RQKMeans()
    rq.codebooks = list(ml100k_space.rq_codebooks)
    np.testing.assert_array_equal(rq.encode(ml100k_space.embeddings), ml100k_space.semantic_ids[:, :-1])


def test_uniqueness_digit_counts_within_each_code_group():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 1]])
    np.testing.assert_array_equal(add_uniqueness_digit(codes)[:, -1], [0, 1, 0, 2, 0])


def test_heavily_duplicated_vectors_still_get_unique_ids(ml100k_space):
    x = np.vstack([ml100k_space.embeddings[:300]] * 3 + [np.repeat(ml100k_space.embeddings[:1], 25, axis=0)])
    ids, _, stats = semantic_ids(x, RQKMeansConfig(levels=2, codes=16, niter=5))
    assert len(np.unique(ids, axis=0)) == len(x)
    assert stats.collisions == 0 and stats.max_suffix >= 27


def _duplicated_text_dataset() -> Dataset:
    """200 items whose catalogue has only 12 distinct texts; every user sees 10 items."""
    rng = np.random.default_rng(0)
    n_items, n_users = 200, 60
    genres = [["Drama"], ["Comedy"], ["Sci-Fi"], ["Horror"]]
    catalogue = pl.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n_items)],
            "title": [f"Same Title {j % 3}" for j in range(n_items)],
            "genres": [genres[j % 4] for j in range(n_items)],
        }
    )
    users = np.repeat(np.arange(n_users), 10)
    items = rng.integers(0, n_items, size=len(users))
    frame = pl.DataFrame(
        {"user_id": [f"u{u}" for u in users], "item_id": [f"i{j}" for j in items], "timestamp": np.arange(len(users))}
    )
    return Dataset("dupes", Interactions.from_frame(frame), Catalogue.from_frame(catalogue))


def test_build_on_a_catalogue_of_duplicated_texts(items_cache):
    split = make_split(_duplicated_text_dataset())
    assert len(set(split.catalogue.texts())) == 12
    config = ItemsConfig(n_coarse=4, n_fine=40, rq_codes=8, rq_levels=2, seed=1)
    space = build_item_space(split, config, cache_dir=items_cache, show_progress=False)
    assert space.meta["embedding"]["n_unique"] == 12
    assert len(np.unique(space.semantic_ids, axis=0)) == space.n_items
    assert space.meta["semantic_ids"]["collisions"] == 0
    # only 12 distinct points: clusters shrink to what the data supports, ids stay consistent
    assert space.n_fine <= 12
    np.testing.assert_array_equal(space.coarse, space.fine_parent[space.fine])
    assert len(set(space.fine_names)) == space.n_fine
