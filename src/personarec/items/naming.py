"""Short human-readable names for clusters, from their members' text (class-based TF-IDF).

Each item contributes a *set* of terms: facets (genres, category, brand; kept as written, e.g.
"Sci-Fi") and words (title words and tags, lower-cased; years, numbers and stopwords removed).
A term's score in cluster ``c`` is ``share of c's items that have it x log(1 + avg cluster size /
items that have it anywhere)``: frequent inside, rare outside. Terms carried by very few members
are not candidates (a word from one title says nothing about the cluster). A name is the best
``n_keywords`` terms, facets first: "Sci-Fi · space · alien".

Names are made unique deterministically: larger clusters keep their name; a later duplicate adds
its next-best keyword, and a numeric suffix only when the keywords run out.

An LLM (or a human) may rename clusters afterwards through the ``rename`` hook: a callable that
takes the :class:`ClusterInfo` of every cluster of one level and returns one name per cluster;
empty answers keep the keyword name and duplicates are resolved the same way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

SEPARATOR = " · "
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_YEAR = re.compile(r"\(\s*\d{4}(?:\s*[-–]\s*\d{0,4})?\s*\)")
_IGNORED_FACETS = {"(no genres listed)", "unknown", "", "n/a", "none"}
_EXTRA_STOPWORDS = {
    "movie", "film", "films", "part", "vol", "volume", "episode", "edition", "ii", "iii", "iv", "les",
    "der", "die", "das", "del", "los", "las", "und", "une", "el", "il", "la", "le", "de", "du", "des",
}  # fmt: skip


#: A compact English stopword list (function words only; content words stay candidates).
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can cannot could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves get got one two
    three new old may might must shall upon via vs""".split()
) | _EXTRA_STOPWORDS


@dataclass(frozen=True)
class ClusterInfo:
    """What a renaming hook sees about one cluster."""

    level: str  # "fine" | "coarse"
    cluster_id: int
    name: str  # the keyword name
    keywords: list[str]
    size: int
    sample_titles: list[str] = field(default_factory=list)
    parent_name: str | None = None


RenameHook = Callable[[list[ClusterInfo]], Sequence[str | None]]


def item_terms(frame: pl.DataFrame, max_tags: int = 20) -> tuple[list[list[str]], set[str]]:
    """Per item, its distinct terms; and the set of terms that are facets (genres/category/brand)."""
    stop = STOPWORDS
    facets: set[str] = set()
    out: list[list[str]] = []
    cols = set(frame.columns)
    titles = frame["title"].to_list() if "title" in cols else [""] * frame.height
    genres = frame["genres"].to_list() if "genres" in cols else [None] * frame.height
    tags = frame["tags"].to_list() if "tags" in cols else [None] * frame.height
    cats = frame["category"].to_list() if "category" in cols else [None] * frame.height
    brands = frame["brand"].to_list() if "brand" in cols else [None] * frame.height
    for title, gs, ts, cat, brand in zip(titles, genres, tags, cats, brands, strict=True):
        terms: dict[str, None] = {}
        # a category path ("Beauty > Makeup > Eyes") names the item by its leaf; the path's levels
        # are already facets when the loader lists them as genres
        leaf = cat.split(">")[-1] if cat else None
        for facet in [*(gs or []), leaf, brand]:
            if facet is not None and facet.strip().lower() not in _IGNORED_FACETS:
                f = facet.strip()
                facets.add(f)
                terms[f] = None
        for tag in (ts or [])[:max_tags]:
            t = " ".join(_WORD.findall(tag.lower()))
            if len(t) >= 3 and t not in stop:
                terms[t] = None
        for w in _WORD.findall(_YEAR.sub(" ", title or "").lower()):
            if len(w) >= 3 and w not in stop:
                terms[w] = None
        out.append(list(terms))
    return out, facets


def _term_matrix(terms: list[list[str]]) -> tuple[sp.csr_matrix, np.ndarray]:
    vocab: dict[str, int] = {}
    indices: list[int] = []
    indptr = [0]
    for ts in terms:
        indices.extend(vocab.setdefault(t, len(vocab)) for t in ts)
        indptr.append(len(indices))
    x = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(terms), len(vocab)),
    )
    return x, np.asarray(list(vocab), dtype=object)


def class_tfidf_keywords(
    labels: np.ndarray, terms: list[list[str]], n_clusters: int, *, top: int = 8, min_share: float = 0.1
) -> list[list[str]]:
    """Top ``top`` keywords per cluster by class-based TF-IDF, best first.

    A keyword must be carried by at least ``min_share`` of the cluster's items and by two of them
    (one in a singleton cluster). Ties break by support, then alphabetically (deterministic).
    """
    labels = np.asarray(labels, dtype=np.int64)
    x, vocab = _term_matrix(terms)
    if x.shape[1] == 0:
        return [[] for _ in range(n_clusters)]
    n = len(labels)
    onehot = sp.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(n_clusters, n))
    counts = (onehot @ x).tocsr()  # [clusters, terms] members having the term; sparse (100k items fit)
    counts.sort_indices()
    sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    idf = np.log1p((n / max(n_clusters, 1)) / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1))
    alphabetical = np.argsort(np.argsort(vocab.astype(str)))
    keywords: list[list[str]] = []
    for c in range(n_clusters):
        lo, hi = counts.indptr[c], counts.indptr[c + 1]
        terms_c, counts_c = counts.indices[lo:hi], counts.data[lo:hi]
        support = max(min(2.0, sizes[c]), np.ceil(min_share * sizes[c]))
        keep = counts_c >= support
        terms_c, counts_c = terms_c[keep], counts_c[keep]
        score = counts_c / max(sizes[c], 1.0) * idf[terms_c]
        order = np.lexsort((alphabetical[terms_c], -counts_c, -score))[:top]
        keywords.append([str(vocab[j]) for j in terms_c[order]])
    return keywords


def name_from_keywords(keywords: list[str], facets: set[str], n: int) -> str:
    chosen = keywords[:n]
    chosen = [k for k in chosen if k in facets] + [k for k in chosen if k not in facets]
    return SEPARATOR.join(chosen)


def make_unique(names: list[str], keywords: list[list[str]], sizes: np.ndarray, facets: set[str], n: int) -> list[str]:
    """Resolve duplicate names: the largest cluster keeps it, others add keywords, then a suffix."""
    order = np.lexsort((np.arange(len(names)), -np.asarray(sizes)))  # size desc, then id
    taken: set[str] = set()
    result = list(names)
    for i in order:
        name = result[i] or "misc"
        extra = len(name.split(SEPARATOR))
        from_keywords = name == name_from_keywords(keywords[i], facets, extra)
        while name in taken and from_keywords and extra < len(keywords[i]):
            extra += 1
            name = name_from_keywords(keywords[i], facets, extra)
        suffix = 2
        base = name
        while name in taken:
            name = f"{base} ({suffix})"
            suffix += 1
        taken.add(name)
        result[i] = name
    return result


#: Unicode categories a reader cannot see: controls, format characters (zero-width spaces, bidi
#: overrides, the tag characters that can spell hidden instructions), private use, unassigned.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cn", "Cs"})


def visible(text: str) -> str:
    """``text`` as one line of what a reader sees: invisible characters dropped, whitespace collapsed.

    Catalogue text reaches cluster names, prompts and persona summaries; without this a title could
    carry text the model reads but a person reviewing it does not (Unicode tag characters, bidi
    overrides, zero-width joiners)."""
    if not text.isprintable():
        kept = (ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE)
        text = "".join(" " if ch.isspace() else ch for ch in kept)
    return " ".join(text.split())


def label(text: str) -> str:
    """A catalogue label (cluster name, member title) as plain text: :func:`visible`, without the
    angle brackets of markup and chat-template tokens (``<|im_start|>`` -> ``|im_start|``)."""
    return " ".join(visible(text).replace("<", " ").replace(">", " ").split())


_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<art>The|A|An|Les|La|Le|Il|El|Das|Der|Die)$")


def clean_title(title: str, limit: int = 32) -> str:
    """A member title as a person would say it: no year, "Usual Suspects, The" -> "The Usual
    Suspects", cut at a word boundary to ``limit`` characters."""
    t = label(_YEAR.sub(" ", str(title))).strip(" -:,")
    m = _ARTICLE.match(t)
    if m:
        t = f"{m['art']} {m['rest']}"
    t = t.replace("(", "").replace(")", "")
    if len(t) > limit:
        t = t[:limit].rsplit(" ", 1)[0].rstrip(" -:,&") + "…"
    return t or label(str(title))[:limit]


def representative_members(labels: np.ndarray, n_clusters: int, popularity: np.ndarray | None) -> list[list[int]]:
    """Members of each cluster, most popular first (training interactions; ties by item index)."""
    labels = np.asarray(labels, dtype=np.int64)
    pop = np.zeros(len(labels)) if popularity is None else np.asarray(popularity, dtype=np.float64)
    order = np.lexsort((np.arange(len(labels)), -pop, labels))
    bounds = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    return [order[bounds[c] : bounds[c + 1]].tolist() for c in range(n_clusters)]


def readable_names(
    labels: np.ndarray,
    n_clusters: int,
    terms: list[list[str]],
    facets: set[str],
    titles: list[str],
    popularity: np.ndarray | None = None,
    *,
    n_facets: int = 2,
) -> list[str]:
    """Names a person understands: ``"Crime · Thriller (Pulp Fiction)"``.

    The head is the cluster's most distinctive facets (genres, category, brand); where the catalogue
    has none, title words or tags carried by at least a quarter of the members (never a stopword, a
    number or a word from one or two titles). The tail is the cluster's most popular member.
    Duplicates take one more facet/word, then a second member; never a numeric suffix.
    """
    strong = class_tfidf_keywords(labels, terms, n_clusters, min_share=0.25)
    members = representative_members(labels, n_clusters, popularity)
    heads: list[list[str]] = []
    for c in range(n_clusters):
        fac = [k for k in strong[c] if k in facets]
        words = [k for k in strong[c] if k not in facets and len(k) >= 4]
        heads.append(fac or words)
    n_head = [min(n_facets, len(h)) for h in heads]
    n_members = [1] * n_clusters

    def render(c: int) -> str:
        head = SEPARATOR.join(heads[c][: n_head[c]])
        tail = " / ".join(clean_title(titles[i]) for i in members[c][: n_members[c]])
        if not tail:
            return head or "misc"
        return f"{head} ({tail})" if head else tail

    names = [render(c) for c in range(n_clusters)]
    for _ in range(4):  # resolve duplicates: more head terms first, then more members
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        dup = [c for c in range(n_clusters) if counts[names[c]] > 1]
        if not dup:
            break
        for c in dup:
            if n_head[c] < len(heads[c]):
                n_head[c] += 1
            elif n_members[c] < len(members[c]):
                n_members[c] += 1
            names[c] = render(c)
    return names


def validated_renames(
    names: list[str],
    answers: Sequence[str | None],
    labels: np.ndarray,
    terms: list[list[str]],
    titles: list[str] | None,
    max_chars: int = 48,
) -> list[str]:
    """Keep a proposed name (an LLM's, a person's) only where it is short, unique and faithful to
    the members (one of its words is a term or title word of at least a fifth of them); elsewhere
    the generated name stays."""
    labels = np.asarray(labels, dtype=np.int64)
    proposed = [" ".join(str(a or "").split()) for a in answers]
    counts: dict[str, int] = {}
    for a in proposed:
        counts[a.casefold()] = counts.get(a.casefold(), 0) + 1
    taken = {n.casefold() for n in names}
    out = list(names)
    for c, a in enumerate(proposed):
        if not a or len(a) > max_chars or counts[a.casefold()] > 1:
            continue
        if a.casefold() in taken and a.casefold() != names[c].casefold():
            continue
        members = np.flatnonzero(labels == c)
        words = {w for w in _WORD.findall(a.lower()) if len(w) >= 3 and w not in STOPWORDS}
        bags = []
        for i in members:
            bag = {t.lower() for t in terms[i]}
            if titles is not None:
                bag |= set(_WORD.findall(str(titles[i]).lower()))
            bags.append(bag)
        support = max((sum(w in b for b in bags) for w in words), default=0)
        if support >= max(1, 0.2 * len(members)):
            out[c] = a
    return out


def name_clusters(
    labels: np.ndarray,
    n_clusters: int,
    terms: list[list[str]],
    facets: set[str],
    *,
    n_keywords: int = 3,
    level: str = "fine",
    titles: list[str] | None = None,
    parent_names: list[str | None] | None = None,
    rename: RenameHook | None = None,
    popularity: np.ndarray | None = None,
    style: str = "readable",
) -> tuple[list[str], list[list[str]]]:
    """Unique names and keyword lists (best first) for clusters ``0..n_clusters-1``.

    ``style="readable"`` (with ``titles``): facets + the most popular member (:func:`readable_names`);
    ``"keywords"``: the c-TF-IDF keyword names of earlier versions.
    """
    strict = class_tfidf_keywords(labels, terms, n_clusters)
    # Weaker keywords (few members) only serve to tell apart clusters whose names would collide.
    relaxed = class_tfidf_keywords(labels, terms, n_clusters, min_share=0.0)
    keywords = [s + [k for k in r if k not in s][: max(0, 8 - len(s))] for s, r in zip(strict, relaxed, strict=True)]
    if style == "readable" and titles is not None:
        names = readable_names(labels, n_clusters, terms, facets, titles, popularity, n_facets=min(2, n_keywords))
    else:
        names = [name_from_keywords(k, facets, n_keywords) for k in strict]
    sizes = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_clusters)
    if rename is not None:
        infos = [
            ClusterInfo(
                level=level,
                cluster_id=c,
                name=names[c],
                keywords=keywords[c],
                size=int(sizes[c]),
                sample_titles=[titles[i] for i in np.flatnonzero(labels == c)[:10]] if titles else [],
                parent_name=parent_names[c] if parent_names else None,
            )
            for c in range(n_clusters)
        ]
        answers = list(rename(infos))
        if len(answers) != n_clusters:
            raise ValueError(f"rename hook returned {len(answers)} names for {n_clusters} clusters")
        names = validated_renames(names, answers, labels, terms, titles)
    names = [label(n) for n in names]  # facets (genres, categories, brands) are catalogue text too
    return make_unique(names, keywords, sizes, facets, n_keywords), keywords
