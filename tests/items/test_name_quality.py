"""Name-quality regression on ML-100k's real clusters: readable names, no weak keywords, unique,
and better identified from their members than the keyword names of earlier versions."""

from __future__ import annotations

import re

from personarec.items.name_quality import name_quality, weak_parts
from personarec.items.naming import clean_title, item_terms, name_clusters


def test_readable_names_on_ml100k(ml100k_split, ml100k_space, items_config, items_cache):
    from personarec.items.embed import TextEmbedder

    frame = ml100k_split.catalogue.frame
    embedder = TextEmbedder(items_config, items_cache)

    def embed(texts):
        return embedder.embed(texts, show_progress=False)[0]

    new = name_quality(ml100k_space, frame, embed=embed)
    terms, facets = item_terms(frame)
    old_names, _ = name_clusters(
        ml100k_space.fine, ml100k_space.n_fine, terms, facets, titles=frame["title"].to_list(), style="keywords"
    )
    old = name_quality(ml100k_space, frame, names=old_names, embed=embed)
    assert new.unique_share == 1.0 and new.numeric_suffix_share == 0.0
    assert new.weak_share == 0.0, new.weak_examples
    assert old.weak_share > 0.2  # the old names had "ice", "man", "(2)"...: the check can fail
    assert new.identify_top1 > old.identify_top1
    assert new.identify_top5 >= 0.8
    for name in ml100k_space.fine_names:
        assert not re.search(r"\(\d+\)$", name) and len(name) <= 80, name


def test_weak_parts_and_titles():
    members = [{"ice", "Drama"}, {"Drama"}, {"Drama", "love"}, {"Drama"}]
    assert weak_parts("Drama · Romance · ice", {"Drama", "Romance"}, members) == ["ice"]
    assert weak_parts("Comedy · Drama (2)", {"Comedy", "Drama"}, members) == ["(2)"]
    assert weak_parts("Drama (Casablanca)", {"Drama"}, members) == []
    assert clean_title("Usual Suspects, The (1995)") == "The Usual Suspects"
    assert clean_title("A very long title that goes on and on forever (2001)", 20).endswith("…")


def test_category_paths_name_items_by_their_leaf():
    import polars as pl

    frame = pl.DataFrame({
        "item_id": ["a", "b"], "title": ["Lash Glue 0.25 oz", "Curler"],
        "genres": [["Beauty", "Makeup", "Eyelash Tools"], ["Beauty", "Tools"]],
        "category": ["Beauty > Makeup > Eyelash Tools", "Beauty > Tools"], "brand": ["Ardell", None],
    })  # fmt: skip
    terms, facets = item_terms(frame)
    assert "Eyelash Tools" in facets and "Ardell" in facets
    assert not any(">" in f for f in facets)  # never the whole path as one facet
    assert "Eyelash Tools" in terms[0] and "Tools" in terms[1]


def test_summary_check_allows_digits_inside_catalogue_names():
    from personarec.personas.summary import check_summary

    names = ["Lash Glue (Duo 2014 Adhesive)", "Curlers [Steel]"]
    payload = {"interests": [{"cluster": names[0], "weight": 1.0}], "explore": [{"cluster": names[1], "reason": "x"}]}
    assert check_summary(f"Mostly {names[0]}. Something new to try: {names[1]}.", payload, names) == []
    assert "contains a digit run" in check_summary(f"Mostly {names[0]} 12345.", payload, names)
