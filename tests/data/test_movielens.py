"""MovieLens loaders against the published counts, and the file formats on generated files."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from personarec.data.movielens import load_ml1m, load_ml_latest_small, read_ml1m_movies, read_ml1m_ratings
from personarec.data.registry import load_dataset, shared_data_dir


def test_ml100k_counts(ml100k):
    assert len(ml100k.interactions) == 100_000
    assert ml100k.interactions.n_users == 943
    assert ml100k.interactions.n_items == 1_682
    assert len(ml100k.catalogue) == 1_682
    toy = ml100k.catalogue.frame.filter(ml100k.catalogue.frame["item_id"] == "1").row(0, named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert ml100k.interactions.frame["seq"].to_list()[:3] == [0, 1, 2]  # original line order
    assert ml100k.domain == "movie"


def test_ml_latest_small_counts(ml_latest_small_dir):
    ds = load_ml_latest_small(ml_latest_small_dir)
    assert len(ds.interactions) == 100_836
    assert ds.interactions.n_users == 610
    assert ds.interactions.n_items == 9_724
    assert len(ds.catalogue) == 9_742
    assert ds.checksums["ratings.csv"].startswith("aa289ca8")
    assert ds.domain == "movie"
    cat = ds.catalogue.frame
    # quoted titles with commas survive; "(no genres listed)" becomes an empty genre list
    assert cat.filter(pl.col("title").str.contains(",")).height > 100
    assert cat.filter(pl.col("genres").list.len() == 0).height == 34
    assert cat.filter(pl.col("tags").list.len() > 0).height > 1_000


def test_ml1m_movies_real_file():
    path = shared_data_dir() / "ml-1m" / "movies.dat"
    if not path.exists():
        pytest.skip(f"real ML-1M movies.dat not found at {path}")
    movies = read_ml1m_movies(path)
    assert movies.height == 3_883
    assert movies["item_id"].n_unique() == 3_883
    row = movies.filter(pl.col("item_id") == "73").row(0, named=True)
    assert row["title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert row["genres"] == ["Drama", "Musical"]
    genres = set(movies["genres"].explode().to_list())
    assert len(genres) == 18


def _write_ml1m_ratings(path, rows):
    path.write_bytes("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows).encode("latin-1"))


def test_ml1m_ratings_format_generated(tmp_path):
    rows = [(1, 1193, 5, 978300760), (1, 661, 3, 978302109), (2, 1357, 5, 978298709)]
    _write_ml1m_ratings(tmp_path / "ratings.dat", rows)
    frame = read_ml1m_ratings(tmp_path / "ratings.dat")
    assert frame["user_id"].to_list() == ["1", "1", "2"]
    assert frame["item_id"].to_list() == ["1193", "661", "1357"]
    assert frame["rating"].to_list() == [5.0, 3.0, 5.0]
    assert frame["timestamp"].to_list() == [978300760, 978302109, 978298709]


def test_load_ml1m_and_registry(tmp_path):
    movies = shared_data_dir() / "ml-1m" / "movies.dat"
    d = tmp_path / "ml-1m"
    d.mkdir()
    if movies.exists():
        shutil.copy(movies, d / "movies.dat")
    else:
        (d / "movies.dat").write_bytes("1193::One Flew (1975)::Drama\n661::Peach (1996)::Animation\n".encode("latin-1"))
    _write_ml1m_ratings(d / "ratings.dat", [(1, 1193, 5, 10), (1, 661, 3, 11), (2, 1193, 4, 12)])
    ds = load_dataset("ml-1m", tmp_path, download=False)  # --data-dir may name the parent folder
    assert ds.name == "ml-1m"
    assert len(ds.interactions) == 3
    assert set(ds.checksums) == {"ratings.dat", "movies.dat"}
    assert load_ml1m(d).summary()["users"] == 2


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m"])
def test_csv_releases_registered(tmp_path, name):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n2,296,4.0,1147868828\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller\n306,"Three Colors: Red (Trois couleurs: Rouge) (1994)",Drama\n')
    ds = load_dataset(name, tmp_path, download=False)
    assert ds.name == name
    assert ds.summary()["interactions"] == 3
    assert ds.catalogue.frame.filter(pl.col("item_id") == "296")["genres"].to_list() == [["Comedy", "Crime", "Drama", "Thriller"]]
