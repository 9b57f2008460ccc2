"""``personarec data inspect``: column summary and a [data.tabular] mapping suggested from the names."""

from __future__ import annotations

import gzip
import json
import tomllib

import polars as pl
import pytest
from typer.testing import CliRunner

from personarec.cli import app
from personarec.data.inspection import describe_columns, read_head, render_toml, suggest_mapping
from personarec.data.tabular import load_tabular
from personarec.errors import DataError

AMAZON_CSV = (
    "reviewerID,asin,overall,unixReviewTime,title,categories,brand,description\n"
    'A1,B01,5.0,1472688000,Soap,Beauty|Bath,Acme,"Plain, white soap"\n'
    "A1,B02,4.0,1472688100,Rose Oud,Beauty|Fragrance,,\n"
    "A2,B01,3.0,1472688200,Soap,Beauty|Bath,Acme,\n"
)


def test_amazon_style_names_map_and_the_snippet_loads(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(AMAZON_CSV)
    head = read_head(path)
    s = suggest_mapping(head.frame)
    assert s.roles == {"user": "reviewerID", "item": "asin", "timestamp": "unixReviewTime", "rating": "overall",
                       "title": "title", "category": "categories", "brand": "brand", "description": "description"}  # fmt: skip
    assert s.unmapped == []
    info = {c.name: c for c in describe_columns(head.frame)}
    assert info["brand"].null_share == pytest.approx(1 / 3) and info["asin"].examples == ["B01", "B02"]
    snippet = render_toml(head, s)
    cfg = tomllib.loads(snippet)
    tab = cfg["data"]["tabular"]
    assert (tab["user_col"], tab["item_col"], tab["timestamp_col"], tab["rating_col"]) == (
        "reviewerID", "asin", "unixReviewTime", "overall")  # fmt: skip
    assert tab["text_cols"] == {"category": "categories", "brand": "brand", "description": "description"}
    ds = load_tabular(cfg["data"]["data_dir"], options=tab)  # the suggestion is a working config
    assert ds.summary()["interactions"] == 3
    assert ds.catalogue.frame.filter(pl.col("item_id") == "B01")["brand"].to_list() == ["Acme"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("userId,movieId,rating,timestamp", {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}),
        ("user_id,parent_asin,asin,rating,timestamp",
         {"user": "user_id", "item": "parent_asin", "rating": "rating", "timestamp": "timestamp"}),
        ("customer_id,sku,stars,time", {"user": "customer_id", "item": "sku", "rating": "stars", "timestamp": "time"}),
    ],
)  # fmt: skip
def test_common_public_names(tmp_path, header, expected):
    n = header.count(",") + 1
    (tmp_path / "e.csv").write_text(header + "\n" + ",".join(["1"] * (n - 2) + ["4", "1700000000"]) + "\n")
    roles = suggest_mapping(read_head(tmp_path / "e.csv").frame).roles
    assert {k: v for k, v in roles.items() if k in expected} == expected


def test_unknown_columns_are_reported(tmp_path):
    (tmp_path / "x.tsv").write_text("foo\tbar\tbaz\nq\tw\te\nr\tt\ty\n")
    head = read_head(tmp_path / "x.tsv")
    assert head.separator == "\t"
    s = suggest_mapping(head.frame)
    assert s.roles == {}
    assert s.unmapped == ["user", "item", "timestamp", "rating", "title"]
    snippet = render_toml(head, s)
    assert "# could not map: user, item, timestamp, rating, title" in snippet
    assert "# user_col = ?" in snippet and 'separator = "\\t"' in snippet
    tomllib.loads(snippet)  # still valid TOML


def test_headerless_amazon_ratings_csv(tmp_path):
    (tmp_path / "Beauty.csv").write_text(
        "0205616461,A39HTATAQ9V7YF,5.0,1369699200\n0558925278,A3JM6GV9MNOF9X,3.0,1355443200\n"
        "0558925279,A3JM6GV9MNOF9Y,4.0,1355443300\n"
    )
    head = read_head(tmp_path / "Beauty.csv")
    assert not head.has_header
    s = suggest_mapping(head.frame)
    cols = head.frame.columns  # polars' names for header-less columns
    assert s.roles == {"timestamp": cols[3], "rating": cols[2]}  # by their values; ids cannot be told
    assert "user" in s.unmapped and "item" in s.unmapped
    assert "no header row" in render_toml(head, s)


def test_json_lines_gz_and_parquet(tmp_path):
    rows = [{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1472688000, "reviewText": "ok"}]
    with gzip.open(tmp_path / "Beauty_5.json.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows * 3))
    head = read_head(tmp_path / "Beauty_5.json.gz")
    assert head.format == "jsonl" and head.frame.height == 3
    assert suggest_mapping(head.frame).roles["item"] == "asin"
    assert 'dataset = "amazon"' in render_toml(head, suggest_mapping(head.frame))
    meta = tmp_path / "meta.json"  # the 2014 metadata: Python literals
    meta.write_text("{'asin': 'B1', 'title': 'Gel', 'categories': [['Beauty', 'Bath']]}\n")
    s = suggest_mapping(read_head(meta).frame)
    assert s.roles["category"] == "categories" and any("nested lists" in n for n in s.notes)
    pl.DataFrame({"user": ["u"], "item_id": ["i"], "ts": [1700000000]}).write_parquet(tmp_path / "e.parquet")
    assert suggest_mapping(read_head(tmp_path / "e.parquet").frame).roles == {"user": "user", "item": "item_id", "timestamp": "ts"}


def test_text_dates_get_a_format(tmp_path):
    (tmp_path / "e.csv").write_text("user_id,item_id,date\na,x,2024-01-05 10:00:00\nb,y,2024-02-01 11:30:00\n")
    s = suggest_mapping(read_head(tmp_path / "e.csv").frame)
    assert s.roles["timestamp"] == "date" and s.timestamp_format == "%Y-%m-%d %H:%M:%S"


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_head(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        read_head(tmp_path / "empty.csv")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: not a JSON object per line"):
        read_head(tmp_path / "bad.jsonl")


def test_cli_prints_columns_and_the_toml(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(AMAZON_CSV)
    result = CliRunner().invoke(app, ["data", "inspect", str(path), "--rows", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert 'user_col = "reviewerID"' in result.stdout and 'item_col = "asin"' in result.stdout
    assert "unixReviewTime" in result.output and "first 2 rows" in result.output
