"""Bad input: every malformed row names its file and line, or is skipped and counted."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from personarec.data.amazon import read_reviews_json
from personarec.data.movielens import load_ml_latest_small, read_ml1m_ratings
from personarec.data.parsing import ReadReport, read_delimited
from personarec.data.preprocess import PreprocessConfig
from personarec.data.records import Catalogue, Dataset, Interactions
from personarec.data.splits import make_split
from personarec.errors import DataError, EmptyDatasetError

HEADER = "userId,movieId,rating,timestamp\n"
GOOD = "1,10,4.0,100\n1,11,3.0,101\n"
MOVIES = "movieId,title,genres\n10,A (1990),Drama\n11,B (1991),Comedy\n"


def _release(tmp_path: Path, ratings_body: str) -> Path:
    (tmp_path / "ratings.csv").write_text(HEADER + ratings_body)
    (tmp_path / "movies.csv").write_text(MOVIES)
    return tmp_path


@pytest.mark.parametrize(
    ("body", "line", "phrase"),
    [
        (GOOD + "2,12,5.0,102,extra\n", 4, "wrong number of fields"),  # too many fields
        (GOOD + "2,12,5.0\n", 4, "empty or missing field(s) ['timestamp']"),  # too few fields
        (GOOD + "2,12,5.0,yesterday\n", 4, "timestamp 'yesterday' is not Int64"),  # non-numeric timestamp
        (GOOD + ",12,5.0,102\n", 4, "empty or missing field(s) ['userId']"),  # empty user id
        ("1,10,4.0,100\n\n2,12,x,102\n", 4, "rating 'x' is not Float32"),  # a blank line still counts as a line
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, body, line, phrase):
    d = _release(tmp_path, body)
    with pytest.raises(DataError) as err:
        load_ml_latest_small(d)
    msg = str(err.value)
    assert f"{d / 'ratings.csv'}, line {line}:" in msg
    assert phrase in msg
    assert err.value.line == line


def test_skip_bad_rows_counts_each_case(tmp_path):
    body = GOOD + "2,12,5.0,102,extra\n2,13,5.0\n2,14,5.0,soon\n,15,1.0,104\n3,16,2.0,105\n\n"
    d = _release(tmp_path, body)
    report = ReadReport()
    ds = load_ml_latest_small(d, skip_bad_rows=True, report=report)
    assert len(ds.interactions) == 3  # two good lines + the last one
    key = str(d / "ratings.csv")
    assert report.skipped == {key: 4}
    assert report.examples[key] == [4, 5, 6, 7]
    assert ds.interactions.frame["item_id"].to_list() == ["10", "11", "16"]


def test_missing_column_lists_columns_found(tmp_path):
    (tmp_path / "ratings.csv").write_text("user,movieId,rating,timestamp\n1,10,4.0,100\n")
    (tmp_path / "movies.csv").write_text(MOVIES)
    with pytest.raises(DataError, match=r"missing column\(s\) \['userId'\]; columns found: \['user', 'movieId', 'rating', 'timestamp'\]"):
        load_ml_latest_small(tmp_path)


def test_missing_file_lists_files_found(tmp_path):
    (tmp_path / "ratings.csv").write_text(HEADER + GOOD)
    with pytest.raises(DataError, match=r"missing file.*movies\.csv.*files found.*ratings\.csv"):
        load_ml_latest_small(tmp_path)


def test_double_colon_format_names_line(tmp_path):
    p = tmp_path / "ratings.dat"
    p.write_bytes(b"1::10::4::100\n1::11::3::abc\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2:"):
        read_ml1m_ratings(p)
    p.write_bytes(b"1::10::4::100\n1::11::3::101::9\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: wrong number of fields"):
        read_ml1m_ratings(p)


@pytest.mark.parametrize("compress", [False, True])
def test_bad_json_line_names_file_and_line(tmp_path, compress):
    lines = [
        '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}',
        '{"reviewerID": "A1", "asin": "B2", "overall": 4.0, "unixReviewTime": 101',  # truncated
        '{"reviewerID": "A2", "asin": "B1", "overall": 3.0, "unixReviewTime": 102}',
    ]
    data = ("\n".join(lines) + "\n").encode()
    p = tmp_path / ("r.json.gz" if compress else "r.json")
    p.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=rf"{p.name}, line 2: bad JSON line"):
        read_reviews_json(p)
    report = ReadReport()
    frame = read_reviews_json(p, skip_bad_rows=True, report=report)
    assert frame["item_id"].to_list() == ["B1", "B1"]
    assert report.skipped == {str(p): 1} and report.examples[str(p)] == [2]


def test_json_record_missing_field_and_bad_timestamp(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(
        '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}\n'
        '{"asin": "B2", "overall": 4.0, "unixReviewTime": 101}\n'
        '{"reviewerID": "A3", "asin": "B3", "overall": 4.0, "unixReviewTime": "tuesday"}\n'
    )
    with pytest.raises(DataError, match=r"r\.json, line 2: bad record \(missing or empty field\(s\) \['reviewerID'\]\)"):
        read_reviews_json(p)
    report = ReadReport()
    frame = read_reviews_json(p, skip_bad_rows=True, report=report)
    assert frame.height == 1 and report.examples[str(p)] == [2, 3]


def _tiny_dataset() -> Dataset:
    frame = pl.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2", "u2"], "item_id": ["a", "b", "a", "b", "c"],
        "timestamp": [1, 2, 3, 4, 5], "rating": [1.0, 2.0, 2.0, 1.0, 2.0],
    })  # fmt: skip
    return Dataset("tiny", Interactions.from_frame(frame), Catalogue.from_frame(frame.select("item_id").unique()))


@pytest.mark.parametrize(
    ("config", "filter_name"),
    [
        (PreprocessConfig(min_rating=4.5, min_user_interactions=0), "min_rating=4.5"),
        (PreprocessConfig(min_user_interactions=10), "k-core(user>=10, item>=0)"),
        (PreprocessConfig(min_user_interactions=0, min_item_interactions=3), "k-core(user>=0, item>=3)"),
    ],
)
def test_empty_after_filter_names_the_filter(config, filter_name):
    with pytest.raises(EmptyDatasetError) as err:
        make_split(_tiny_dataset(), config)
    assert f"after filter '{filter_name}'" in str(err.value)


def test_read_delimited_quoted_and_typed(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text('id,name,score\n1,"a, b",2.5\n2,c,\n')
    frame = read_delimited(p, {"id": pl.Utf8, "name": pl.Utf8, "score": pl.Float32}, required=["id"])
    assert frame["name"].to_list() == ["a, b", "c"]
    assert frame["score"].to_list() == [2.5, None]  # empty optional field is fine


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PERSONAREC_SHARED_DATA="/nonexistent", COLUMNS="1000")
    return subprocess.run([sys.executable, "-m", "personarec.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_prints_one_clean_line(tmp_path):
    (tmp_path / "data").mkdir()
    d = _release(tmp_path / "data", GOOD + "2,12,5.0,tomorrow\n")
    res = _cli("data", "split", "--dataset", "ml-latest-small", "--data-dir", str(d), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    last = res.stderr.strip().splitlines()[-1]  # after the progress line: exactly one error line
    assert last.startswith("error: ")
    assert f"{d / 'ratings.csv'}, line 4: timestamp 'tomorrow' is not Int64" in last


def test_cli_skip_bad_rows_reports_count(tmp_path):
    (tmp_path / "data").mkdir()
    body = "".join(f"{u},{10 + i},4.0,{100 + i}\n" for u in (1, 2) for i in range(6)) + "3,99,4.0,oops\n"
    d = _release(tmp_path / "data", body)
    res = _cli("data", "split", "--dataset", "ml-latest-small", "--data-dir", str(d), "--skip-bad-rows", "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    flat = " ".join(res.stderr.split())
    assert "skipped 1 malformed row(s)" in flat
    assert (tmp_path / "run" / "split" / "protocol.json").exists()


def test_empty_files(tmp_path):
    (tmp_path / "ratings.csv").write_text("")
    (tmp_path / "movies.csv").write_text(MOVIES)
    with pytest.raises(DataError, match=r"ratings\.csv: file is empty"):
        load_ml_latest_small(tmp_path)
    (tmp_path / "ratings.csv").write_text(HEADER)
    ds = load_ml_latest_small(tmp_path)  # a header alone loads as zero events ...
    with pytest.raises(EmptyDatasetError, match="after filter 'input'"):  # ... and the split says so
        make_split(ds)
    p = tmp_path / "ratings.dat"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        read_ml1m_ratings(p)
