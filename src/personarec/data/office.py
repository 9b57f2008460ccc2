"""Amazon 2014 Office Products, 5-core, as preprocessed by the LRD authors (``ysh-1998/LRD``,
``data/Office``): 53,258 reviews, 4,905 users, 2,420 items, day timestamps, text for every item.

Files (all tab-separated):

* ``train.csv``, ``dev.csv``, ``test.csv``: ``user_id item_id time [neg_items]`` with a header;
  integer ids, ``time`` in Unix seconds at day resolution. ``dev``/``test`` hold each user's
  second-to-last and last review; their 99 sampled negatives are ignored (personarec ranks the
  full catalogue). Together the three files are the whole dataset.
* ``Office.item2index``: ``ASIN item_index`` (no header): item ids become ASINs, as in the other
  Amazon loaders. User ids stay the integers (the files do not map them back to reviewers).
* ``Office.text``: ``id text`` (header), text = title + leaf category + brand, space-joined.
* ``item_meta.csv``: ``item_id i_category i_brand ...``; ``i_brand`` (0 = no brand) groups the
  items of one brand, which is what lets :func:`split_item_text` cut the brand off the text.

Tie-break: many users review several items on one day. Events keep the file order train, dev,
test (then line order) as ``seq``, so a user's same-day dev/test review sorts after the training
ones, which is how the publisher cut them (a stable sort by time): with it the default
leave-one-out split reproduces the official dev/test targets for every user.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from personarec.data.parsing import ReadReport, file_sha256, read_delimited
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.errors import DataError

EVENT_FILES = ("train.csv", "dev.csv", "test.csv")
INDEX_FILE = "Office.item2index"
TEXT_FILE = "Office.text"
META_FILE = "item_meta.csv"
DOMAIN = "office product"

_MAX_BRAND_WORDS = 6
_MAX_CATEGORY_WORDS = 6
#: a word of an Amazon category name: capitalised, or a joining word ("Pins & Tacks",
#: "Printer Labels: Laser & Inkjet"); digits and brackets only occur in titles
_CATEGORY_WORD = re.compile(r"^(?:[A-Z][\w'/-]*[,:]?|&|and|of|for)$")
_PUNCT = re.compile(r"[^\w&+'-]")


def _require(directory: Path, names: Sequence[str]) -> list[Path]:
    paths = [directory / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise DataError(f"missing file(s) {missing}; files found in {directory}: {found}")
    return paths


def read_events(
    directory: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> pl.DataFrame:
    """train + dev + test as (user_id, item_index, timestamp, seq, _file, _line); ``seq`` is the
    position in the concatenation train, dev, test (the documented tie-break)."""
    directory = Path(directory)
    frames = []
    for path in _require(directory, EVENT_FILES):
        frame = read_delimited(
            path, {"user_id": pl.Utf8, "item_id": pl.Utf8, "time": pl.Int64}, separator="\t", has_header=True,
            required=["user_id", "item_id", "time"], skip_bad_rows=skip_bad_rows, report=report, with_line=True,
        )  # fmt: skip
        frames.append(frame.with_columns(pl.lit(path.name).alias("_file")))
    events = pl.concat(frames)
    return events.select(
        "user_id",
        "item_id",
        pl.col("time").alias("timestamp"),
        pl.int_range(0, events.height, dtype=pl.Int64).alias("seq"),
        "_file",
        "_line",
    )


def read_item_index(path: str | Path, *, skip_bad_rows: bool = False, report: ReadReport | None = None) -> pl.DataFrame:
    """``Office.item2index`` -> (asin, item_index); an index or ASIN listed twice is an error."""
    frame = read_delimited(
        path, {"asin": pl.Utf8, "item_index": pl.Utf8}, separator="\t", has_header=False,
        required=["asin", "item_index"], skip_bad_rows=skip_bad_rows, report=report, with_line=True,
    )  # fmt: skip
    for col in ("asin", "item_index"):
        again = frame.filter(~pl.col(col).is_first_distinct())
        if again.height:
            row = again.row(0, named=True)
            raise DataError(f"{col} {row[col]!r} is listed twice", path=str(path), line=int(row["_line"]))
    return frame.drop("_line")


def _key(word: str) -> str:
    return _PUNCT.sub("", word.lower())


def _common_suffix(seqs: list[list[str]]) -> int:
    """Words shared by the ends of all ``seqs`` (at most all but one word of the shortest)."""
    n = min(len(s) for s in seqs) - 1
    k = 0
    while k < n and len({_key(s[-k - 1]) for s in seqs}) == 1:
        k += 1
    return k


def _occurs(needle: list[str], hay: list[str]) -> bool:
    n, want, keys = len(needle), [_key(w) for w in needle], [_key(w) for w in hay]
    return any(keys[i : i + n] == want for i in range(len(keys) - n + 1))


def _brand_words(seqs: list[list[str]]) -> int:
    """How many trailing words are the brand, for the items of one brand id: the suffix they share
    whose first word starts the title (brands lead titles: "Texas Instruments TI-83 ...") or that
    reappears inside it. 0: no evidence (resolved later from the category vocabulary)."""
    limit = min(_common_suffix(seqs) if len(seqs) > 1 else len(seqs[0]) - 1, _MAX_BRAND_WORDS)
    best, best_score = 0, 0
    for k in range(1, limit + 1):
        score = sum(2 * (_key(s[0]) == _key(s[-k])) + _occurs(s[-k:], s[:-k]) for s in seqs)
        if score > best_score:
            best, best_score = k, score
    return best


class _Categories:
    """Leaf-category vocabulary learnt from the text endings (once brands are cut off).

    A category is a capitalised suffix shared by >= 2 items whose preceding word varies (>= 2
    distinct, and >= 30 % of its items): "Printer Ink" is nearly always preceded by "Inkjet", so
    the category is "Inkjet Printer Ink"; a title ending ("Cyan Inkjet Printer Ink") is rare. An item
    gets the shortest such suffix; none (category left empty, words kept in the title) when its
    category occurs only once.
    """

    min_share = 0.3

    def __init__(self, texts: list[list[str]]) -> None:
        self.count: Counter[tuple[str, ...]] = Counter()
        self.before: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)
        for words in texts:
            for k in range(1, min(_MAX_CATEGORY_WORDS, len(words) - 1) + 1):
                suffix = tuple(_key(w) for w in words[-k:])
                self.count[suffix] += 1
                self.before[suffix].add(_key(words[-k - 1]))

    def words(self, words: list[str]) -> int:
        """Number of trailing words of ``words`` (title + category) that are the category; 0: unknown."""
        for k in range(1, min(_MAX_CATEGORY_WORDS, len(words) - 1) + 1):
            w = words[-k]
            if not _CATEGORY_WORD.match(w) or any(ch.isdigit() for ch in w):
                return 0
            suffix = tuple(_key(x) for x in words[-k:])
            n, varied = self.count[suffix], len(self.before[suffix])
            if n >= 2 and varied >= max(2, self.min_share * n):
                return k
        return 0


def split_item_text(item_ids: list[str], texts: list[str], brand_ids: list[int]) -> pl.DataFrame:
    """Cut ``title + leaf category + brand`` texts into (item_id, title, category, brand).

    The text has no separators, so the cut is inferred: the brand from the items sharing a brand
    id (``brand_ids``, 0 = none), the category from endings shared across items. Where a part
    cannot be told apart it stays in the title, so no word of the text is lost.
    """
    words = [t.split() for t in texts]
    groups: defaultdict[int, list[int]] = defaultdict(list)
    for i, b in enumerate(brand_ids):
        if b and len(words[i]) > 1:
            groups[b].append(i)
    n_brand = [0] * len(words)
    unresolved: list[list[int]] = []
    for members in groups.values():
        k = _brand_words([words[i] for i in members])
        if k:
            for i in members:
                n_brand[i] = k
        else:
            unresolved.append(members)
    resolved = [w[: len(w) - n_brand[i]] for i, w in enumerate(words) if n_brand[i] or not brand_ids[i]]
    categories = _Categories(resolved)
    for members in unresolved:  # the brand is what follows a known category
        limit = min(_common_suffix([words[i] for i in members]) if len(members) > 1 else len(words[members[0]]) - 1,
                    _MAX_BRAND_WORDS)  # fmt: skip
        scores = [sum(bool(categories.words(words[i][:-k])) for i in members) for k in range(1, limit + 1)]
        if scores and max(scores):
            k = scores.index(max(scores)) + 1
            for i in members:
                n_brand[i] = k
    rows: dict[str, list[str | None]] = {"item_id": [], "title": [], "category": [], "brand": []}
    for item, w, nb in zip(item_ids, words, n_brand, strict=True):
        rest = w[: len(w) - nb]
        nc = categories.words(rest)
        rows["item_id"].append(item)
        rows["title"].append(" ".join(rest[: len(rest) - nc]) or None)
        rows["category"].append(" ".join(rest[len(rest) - nc :]) if nc else None)
        rows["brand"].append(" ".join(w[len(w) - nb :]) if nb else None)
    return pl.DataFrame(rows, schema={"item_id": pl.Utf8, "title": pl.Utf8, "category": pl.Utf8, "brand": pl.Utf8})


def read_catalogue(
    directory: Path, index: pl.DataFrame, *, skip_bad_rows: bool = False, report: ReadReport | None = None
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Item text (``Office.text``) split into title / category / brand with ``item_meta.csv``'s
    brand ids; without the meta file the whole text is the title. Returns (catalogue, checksums)."""
    checksums: dict[str, str] = {}
    text_path, meta_path = directory / TEXT_FILE, directory / META_FILE
    if not text_path.exists():
        return index.select(pl.col("asin").alias("item_id")), checksums
    text = read_delimited(
        text_path, {"id": pl.Utf8, "text": pl.Utf8}, separator="\t", has_header=True, required=["id"],
        skip_bad_rows=skip_bad_rows, report=report,
    ).unique(subset="id", keep="first", maintain_order=True)  # fmt: skip
    checksums[text_path.name] = file_sha256(text_path)
    brands = pl.DataFrame(schema={"asin": pl.Utf8, "i_brand": pl.Int64})
    if meta_path.exists():
        meta = read_delimited(
            meta_path, {"item_id": pl.Utf8, "i_brand": pl.Int64}, separator="\t", has_header=True,
            skip_bad_rows=skip_bad_rows, report=report,
        )  # fmt: skip
        brands = meta.join(index, left_on="item_id", right_on="item_index", how="inner").select("asin", "i_brand")
        checksums[meta_path.name] = file_sha256(meta_path)
    if not meta_path.exists():  # no brand ids: the brand cannot be told from the category, keep the text whole
        return text.select(pl.col("id").alias("item_id"), pl.col("text").alias("title")), checksums
    text = text.join(brands, left_on="id", right_on="asin", how="left", maintain_order="left")
    catalogue = split_item_text(
        text["id"].to_list(), [t or "" for t in text["text"].to_list()], [b or 0 for b in text["i_brand"].to_list()]
    )
    return catalogue, checksums


def load_office(
    directory: str | Path,
    *,
    skip_bad_rows: bool = False,
    report: ReadReport | None = None,
    name: str = "amazon-office-2014",
) -> Dataset:
    """Events of train + dev + test in time order (ties: file order), items as ASINs with text."""
    directory = Path(directory)
    (index_path,) = _require(directory, [INDEX_FILE])
    events = read_events(directory, skip_bad_rows=skip_bad_rows, report=report)
    index = read_item_index(index_path, skip_bad_rows=skip_bad_rows, report=report)
    events = events.join(index, left_on="item_id", right_on="item_index", how="left", maintain_order="left")
    unknown = events.filter(pl.col("asin").is_null())
    if unknown.height:
        if not skip_bad_rows:
            row = unknown.row(0, named=True)
            raise DataError(
                f"item_id {row['item_id']!r} is not in {INDEX_FILE} (use --skip-bad-rows to skip such rows)",
                path=str(directory / row["_file"]), line=int(row["_line"]),
            )  # fmt: skip
        if report is not None:
            for file, lines in unknown.group_by("_file", maintain_order=True).agg("_line").iter_rows():
                report.add(directory / file, [int(x) for x in lines])
        events = events.filter(pl.col("asin").is_not_null())
    events = events.select("user_id", pl.col("asin").alias("item_id"), "timestamp", "seq").sort(
        ["timestamp", "seq"]
    )
    catalogue, text_sums = read_catalogue(directory, index, skip_bad_rows=skip_bad_rows, report=report)
    checksums = {p.name: file_sha256(p) for p in (*(directory / f for f in EVENT_FILES), index_path)}
    checksums.update(text_sums)
    return Dataset(
        name=name,
        interactions=Interactions.from_frame(events),
        catalogue=Catalogue.from_frame(catalogue),
        checksums=checksums,
        source=str(directory),
        domain=DOMAIN,
    )
