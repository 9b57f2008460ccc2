"""text_sasrec: item vectors from item text, so that items without training events (cold items)
are scored from their text and can be recommended; save/load and serving score as trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.recommend.base import build_recommender, load_recommender
from personarec.recommend.pipeline import RankingPipeline
from personarec.recommend.sasrec import SASRec, left_pad
from personarec.recommend.text_sasrec import prefix_rows
from tests.recommend.conftest import make_split

N_FINE, PER, DIM = 8, 12, 16
TINY = dict(max_len=12, hidden=32, n_blocks=1, n_heads=1, dropout=0.0, lr=1e-2, batch_size=32, max_epochs=15,
            patience=15, seed=0, num_threads=1, show_progress=False)  # fmt: skip


def cold_world(n_users: int = 160, seed: int = 0):
    """Users stay in one home cluster (whose items share a text direction). One item per cluster
    never occurs in training: it is the test target of the users of its cluster."""
    rng = np.random.default_rng(seed)
    n_items = N_FINE * PER
    fine = np.repeat(np.arange(N_FINE), PER).astype(np.int32)
    centres = rng.normal(size=(N_FINE, DIM))
    emb = centres[fine] + 0.3 * rng.normal(size=(n_items, DIM))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    cold = np.arange(N_FINE) * PER  # the first item of every cluster
    train, valid, test = [], [], []
    for u in range(n_users):
        home = u % N_FINE
        pool = np.setdiff1d(np.flatnonzero(fine == home), cold)
        seq = rng.choice(pool, size=9, replace=False).tolist()
        train.append(seq[:8])
        valid.append([seq[8]])
        test.append([int(cold[home])])
    split = make_split(train, valid, test, n_items)
    space = ItemSpace(
        item_ids=split.item_ids, embeddings=emb, fine=fine, coarse=(fine // 2).astype(np.int32),
        semantic_ids=np.stack([fine, np.arange(n_items)], axis=1).astype(np.int32),
        fine_names=[f"cluster {c}" for c in range(N_FINE)], coarse_names=[f"group {c}" for c in range(N_FINE // 2)],
        fine_parent=(np.arange(N_FINE) // 2).astype(np.int32),
    )  # fmt: skip
    return split, space, cold


@pytest.fixture(scope="module")
def world():
    return cold_world()


def cold_target_ranks(model, split) -> np.ndarray:
    """0-based rank of each user's (cold) test target in the list served for the test history."""
    users = split.eval_users("test")
    lists = RankingPipeline(model).top_items(users, split.history("test"), split.n_items)
    targets = split.targets("test")
    return np.array([int(np.flatnonzero(lists[r] == targets[int(u)][0])[0]) for r, u in enumerate(users)])


@pytest.fixture(scope="module")
def fitted(world):
    split, space, _ = world
    return {
        "sasrec": build_recommender("sasrec", TINY).fit(split),
        "text_sasrec": build_recommender("text_sasrec", TINY).fit(split, items=space),
        "text_only": build_recommender("text_sasrec", dict(TINY, item_ids="none")).fit(split, items=space),
    }


def test_cold_items_are_recommended_from_their_text(world, fitted):
    split, _, cold = world
    assert not np.isin(cold, split.history("train").items).any()  # cold for real
    ranks = {name: cold_target_ranks(model, split) for name, model in fitted.items()}
    # ID-only SASRec never saw the cold items: it ranks them among the other clusters' items
    # (measured: median rank 33.5 of 88, cold recall@10 0.11); the text models near the top (2.0, 1.0)
    assert np.median(ranks["sasrec"]) > 2 * PER and (ranks["sasrec"] < 10).mean() < 0.3
    for name in ("text_sasrec", "text_only"):
        assert np.median(ranks[name]) < PER / 2, (name, np.median(ranks[name]))  # the head of its cluster
        assert (ranks[name] < 10).mean() > 0.8, name  # cold recall@10


def test_warm_ids_leave_cold_items_to_their_text(fitted, world):
    net = fitted["text_sasrec"].net
    _, _, cold = world
    assert net.id_mask[cold].sum() == 0 and net.id_mask.sum() == net.id_mask.shape[0] - len(cold)


def test_saved_model_scores_as_trained(world, fitted, tmp_path):
    split, _, _ = world
    model = fitted["text_sasrec"]
    loaded = load_recommender(model.save(tmp_path / "text"))
    history, users = split.history("test"), np.arange(10)
    np.testing.assert_allclose(loaded.score(users, history), model.score(users, history), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.score_sequence(history[3]), model.score(np.array([3]), history)[0], rtol=1e-5, atol=1e-5)


def test_inference_reuses_the_item_table_until_a_parameter_changes(world, fitted, tmp_path):
    """Scoring projects the catalogue once, not per call; an in-place update (an optimiser step) or
    load_state_dict makes the next call project it again, so scores always follow the weights."""
    split, _, _ = world
    model = load_recommender(fitted["text_sasrec"].save(tmp_path / "text"))  # a copy: the fixture stays as fitted
    net, history, users = model.net, split.history("test"), np.arange(10)
    before = model.score(users, history)
    table = net.frozen_table[1]
    np.testing.assert_array_equal(model.score(users, history), before)
    assert net.frozen_table[1] is table  # reused, not rebuilt
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.text_proj.weight.mul_(-1.0)
        net.text_centre.add_(0.5)
    moved = model.score(users, history)
    assert not np.allclose(moved, before, atol=1e-3)
    changed = load_recommender(model.save(tmp_path / "changed"))  # a fresh net built from the changed weights
    np.testing.assert_allclose(changed.score(users, history), moved, rtol=1e-5, atol=1e-5)
    net.load_state_dict(state)
    np.testing.assert_allclose(model.score(users, history), before, rtol=1e-6, atol=1e-6)
    with torch.enable_grad():  # a differentiable pass never returns the cached (graph-less) table
        net.eval()
        assert net.item_table().requires_grad


def test_needs_the_item_space(world):
    split, _, _ = world
    with pytest.raises(ConfigError, match="item space"):
        build_recommender("text_sasrec", TINY).fit(split)


def test_all_training_windows_cover_every_event():
    """train_windows = "all" cuts long histories so every event after the first is a target once."""
    split = make_split([list(range(10)), [3, 4]], [[5], [6]], [[7], [8]], n_items=12)
    model = build_recommender("sasrec", dict(TINY, max_len=4, train_windows="all"))
    owners, windows = model._training_windows(split.history("train"))
    targets = sorted(int(x) for w, u in zip(windows, owners) if u == 0 for x in w[1:])
    assert targets == list(range(1, 10)) and all(len(w) <= 5 for w in windows)
    assert list(owners).count(1) == 1


def test_id_dropout_drops_ids_per_step_and_never_at_inference(world):
    split, space, cold = world
    model = build_recommender("text_sasrec", dict(TINY, max_epochs=2, id_dropout=0.5, text_dropout=0.0)).fit(split, items=space)
    net = model.net
    net.train()
    net.new_step()
    kept = net.step_mask[:, 0]
    assert 0 < kept.sum() < net.id_mask.sum()  # about half of the warm items keep their ID this step
    assert kept[cold].sum() == 0  # a cold item never had one
    torch.testing.assert_close(net.item_table(), net.item_table())  # one mask for input and output
    net.eval()
    history = split.history("test")
    np.testing.assert_array_equal(model.score(np.arange(5), history), model.score(np.arange(5), history))


@pytest.mark.parametrize("negatives", ["warm", "all"])
def test_cold_items_are_negatives_only_when_asked(negatives):
    """negatives="warm" leaves items without training events out of the training softmax (a new
    item did not exist at training time): moving a cold item's text vector leaves the loss as it
    was; with "all" the loss changes, because the cold item is pushed down as a negative."""
    split, space, cold = cold_world()  # its own: the text vectors are edited below
    model = build_recommender("text_sasrec", dict(TINY, max_epochs=1, text_dropout=0.0, negatives=negatives))
    model.fit(split, items=space)
    model.net.eval()
    seqs = [split.history("train")[u] for u in range(16)]
    inputs = left_pad([s[:-1] for s in seqs], TINY["max_len"])
    targets = left_pad([s[1:] for s in seqs], TINY["max_len"])
    before = float(model.next_item_loss(model.net(inputs), targets))
    with torch.no_grad():
        model.net.text[cold[0]] = 5.0 * model.net.text[cold[0] + 1]  # the cold item now looks like a popular one
    after = float(model.next_item_loss(model.net(inputs), targets))
    if negatives == "warm":
        assert after == pytest.approx(before, abs=1e-6)
    else:
        assert abs(after - before) > 1e-3


def half_cold_validation_world():
    """cold_world with the cold item as the validation target of even users (their test target is a
    warm item) and the test target of odd users, so an offset can be calibrated on validation."""
    split, space, cold = cold_world()
    train = [list(split.history("train")[u]) for u in range(split.n_users)]
    valid = [list(split.targets("valid")[u]) for u in range(split.n_users)]
    test = [list(split.targets("test")[u]) for u in range(split.n_users)]
    for u in range(0, split.n_users, 2):
        valid[u], test[u] = test[u], valid[u]
    return make_split(train, valid, test, split.n_items), space


def test_cold_offset_is_chosen_on_validation_and_lifts_cold_items(tmp_path):
    split, space = half_cold_validation_world()
    plain = build_recommender("text_sasrec", dict(TINY, cold_calibration=False)).fit(split, items=space)
    calibrated = build_recommender("text_sasrec", TINY).fit(split, items=space)
    assert plain.cold_offset == 0.0 and calibrated.cold_offset > 0
    sweep = calibrated.cold_calibration_
    assert sweep[f"{calibrated.cold_offset:g}"] == max(sweep.values()) > sweep["0"]  # chosen on validation NDCG
    odd = np.arange(split.n_users) % 2 == 1  # cold test target
    plain_ranks, calibrated_ranks = cold_target_ranks(plain, split), cold_target_ranks(calibrated, split)
    # measured: cold recall@1 0.01 -> 1.0; the warm test targets of even users stay in the top 10
    assert (calibrated_ranks[odd] < 1).mean() > (plain_ranks[odd] < 1).mean() + 0.5
    assert (calibrated_ranks[~odd] < 10).mean() > 0.9
    loaded = load_recommender(calibrated.save(tmp_path / "calibrated"))
    assert loaded.cold_offset == calibrated.cold_offset
    history = split.history("test")
    np.testing.assert_allclose(loaded.score(np.arange(6), history), calibrated.score(np.arange(6), history), rtol=1e-5, atol=1e-5)


def test_no_cold_validation_target_leaves_the_offset_at_zero(fitted):
    """In cold_world every validation target is warm: there is nothing to calibrate on."""
    assert fitted["text_sasrec"].cold_offset == 0.0 and fitted["text_sasrec"].cold_calibration_ == {}


@pytest.mark.parametrize(("lifted_users", "expected"), [(1, "zero"), (3, "positive")])
def test_cold_offset_ignores_a_gain_below_one_users_hit(monkeypatch, lifted_users, expected):
    """With designed scores, a positive offset lifts the cold validation target of ``lifted_users``
    users from rank 9 to rank 0 and moves nobody else: one user gains 0.71 of a hit (noise, the
    offset stays 0); three gain 2.1 hits (the offset is taken)."""
    split, _ = half_cold_validation_world()
    model = build_recommender("text_sasrec", TINY)
    model.warm = np.bincount(split.history("train").items, minlength=split.n_items) > 0
    model.exclude_seen = False
    cold = np.flatnonzero(~model.warm)
    users = split.eval_users("valid")
    targets = split.targets("valid").items[split.targets("valid").indptr[users]]
    lifted = [int(u) for u in users if not model.warm[targets[u]]][:lifted_users]
    designed = np.tile(-np.arange(split.n_items, dtype=np.float32) / split.n_items, (len(users), 1))
    designed[:, cold] = -50.0  # far below: even 6 std of offset leaves them under every target
    for row, u in enumerate(users):
        designed[row, targets[u]] = 100.0  # every target at rank 0...
        if int(u) in lifted:  # ...but the lifted users' cold target sits just under 9 warm items
            above = np.setdiff1d(np.flatnonzero(model.warm), [targets[u]])[:9]
            designed[row, above] = 100.0 + np.arange(1, 10)
            designed[row, targets[u]] = 99.5
    monkeypatch.setattr(SASRec, "_score_seqs", lambda self, seqs: designed[: len(seqs)].copy())
    model.cfg.infer_batch_size = len(users)  # one batch: rows line up with users
    model._calibrate_cold_offset(split)
    assert model.cold_calibration_["1"] > model.cold_calibration_["0"]  # the offset does lift them
    assert (model.cold_offset == 0.0) if expected == "zero" else (model.cold_offset > 0)


def test_prefix_rows_share_a_row_per_prefix():
    codes = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [3, 1, 0]])
    rows = prefix_rows(codes, 2)
    assert rows.shape == (4, 2)
    assert rows[0, 0] == rows[1, 0] == rows[2, 0] != rows[3, 0]  # first digit 0 vs 3
    assert rows[0, 1] == rows[1, 1] and len({rows[0, 1], rows[2, 1], rows[3, 1]}) == 3  # (0,1) (0,2) (3,1)
    assert not set(rows[:, 0]) & set(rows[:, 1])  # one table, levels apart
    assert prefix_rows(codes, 0) is None
    with pytest.raises(ConfigError, match="code_levels=4"):
        prefix_rows(codes, 4)


def test_semantic_code_embeddings_reach_cold_items_and_survive_save(world, tmp_path):
    """code_levels=2 on the cold world, whose semantic IDs are (fine cluster, item): a cold item
    gets its cluster's learned vector (shared with the warm items of its cluster) and a zero vector
    for its own item-level prefix, which no training item carries; the saved model scores the same."""
    split, space, cold = world
    model = build_recommender("text_sasrec", dict(TINY, code_levels=2)).fit(split, items=space)
    net = model.net
    code_vectors = net.code_emb.weight.detach()
    cluster_rows, item_rows = net.prefixes[:, 0], net.prefixes[:, 1]
    assert len(set(cluster_rows.tolist())) == N_FINE and len(set(item_rows.tolist())) == split.n_items
    assert code_vectors[cluster_rows[cold]].norm(dim=1).min() > 0  # learned from the warm cluster mates
    assert code_vectors[item_rows[cold]].abs().max() == 0  # only a cold item carries it: neutral
    warm = np.setdiff1d(np.arange(split.n_items), cold)
    assert code_vectors[item_rows[warm]].norm(dim=1).min() > 0
    loaded = load_recommender(model.save(tmp_path / "coded"))
    history, users = split.history("test"), np.arange(10)
    np.testing.assert_allclose(loaded.score(users, history), model.score(users, history), rtol=1e-5, atol=1e-5)
    assert (cold_target_ranks(model, split) < 10).mean() > 0.8  # cold items still recommended
