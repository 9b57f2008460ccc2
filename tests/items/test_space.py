from __future__ import annotations

import json

import numpy as np
import pytest

from personarec.config import RunConfig
from personarec.errors import DataError
from personarec.items.build import run_items
from personarec.items.space import ItemSpace
from personarec.run import RunDir


def test_save_load_round_trip(ml100k_space, tmp_path):
    ml100k_space.save(tmp_path / "items")
    loaded = ItemSpace.load(tmp_path / "items")
    s = ml100k_space
    assert loaded.item_ids.tolist() == s.item_ids.tolist()
    np.testing.assert_array_equal(loaded.embeddings, s.embeddings)
    for name in ("fine", "coarse", "semantic_ids", "fine_parent", "fine_centroids", "coarse_centroids", "rq_codebooks"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(s, name), err_msg=name)
    assert loaded.fine_names == s.fine_names and loaded.coarse_names == s.coarse_names
    assert loaded.fine_keywords == s.fine_keywords and loaded.coarse_keywords == s.coarse_keywords
    assert loaded.meta == json.loads(json.dumps(s.meta, default=str))
    assert loaded.cluster_by_name()[s.fine_names[5]] == 5
    np.testing.assert_array_equal(loaded.assign_fine(s.fine_centroids), np.arange(s.n_fine))


def test_load_without_a_build_is_a_user_error(tmp_path):
    with pytest.raises(DataError, match="items build"):
        ItemSpace.load(tmp_path)


def test_run_items_writes_the_run_dir_and_manifest(ml100k_split, items_cache, tmp_path):
    cfg = RunConfig.model_validate(
        {"run_dir": str(tmp_path / "run"), "seed": 11, "items": {"cache_dir": str(items_cache), "n_fine": 30}}
    )
    run = RunDir(cfg.run_dir, cfg)
    space = run_items(cfg, run, ml100k_split)
    assert space.n_fine == 30 and space.meta["seed"] == 11
    assert space.meta["embedding"]["n_computed"] == 0  # the session fixture already embedded ML-100k
    loaded = ItemSpace.load(tmp_path / "run" / "items")
    np.testing.assert_array_equal(loaded.semantic_ids, space.semantic_ids)
    stage = run.manifest()["stages"]["items"]
    assert stage["n_fine"] == 30 and stage["semantic_id_collisions"] == 0
