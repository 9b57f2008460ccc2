"""Amazon 2014 Office Products (LRD's files): format, tie-break, text split, and the official split."""

from __future__ import annotations

import polars as pl
import pytest

from personarec.data.office import load_office, split_item_text
from personarec.data.parsing import ReadReport
from personarec.data.registry import load_dataset, shared_data_dir
from personarec.data.splits import make_split
from personarec.errors import DataError

NEG = "[7, 8, 9]"


def _write(d, train, dev, test, index, texts, meta=None):
    (d / "train.csv").write_text("user_id\titem_id\ttime\n" + "".join(f"{u}\t{i}\t{t}\n" for u, i, t in train))
    for name, rows in (("dev.csv", dev), ("test.csv", test)):
        (d / name).write_text("user_id\titem_id\ttime\tneg_items\n" + "".join(f"{u}\t{i}\t{t}\t{NEG}\n" for u, i, t in rows))
    (d / "Office.item2index").write_text("".join(f"{a}\t{i}\n" for a, i in index))
    (d / "Office.text").write_text("id\ttext\n" + "".join(f"{a}\t{t}\n" for a, t in texts))
    if meta is not None:
        (d / "item_meta.csv").write_text(
            "item_id\ti_category\ti_brand\tr_complement\tr_substitute\n" + "".join(f"{i}\t1\t{b}\t[]\t[]\n" for i, b in meta)
        )


INDEX = [("B01", 1), ("B02", 2), ("B03", 3), ("B04", 4), ("B05", 5)]
TEXTS = [
    ("B01", "Acme Long Reach Stapler Desk Staplers Acme"),
    ("B02", "Acme Blue Pen Ballpoint Pens Acme"),
    ("B03", "Zeta Red Pen Ballpoint Pens Zeta"),
    ("B04", "Plain Compact Desk Staplers"),
    ("B05", "Zeta Gel Pen, Black Rollerball Refills Zeta"),
]


def test_office_files_time_order_and_same_day_tie_break(tmp_path):
    # user 1 reviews four items on day 100: file order (train, then dev, then test) decides
    _write(tmp_path,
           train=[(1, 1, 50), (1, 5, 100), (1, 2, 100), (2, 1, 10), (2, 2, 20), (2, 3, 30)],
           dev=[(1, 3, 100), (2, 4, 40)], test=[(1, 4, 100), (2, 5, 50)],
           index=INDEX, texts=TEXTS, meta=[(1, 1), (2, 1), (3, 2), (4, 0), (5, 2)])  # fmt: skip
    ds = load_office(tmp_path)
    assert ds.domain == "office product" and ds.name == "amazon-office-2014"
    ev = ds.interactions.frame
    assert ev["timestamp"].is_sorted() and len(ev) == 10
    sp = make_split(ds, split_config=None)
    test = {(sp.user_ids[u], sp.item_ids[i]) for u, i in sp.test.select("user_idx", "item_idx").iter_rows()}
    valid = {(sp.user_ids[u], sp.item_ids[i]) for u, i in sp.valid.select("user_idx", "item_idx").iter_rows()}
    assert test == {("1", "B04"), ("2", "B05")} and valid == {("1", "B03"), ("2", "B04")}
    rows = {r["item_id"]: r for r in ds.catalogue.frame.iter_rows(named=True)}
    assert (rows["B01"]["title"], rows["B01"]["category"], rows["B01"]["brand"]) == ("Acme Long Reach Stapler", "Desk Staplers", "Acme")
    assert (rows["B05"]["title"], rows["B05"]["brand"]) == ("Zeta Gel Pen, Black Rollerball Refills", "Zeta")  # category seen once
    assert rows["B04"]["brand"] is None and rows["B04"]["category"] == "Desk Staplers"
    assert set(ds.checksums) == {"train.csv", "dev.csv", "test.csv", "Office.item2index", "Office.text", "item_meta.csv"}


def test_office_unknown_item_index_names_file_and_line(tmp_path):
    _write(tmp_path, train=[(1, 1, 5), (1, 9, 6)], dev=[(1, 2, 7)], test=[(1, 3, 8)], index=INDEX, texts=TEXTS)
    with pytest.raises(DataError, match=r"train\.csv, line 3: item_id '9' is not in Office\.item2index"):
        load_office(tmp_path)
    report = ReadReport()
    ds = load_office(tmp_path, skip_bad_rows=True, report=report)
    assert len(ds.interactions) == 3 and report.total == 1
    rows = {r["item_id"]: r for r in ds.catalogue.frame.iter_rows(named=True)}
    assert rows["B01"]["title"] == "Acme Long Reach Stapler Desk Staplers Acme"  # no item_meta.csv: the text is the title


def test_office_missing_file(tmp_path):
    (tmp_path / "Office.item2index").write_text("B01\t1\n")
    with pytest.raises(DataError, match=r"missing file\(s\).*train\.csv"):
        load_office(tmp_path)


def test_split_item_text_keeps_every_word():
    texts = [t for _, t in TEXTS]
    out = split_item_text([a for a, _ in TEXTS], texts, [1, 1, 2, 0, 2])
    for row, text in zip(out.iter_rows(named=True), texts, strict=True):
        joined = " ".join(x for x in (row["title"], row["category"], row["brand"]) if x)
        assert joined == text


@pytest.fixture(scope="module")
def office():
    if not (shared_data_dir() / "amazon-office-2014" / "Office.item2index").exists():
        pytest.skip(f"real Office data not found under {shared_data_dir()}")
    return load_dataset("amazon-office-2014", download=False)


def _official(name: str) -> dict[str, str]:
    d = shared_data_dir() / "amazon-office-2014"
    index = pl.read_csv(d / "Office.item2index", separator="\t", has_header=False, new_columns=["asin", "ix"],
                        schema_overrides={"asin": pl.Utf8, "ix": pl.Utf8})  # fmt: skip
    asin = dict(zip(index["ix"], index["asin"], strict=True))
    rows = pl.read_csv(d / name, separator="\t", columns=["user_id", "item_id"], schema_overrides={"user_id": pl.Utf8, "item_id": pl.Utf8})
    return {u: asin[i] for u, i in rows.iter_rows()}


def test_office_real_split_reproduces_the_official_targets(office):
    assert office.summary() == {"dataset": "amazon-office-2014", "interactions": 53_258, "users": 4_905,
                                "items": 2_420, "catalogue_items": 2_420}  # fmt: skip
    sp = make_split(office)  # the default config: dedup last, 5-core, leave-one-out
    assert sp.protocol.filtering[0].endswith("no repeated events")
    assert (sp.protocol.n_train, sp.protocol.n_valid, sp.protocol.n_test) == (43_448, 4_905, 4_905)
    ours = {
        stage: {sp.user_ids[u]: sp.item_ids[i] for u, i in frame.select("user_idx", "item_idx").iter_rows()}
        for stage, frame in (("valid", sp.valid), ("test", sp.test))
    }
    mismatches = {
        stage: sum(ours[stage].get(u) != item for u, item in _official(f).items())
        for stage, f in (("valid", "dev.csv"), ("test", "test.csv"))
    }
    assert mismatches == {"valid": 0, "test": 0}
    assert sp.domain == "office product"


def test_office_real_text_is_split(office):
    cat = office.catalogue.frame
    n = cat.height
    assert cat["title"].null_count() == 0 and (cat["title"] != cat["item_id"]).all()
    assert cat["category"].is_not_null().sum() / n > 0.9  # a category seen once stays in the title
    assert cat["brand"].is_not_null().sum() / n > 0.75  # 481 items have no brand (i_brand 0)
    row = cat.filter(pl.col("item_id") == "B00000JBLU").row(0, named=True)
    assert row["brand"] == "Texas Instruments" and row["title"].startswith("Texas Instruments TI-1795")


def test_office_index_listed_twice(tmp_path):
    _write(tmp_path, train=[(1, 1, 5)], dev=[(1, 2, 7)], test=[(1, 3, 8)], index=[*INDEX, ("B09", 2)], texts=TEXTS)
    with pytest.raises(DataError, match=r"Office\.item2index, line 6: item_index '2' is listed twice"):
        load_office(tmp_path)
