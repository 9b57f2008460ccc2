"""How good are cluster names for a person? Three measured figures, for any naming style.

- **weak share**: names with a weak part: a numeric suffix ("Drama (2)"), a stopword, or a lone
  lower-case word that is neither a facet nor carried by a quarter of the cluster's members
  ("ice", "man", "getting": a word from one or two titles says nothing about the cluster);
- **unique share**: distinct names / clusters;
- **identification** (the person-style check, automated): the name is embedded with the item
  model and compared with every cluster's centroid of member embeddings; top-1 / top-5 = the
  name's own cluster is the nearest / among the five nearest, as a reader shown the clusters' top
  members next to the name would pick it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from personarec.items.naming import SEPARATOR, STOPWORDS, item_terms
from personarec.items.space import ItemSpace

_SUFFIX = re.compile(r"\(\d+\)\s*$")
_PAREN = re.compile(r"\(([^()]*)\)\s*$")


class NameQuality(BaseModel):
    n_clusters: int
    weak_share: float
    numeric_suffix_share: float
    unique_share: float
    identify_top1: float | None = None
    identify_top5: float | None = None
    weak_examples: list[str] = []


def weak_parts(name: str, facets: set[str], member_terms: Sequence[Sequence[str]]) -> list[str]:
    """The weak parts of one name (empty = none); ``member_terms``: the terms of its members."""
    weak = []
    if _SUFFIX.search(name):
        weak.append(_SUFFIX.search(name).group(0).strip())
        name = _SUFFIX.sub("", name)
    head = _PAREN.sub("", name).strip()  # a parenthesised tail is a member's title
    n = max(len(member_terms), 1)
    for part in [p.strip() for p in head.split(SEPARATOR) if p.strip()]:
        if part in facets:
            continue
        low = part.lower()
        support = sum(low in terms for terms in member_terms) / n
        if low in STOPWORDS or len(low) <= 3 or (" " not in low and support < 0.25):
            weak.append(part)
    return weak


def name_quality(
    space: ItemSpace,
    catalogue_frame,  # polars DataFrame aligned with the space's items
    names: Sequence[str] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> NameQuality:
    """Quality of ``names`` (default: the space's fine names) for the space's fine clusters."""
    names = list(space.fine_names if names is None else names)
    terms, facets = item_terms(catalogue_frame)
    term_sets = [set(t) for t in terms]
    weak_examples, n_weak, n_suffix = [], 0, 0
    for c, name in enumerate(names):
        members = space.members(c)
        w = weak_parts(name, facets, [term_sets[i] for i in members])
        if w:
            n_weak += 1
            if len(weak_examples) < 8:
                weak_examples.append(name)
        n_suffix += bool(_SUFFIX.search(name))
    k = len(names)
    out = NameQuality(
        n_clusters=k,
        weak_share=round(n_weak / k, 4) if k else 0.0,
        numeric_suffix_share=round(n_suffix / k, 4) if k else 0.0,
        unique_share=round(len(set(names)) / k, 4) if k else 0.0,
        weak_examples=weak_examples,
    )
    if embed is not None and k:
        vecs = np.asarray(embed(names), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)
        emb = space.embeddings / np.maximum(np.linalg.norm(space.embeddings, axis=1, keepdims=True), 1e-9)
        cent = np.stack([emb[space.members(c)].mean(axis=0) for c in range(k)])
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-9)
        sims = vecs @ cent.T
        rank = (sims > sims[np.arange(k), np.arange(k)][:, None]).sum(axis=1)
        out.identify_top1 = round(float((rank == 0).mean()), 4)
        out.identify_top5 = round(float((rank < 5).mean()), 4)
    return out
