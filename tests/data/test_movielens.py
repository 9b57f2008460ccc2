from personarec.data.movielens import load_ml_latest_small


def test_ml100k_counts(ml100k):
    assert len(ml100k.interactions) == 100_000
    assert ml100k.interactions.n_users == 943
    assert ml100k.interactions.n_items == 1_682
    assert len(ml100k.catalogue) == 1_682
    toy = ml100k.catalogue.frame.filter(ml100k.catalogue.frame["item_id"] == "1").row(0, named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]


def test_ml_latest_small_counts(ml_latest_small_dir):
    ds = load_ml_latest_small(ml_latest_small_dir)
    assert len(ds.interactions) == 100_836
    assert ds.interactions.n_users == 610
    assert len(ds.catalogue) == 9_742
    assert ds.checksums["ratings.csv"].startswith("aa289ca8")
