"""Amazon 2018 / 2014 formats (generated files) and the real P5 sequence files."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from personarec.data.amazon import load_amazon, read_metadata
from personarec.data.p5 import load_p5, read_user_sequences
from personarec.data.parsing import ReadReport
from personarec.data.registry import load_dataset, shared_data_dir
from personarec.errors import DataError

REVIEWS = [
    {"overall": 5.0, "verified": True, "reviewTime": "09 1, 2016", "reviewerID": "A1", "asin": "B01",
     "style": {"Size:": " 3.4 oz"}, "reviewerName": "x", "reviewText": "great", "summary": "ok", "unixReviewTime": 1472688000},
    {"overall": 4.0, "reviewerID": "A1", "asin": "B02", "unixReviewTime": 1472688100, "vote": "3"},
    {"overall": 3.0, "reviewerID": "A2", "asin": "B01", "unixReviewTime": 1472688200, "image": ["u"]},
]  # fmt: skip
META = [
    {"asin": "B01", "title": "Rose &amp; Oud Perfume", "category": ["Beauty", "Fragrance"], "brand": "Acme",
     "description": ["Long lasting.", "Made in France."], "price": "$9"},
    {"asin": "B02", "title": "Soap", "category": [], "brand": "", "description": "Plain soap."},
]  # fmt: skip


def _jsonl(path, rows, compress=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_amazon_2018_reviews_and_metadata(tmp_path, compress):
    suffix = ".json.gz" if compress else ".json"
    _jsonl(tmp_path / f"All_Beauty_5{suffix}", REVIEWS, compress)
    _jsonl(tmp_path / f"meta_All_Beauty{suffix}", META, compress)
    ds = load_amazon(tmp_path)
    assert ds.summary() == {"dataset": "amazon", "interactions": 3, "users": 2, "items": 2, "catalogue_items": 2}
    ev = ds.interactions.frame
    assert ev["user_id"].to_list() == ["A1", "A1", "A2"]
    assert ev["timestamp"].to_list() == [1472688000, 1472688100, 1472688200]
    b01 = ds.catalogue.frame.filter(pl.col("item_id") == "B01").row(0, named=True)
    assert b01["title"] == "Rose & Oud Perfume"
    assert b01["category"] == "Beauty > Fragrance" and b01["genres"] == ["Beauty", "Fragrance"]
    assert b01["brand"] == "Acme"
    assert b01["description"] == "Long lasting. Made in France."
    b02 = ds.catalogue.frame.filter(pl.col("item_id") == "B02").row(0, named=True)
    assert b02["description"] == "Plain soap." and b02["brand"] is None
    assert "Brand: Acme" in ds.catalogue.texts()[0]
    assert set(ds.checksums) == {f"All_Beauty_5{suffix}", f"meta_All_Beauty{suffix}"}


def test_amazon_ratings_csv_without_metadata(tmp_path):
    (tmp_path / "Beauty.csv").write_text("0205616461,A39HTATAQ9V7YF,5.0,1369699200\n0558925278,A3JM6GV9MNOF9X,3.0,1355443200\n")
    ds = load_dataset("amazon", tmp_path, download=False)
    assert len(ds.interactions) == 2
    assert ds.interactions.frame["user_id"].to_list() == ["A39HTATAQ9V7YF", "A3JM6GV9MNOF9X"]
    assert ds.catalogue.frame["title"].to_list() == ["0205616461", "0558925278"]  # title = ASIN


def test_amazon_2014_python_literal_metadata(tmp_path):
    p = tmp_path / "meta_Beauty.json"
    p.write_text("{'asin': '0205616461', 'title': 'Bath Gel', 'categories': [['Beauty', 'Bath & Body'], ['Beauty', 'Gifts']]}\n")
    frame = read_metadata(p)
    assert frame.row(0, named=True)["genres"] == ["Beauty", "Bath & Body", "Gifts"]


def test_amazon_bad_metadata_line(tmp_path):
    p = tmp_path / "meta_x.json"
    p.write_text('{"asin": "B1", "title": "ok"}\n{"title": "no asin"}\n{"asin": "B3", \n')
    with pytest.raises(DataError, match=r"meta_x\.json, line 2: bad metadata line"):
        read_metadata(p)
    report = ReadReport()
    assert read_metadata(p, skip_bad_rows=True, report=report).height == 1
    assert report.examples[str(p)] == [2, 3]


def test_amazon_folder_must_be_unambiguous(tmp_path):
    (tmp_path / "a.csv").write_text("i,u,1,1\n")
    (tmp_path / "b_5.json").write_text("{}\n")
    with pytest.raises(DataError, match="exactly one Amazon interactions file"):
        load_amazon(tmp_path)


@pytest.mark.parametrize(
    ("name", "folder", "users", "items", "events"),
    [("p5-beauty", "amazon-p5-beauty", 22_363, 12_101, 198_502), ("p5-sports", "amazon-p5-sports", 35_598, 18_357, 296_337)],
)
def test_p5_real_counts(name, folder, users, items, events):
    if not (shared_data_dir() / folder / "user_sequence.txt").exists():
        pytest.skip(f"real P5 file not found under {shared_data_dir() / folder}")
    ds = load_dataset(name, download=False)
    assert ds.summary() == {"dataset": name, "interactions": events, "users": users, "items": items, "catalogue_items": items}
    first = ds.interactions.frame.filter(pl.col("user_id") == ds.interactions.frame["user_id"][0])
    assert first["timestamp"].to_list() == list(range(first.height))  # timestamps are positions
    untitled = (ds.catalogue.frame["title"] == ds.catalogue.frame["item_id"]).sum()
    if (shared_data_dir() / folder / "Amazon_Beauty.item").exists() and name == "p5-beauty":
        assert untitled == 7  # the dataset README: 7 empty titles; every other item has its text
        assert ds.catalogue.frame["category"].null_count() == 0
    else:
        assert untitled == items  # no item file: the title is the ASIN


def test_p5_reads_a_recbole_item_file(tmp_path):
    (tmp_path / "user_sequence.txt").write_text("U1 A1 A2 A3\nU2 A2 A3 A4\n")
    (tmp_path / "Amazon_Toys.item").write_text(
        "item_id:token\ttitle:token\tcategories:token_seq\tprice:float\tbrand:token\n"
        "A1\tLego &amp; Friends\t'Toys', 'Building'\t9.5\tLEGO\n"
        'A2\t"Tab\tand\nnewline title"\t\'Toys\', "Men\'s"\t\t\n'
        "A3\t\t'Toys'\t1.0\tAcme\n"
    )
    cat = load_p5(tmp_path).catalogue.frame
    rows = {r["item_id"]: r for r in cat.iter_rows(named=True)}
    assert rows["A1"]["title"] == "Lego & Friends" and rows["A1"]["brand"] == "LEGO"
    assert rows["A1"]["genres"] == ["Toys", "Building"] and rows["A1"]["category"] == "Toys > Building"
    assert rows["A2"]["title"] == "Tab\tand\nnewline title" and rows["A2"]["genres"] == ["Toys", "Men's"]
    assert rows["A2"]["brand"] is None
    assert rows["A3"]["title"] == "A3"  # empty title -> the ASIN
    assert rows["A4"]["title"] == "A4" and rows["A4"]["genres"] == []  # not in the item file
    (tmp_path / "Other.item").write_text("item_id:token\n")
    with pytest.raises(DataError, match="several RecBole item files"):
        load_p5(tmp_path)


def test_p5_user_without_items(tmp_path):
    p = tmp_path / "user_sequence.txt"
    p.write_text("U1 a b c\n\nU2\nU3 c d\n")
    with pytest.raises(DataError, match=r"user_sequence\.txt, line 3: user line has no items"):
        read_user_sequences(p)
    report = ReadReport()
    frame = read_user_sequences(p, skip_bad_rows=True, report=report)
    assert frame.height == 5 and report.examples[str(p)] == [3]
    assert load_p5(tmp_path, skip_bad_rows=True).summary()["users"] == 2


def test_p5_beauty_item_text_covers_the_catalogue():
    """Amazon_Beauty.item gives every P5 Beauty item its title, category path and (mostly) brand."""
    folder = shared_data_dir() / "amazon-p5-beauty"
    if not (folder / "Amazon_Beauty.item").exists():
        pytest.skip(f"Amazon_Beauty.item not found under {folder}")
    ds = load_dataset("p5-beauty", download=False)
    cat = ds.catalogue.frame
    n = cat.height
    titled = (cat["title"] != cat["item_id"]).sum() / n
    assert titled >= 0.99  # measured: 12,094 / 12,101 (7 empty titles in the file)
    assert cat["category"].is_not_null().sum() / n >= 0.99  # measured: all
    assert cat["brand"].is_not_null().sum() / n >= 0.8  # measured: 82.7 %
    assert ds.domain == "beauty product"
    texts = ds.catalogue.texts()
    assert sum("Category: Beauty" in t for t in texts) / n >= 0.99


def test_amazon_domain_from_the_top_category(tmp_path):
    from personarec.data.amazon import product_domain

    assert product_domain([["Office Products", "Office & School Supplies"], ["Office Products"], ["Beauty"]]) == "office product"
    assert product_domain([["Beauty", "Makeup"]]) == "beauty product"
    assert product_domain([[], []]) is None
    _jsonl(tmp_path / "All_Beauty_5.json", REVIEWS)
    assert load_amazon(tmp_path).domain is None  # no metadata: unknown
    _jsonl(tmp_path / "meta_All_Beauty.json", META)
    assert load_amazon(tmp_path).domain == "beauty product"


def test_p5_domain_follows_the_name(tmp_path):
    (tmp_path / "user_sequence.txt").write_text("U1 A1 A2 A3\n")
    assert load_p5(tmp_path, name="p5-toys").domain == "toy and game product"
    assert load_p5(tmp_path, name="p5-sports").domain == "sports and outdoors product"
    assert load_p5(tmp_path, name="p5").domain is None
