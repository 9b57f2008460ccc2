from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from personarec.items.clusters import allocate, hierarchical_kmeans
from personarec.items.naming import SEPARATOR, item_terms, make_unique, name_clusters


def test_two_levels_are_consistent(ml100k_space, items_config):
    s = ml100k_space
    n = s.n_items
    assert s.n_coarse == items_config.coarse_size(n) == 14
    assert s.n_fine == items_config.fine_size(n) == 67
    # every item's coarse topic is its fine cluster's parent: fine clusters never straddle topics
    np.testing.assert_array_equal(s.coarse, s.fine_parent[s.fine])
    # contiguous ids, no empty cluster, parents grouped
    assert np.bincount(s.fine, minlength=s.n_fine).min() >= 1
    assert np.bincount(s.coarse, minlength=s.n_coarse).min() >= 1
    assert set(np.unique(s.fine_parent).tolist()) == set(range(s.n_coarse))
    assert np.all(np.diff(s.fine_parent) >= 0)
    assert s.fine.dtype == s.coarse.dtype == s.fine_parent.dtype == np.int32


def test_names_are_unique_non_empty_and_free_of_years(ml100k_space):
    for names in (ml100k_space.fine_names, ml100k_space.coarse_names):
        assert len(set(names)) == len(names)
        assert all(name.strip() for name in names)
        assert not any(re.search(r"\b(19|20)\d\d\b", name) for name in names)
    assert all(ml100k_space.fine_keywords), "every fine cluster has keywords"
    # ML-100k's text is title + genres: the genre vocabulary must show up in the names
    genres = {"Drama", "Comedy", "Horror", "Sci-Fi", "Documentary", "Thriller"}
    assert sum(any(g in name for g in genres) for name in ml100k_space.fine_names) > ml100k_space.n_fine // 2


def test_same_seed_same_clusters(ml100k_space):
    a = hierarchical_kmeans(ml100k_space.embeddings, 5, 20, niter=10, seed=3)
    b = hierarchical_kmeans(ml100k_space.embeddings, 5, 20, niter=10, seed=3)
    np.testing.assert_array_equal(a.fine, b.fine)
    np.testing.assert_array_equal(a.coarse, b.coarse)
    assert a.n_coarse == 5 and a.n_fine == 20


def test_fewer_distinct_points_than_clusters_keeps_ids_contiguous():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    x = np.repeat(base, 10, axis=0)  # 60 items, 6 distinct points
    c = hierarchical_kmeans(x, 4, 20, seed=1)
    assert c.n_fine <= 6
    np.testing.assert_array_equal(c.coarse, c.fine_parent[c.fine])
    assert np.bincount(c.fine).min() >= 1 and len(np.bincount(c.fine)) == c.n_fine


@pytest.mark.parametrize("seed", range(20))
def test_allocate_is_proportional_and_bounded(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 200, size=rng.integers(1, 30))
    total = int(rng.integers(len(sizes), sizes.sum() + 1))
    alloc = allocate(sizes, total)
    assert alloc.sum() == total
    assert np.all(alloc >= 1) and np.all(alloc <= sizes)
    assert np.all(np.abs(alloc - total * sizes / sizes.sum()) <= 1 + 1e-9) or sizes.min() * total / sizes.sum() < 1


def _toy_catalogue() -> tuple[pl.DataFrame, np.ndarray]:
    frame = pl.DataFrame(
        {
            "title": ["Space Wars (1990)", "Space Cowboys (2000)", "Alien Space (1979)",
                      "Love Story (1970)", "Love Actually (2003)", "Paris Love (1999)"],
            "genres": [["Sci-Fi"], ["Sci-Fi", "Western"], ["Sci-Fi", "Horror"], ["Romance"], ["Romance"], ["Romance", "Drama"]],
            "tags": [[], [], ["aliens"], [], ["christmas"], []],
        }
    )  # fmt: skip
    return frame, np.array([0, 0, 0, 1, 1, 1])


def test_class_tfidf_names_pick_the_shared_facet_and_word():
    frame, labels = _toy_catalogue()
    terms, facets = item_terms(frame)
    assert "Sci-Fi" in facets and "space" in terms[0] and not any(t.isdigit() for ts in terms for t in ts)
    names, keywords = name_clusters(labels, 2, terms, facets, n_keywords=3)
    assert names == ["Sci-Fi" + SEPARATOR + "space", "Romance" + SEPARATOR + "love"]
    assert keywords[0][:2] == ["Sci-Fi", "space"] or keywords[0][:2] == ["space", "Sci-Fi"]


def test_rename_hook_sees_clusters_and_names_stay_unique():
    frame, labels = _toy_catalogue()
    terms, facets = item_terms(frame)
    seen = []

    def hook(infos):
        seen.extend(infos)
        return ["Space adventures", ""]  # a faithful answer, and an empty one (keeps the generated name)

    titles = frame["title"].to_list()
    plain, _ = name_clusters(labels, 2, terms, facets, titles=titles)
    names, _ = name_clusters(labels, 2, terms, facets, titles=titles, rename=hook)
    assert names == ["Space adventures", plain[1]]
    assert [i.size for i in seen] == [3, 3] and "Space Wars (1990)" in seen[0].sample_titles
    # duplicates and names no member supports are refused: the generated names stay
    names, _ = name_clusters(labels, 2, terms, facets, titles=titles, rename=lambda infos: ["Space"] * 2)
    assert names == plain
    names, _ = name_clusters(labels, 2, terms, facets, titles=titles, rename=lambda infos: ["Cooking", "Gardening"])
    assert names == plain
    with pytest.raises(ValueError):
        name_clusters(labels, 2, terms, facets, rename=lambda infos: ["only one"])


def test_duplicate_names_are_resolved_deterministically():
    keywords = [["Drama", "war"], ["Drama", "love"], ["Drama"], ["Drama"]]
    facets = {"Drama"}
    names = make_unique(["Drama"] * 4, keywords, np.array([10, 20, 5, 5]), facets, 1)
    # the largest cluster keeps the plain name, others add their next keyword, then a suffix
    assert names == ["Drama" + SEPARATOR + "war", "Drama", "Drama (2)", "Drama (3)"]
