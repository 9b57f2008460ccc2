"""The generic CSV / Parquet loader driven by the [data.tabular] column mapping."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from personarec.config import load_config
from personarec.data.registry import load_dataset
from personarec.data.tabular import load_tabular
from personarec.errors import ConfigError, DataError


def test_csv_events_and_catalogue_via_config(tmp_path):
    (tmp_path / "events.csv").write_text("customer;sku;when;stars\nc1;s1;1700000000;4\nc1;s2;1700000100;5\nc2;s1;1700000200;3\n")
    (tmp_path / "products.csv").write_text("sku;name;dept;labels;blurb\ns1;Blue Mug;Kitchen;home|mugs;A mug.\ns2;Red Pen;Office;;A pen.\n")
    cfg = load_config(None, sets=[
        "data.dataset=tabular", f"data.data_dir={tmp_path}",
        'data.tabular={"name": "shop", "paths": "events.csv", "separator": ";", "user_col": "customer", '
        '"item_col": "sku", "timestamp_col": "when", "rating_col": "stars", "catalogue": "products.csv", '
        '"catalogue_item_col": "sku", "title_col": "name", '
        '"text_cols": {"category": "dept", "genres": "labels", "description": "blurb"}}',
    ])  # fmt: skip
    ds = load_dataset(cfg.data.dataset, cfg.data.data_dir, options=cfg.data.tabular)
    assert ds.name == "shop"
    assert ds.summary()["interactions"] == 3
    assert ds.interactions.frame["rating"].to_list() == [4.0, 5.0, 3.0]
    mug = ds.catalogue.frame.filter(pl.col("item_id") == "s1").row(0, named=True)
    assert (mug["title"], mug["category"], mug["genres"], mug["description"]) == ("Blue Mug", "Kitchen", ["home", "mugs"], "A mug.")
    assert ds.catalogue.frame.filter(pl.col("item_id") == "s2")["genres"].to_list() == [[]]
    assert set(ds.checksums) == {"events.csv", "products.csv"}


def test_parquet_with_datetime_and_glob(tmp_path):
    for k in range(2):
        pl.DataFrame({
            "uid": [1 + k, 2 + k], "iid": [10, 11],
            "ts": [datetime(2024, 1, 1 + k, 12), datetime(2024, 1, 2 + k)],
        }).write_parquet(tmp_path / f"part-{k}.parquet")  # fmt: skip
    ds = load_tabular(tmp_path, options={"paths": ["part-*.parquet"], "user_col": "uid", "item_col": "iid", "timestamp_col": "ts"})
    frame = ds.interactions.frame
    assert frame.height == 4
    assert frame["user_id"].to_list() == ["1", "2", "2", "3"]  # ints become string ids
    assert frame["timestamp"][0] == int(datetime(2024, 1, 1, 12).timestamp() - datetime(1970, 1, 1).timestamp())
    assert frame["seq"].to_list() == [0, 1, 2, 3]
    assert ds.catalogue.frame["title"].to_list() == ["10", "11"]


def test_text_timestamps_with_format_and_bad_one(tmp_path):
    (tmp_path / "e.csv").write_text("u,i,t\na,x,2024-01-01 10:00:00\nb,y,2024-01-02 11:00:00\nc,z,01/03/2024\n")
    opts = {"paths": "e.csv", "user_col": "u", "item_col": "i", "timestamp_col": "t", "timestamp_format": "%Y-%m-%d %H:%M:%S"}
    with pytest.raises(DataError, match=r"e\.csv, line 4: timestamp '01/03/2024' is not format"):
        load_tabular(tmp_path, options=opts)
    (tmp_path / "e.csv").write_text("u,i,t\na,x,2024-01-01 10:00:00\n")
    assert load_tabular(tmp_path, options=opts).interactions.frame["timestamp"].to_list() == [1704103200]


def test_no_timestamp_column_uses_row_order(tmp_path):
    (tmp_path / "e.csv").write_text("u,i\na,x\na,y\n")
    ds = load_tabular(tmp_path, options={"paths": "e.csv", "user_col": "u", "item_col": "i", "timestamp_col": None})
    assert ds.interactions.frame["timestamp"].to_list() == [0, 1]
    assert ds.domain is None  # unknown unless the config says


def test_domain_option(tmp_path):
    (tmp_path / "e.csv").write_text("u,i,t\na,x,1\na,y,2\na,z,3\n")
    ds = load_tabular(tmp_path, options={"paths": "e.csv", "user_col": "u", "item_col": "i", "timestamp_col": "t",
                                         "domain": "garden product"})  # fmt: skip
    assert ds.domain == "garden product"


def test_missing_columns_list_what_was_found(tmp_path):
    (tmp_path / "e.csv").write_text("user,item,time\na,x,1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user_id', 'item_id', 'timestamp'\]; columns found: \['user', 'item', 'time'\]"):
        load_tabular(tmp_path, options={"paths": "e.csv"})
    pl.DataFrame({"user": ["a"], "item": ["x"]}).write_parquet(tmp_path / "e.parquet")
    with pytest.raises(DataError, match=r"e\.parquet: missing column\(s\) \['ts'\]; columns found: \['user', 'item'\]"):
        load_tabular(tmp_path, options={"paths": "e.parquet", "user_col": "user", "item_col": "item", "timestamp_col": "ts"})


def test_bad_csv_row_and_empty_parquet_id(tmp_path):
    (tmp_path / "e.csv").write_text("u,i,t\na,x,1\n,y,2\n")
    with pytest.raises(DataError, match=r"e\.csv, line 3: empty or missing field\(s\) \['u'\]"):
        load_tabular(tmp_path, options={"paths": "e.csv", "user_col": "u", "item_col": "i", "timestamp_col": "t"})
    pl.DataFrame({"u": ["a", None], "i": ["x", "y"], "t": [1, 2]}).write_parquet(tmp_path / "e.parquet")
    opts = {"paths": "e.parquet", "user_col": "u", "item_col": "i", "timestamp_col": "t"}
    with pytest.raises(DataError, match=r"e\.parquet: row 2: empty user or item id"):
        load_tabular(tmp_path, options=opts)
    assert len(load_tabular(tmp_path, options=opts, skip_bad_rows=True).interactions) == 1


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs a \\[data.tabular\\] section"):
        load_tabular(tmp_path, options={})
    with pytest.raises(ConfigError, match="data.tabular"):
        load_tabular(tmp_path, options={"paths": "x.csv", "user_column": "oops"})
    with pytest.raises(DataError, match="no file matches"):
        load_tabular(tmp_path, options={"paths": "nothing-*.csv"})


@pytest.mark.parametrize("name", ["*", "^user.*$"])
def test_a_column_named_like_a_polars_pattern_is_refused(name):
    """polars expands `*` and `^...$` instead of selecting them: such a mapping is a clear config error
    (found by the loader fuzzing: a user column named '0' and an item column named '*')."""
    from personarec.data.tabular import TabularConfig

    with pytest.raises(ValueError, match="polars pattern"):
        TabularConfig(events="e.csv", item_col=name)
