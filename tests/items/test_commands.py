from __future__ import annotations

import pytest
from typer.testing import CliRunner

from personarec.data.splits import save_split
from personarec.errors import DataError
from personarec.items.commands import app
from personarec.items.space import ItemSpace

runner = CliRunner()


@pytest.fixture(scope="module")
def built_run(ml100k_space, ml100k_split, items_cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("items-cli-run")
    save_split(ml100k_split, run_dir / "split")
    result = runner.invoke(
        app, ["build", "--run-dir", str(run_dir), "--n-coarse", "6", "--set", f"items.cache_dir={items_cache}"]
    )
    assert result.exit_code == 0, result.output
    assert "0 computed" in result.output and "1,682" in result.output
    return run_dir


def test_build_writes_the_item_space(built_run):
    space = ItemSpace.load(built_run / "items")
    assert space.n_items == 1682 and space.n_coarse == 6


def test_show_one_fine_cluster_by_id_and_by_name(built_run):
    space = ItemSpace.load(built_run / "items")
    result = runner.invoke(app, ["show", "--run-dir", str(built_run), "--cluster", "3", "-n", "5"])
    assert result.exit_code == 0, result.output
    assert f"fine cluster 3: {space.fine_names[3]}" in result.output
    assert "parent topic" in result.output and "members" in result.output
    by_name = runner.invoke(app, ["show", "--run-dir", str(built_run), "--cluster", space.fine_names[3].upper()])
    assert "fine cluster 3:" in by_name.output


def test_show_lists_and_coarse_topics(built_run):
    result = runner.invoke(app, ["show", "--run-dir", str(built_run), "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "67 fine clusters" in result.output
    result = runner.invoke(app, ["show", "--run-dir", str(built_run), "--list", "--coarse"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "6 coarse topics" in result.output
    result = runner.invoke(app, ["show", "--run-dir", str(built_run), "--cluster", "0", "--coarse"])
    assert result.exit_code == 0 and "coarse topic 0:" in result.output


def test_show_rejects_unknown_clusters(built_run):
    result = runner.invoke(app, ["show", "--run-dir", str(built_run), "--cluster", "999"])
    assert isinstance(result.exception, DataError) and "0 to 66" in str(result.exception)
    result = runner.invoke(app, ["show", "--run-dir", str(built_run), "--cluster", "no such name"])
    assert isinstance(result.exception, DataError)
    result = runner.invoke(app, ["show", "--run-dir", str(built_run)])
    assert isinstance(result.exception, DataError)


def test_build_makes_the_split_when_missing(ml100k_dir, items_cache, tmp_path):
    result = runner.invoke(
        app,
        ["build", "--run-dir", str(tmp_path), "--set", "data.dataset=ml-100k", "--set", f"data.data_dir={ml100k_dir}",
         "--set", f"items.cache_dir={items_cache}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "split" / "protocol.json").exists() and (tmp_path / "items" / "items.parquet").exists()
