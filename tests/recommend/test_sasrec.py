"""SASRec: learns a sequential rule popularity cannot, scores one live sequence like a batch,
survives save/load, and exposes the hooks the distillation stage builds on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personarec.recommend.base import build_recommender, load_recommender
from personarec.recommend.sasrec import SASRec
from tests.recommend.conftest import cyclic_split
from tests.ranking import top

TINY = dict(max_len=16, hidden=32, n_blocks=1, n_heads=1, dropout=0.0, lr=1e-2, batch_size=32,
            max_epochs=25, patience=4, patience_steps=0, seed=0, num_threads=1, show_progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def cyclic():
    split = cyclic_split()
    model = build_recommender("sasrec", TINY).fit(split)
    return split, model


def hit_rate_at_1(model, split) -> float:
    users = split.eval_users("test")
    items, _ = top(model, users, split.history("test"), k=1, exclude_seen=True)
    targets = split.targets("test")
    return float(np.mean(items[:, 0] == targets.items[targets.indptr[users]]))


def test_sasrec_learns_the_cycle_popularity_cannot(cyclic):
    split, model = cyclic
    popular = build_recommender("popular").fit(split)
    assert hit_rate_at_1(model, split) >= 0.9
    assert hit_rate_at_1(popular, split) <= 0.4  # chance among ~7 unseen items is ~0.14 (ties: lowest index)
    assert model.best_epoch >= 1 and model.history_[0]["valid_ndcg"] <= model.history_[model.best_epoch - 1]["valid_ndcg"]


def test_score_sequence_equals_batched_score(cyclic, tmp_path):
    split, model = cyclic
    history = split.history("test")
    users = np.arange(6)
    # histories of different lengths in one batch: padding must not change any row
    from tests.recommend.conftest import make_split

    seqs = [history[u][-(3 + u) :] for u in users]
    probe = make_split([s.tolist() for s in seqs], [[0]] * 6, [[0]] * 6, n_items=split.n_items)
    batch = model.score(users, probe.history("train"))
    for u in users:
        np.testing.assert_allclose(model.score_sequence(seqs[u]), batch[u], rtol=1e-4, atol=1e-4)
    # scored in length-sorted chunks of 2: every row still lands on its own user
    small = load_recommender(model.save(tmp_path / "m"))
    small.config = small.config.model_copy(update={"infer_batch_size": 2})
    np.testing.assert_allclose(small.score(users[::-1], probe.history("train")), batch[::-1], rtol=1e-4, atol=1e-4)


def test_history_longer_than_max_len_uses_the_latest_events(cyclic):
    split, model = cyclic
    seq = np.arange(40) % split.n_items
    np.testing.assert_allclose(model.score_sequence(seq), model.score_sequence(seq[-TINY["max_len"] :]), atol=1e-5)


def test_save_load_gives_identical_scores(cyclic, tmp_path):
    split, model = cyclic
    model.save(tmp_path / "sasrec")
    again = load_recommender(tmp_path / "sasrec")
    assert isinstance(again, SASRec) and again.get_config() == model.get_config()
    history = split.history("test")
    users = np.arange(split.n_users)
    np.testing.assert_array_equal(again.score(users, history), model.score(users, history))


def test_checkpoint_holds_the_best_state(tmp_path):
    split = cyclic_split(n_users=40)
    path = tmp_path / "ckpt" / "best.pt"
    model = build_recommender("sasrec", dict(TINY, max_epochs=3, checkpoint_path=str(path))).fit(split)
    state = torch.load(path, weights_only=True)
    for key, value in model.net.state_dict().items():
        torch.testing.assert_close(state[key], value)


def test_same_seed_same_model():
    split = cyclic_split(n_users=30)
    a = build_recommender("sasrec", dict(TINY, max_epochs=2)).fit(split)
    b = build_recommender("sasrec", dict(TINY, max_epochs=2)).fit(split)
    history = split.history("test")
    np.testing.assert_array_equal(a.score(np.arange(30), history), b.score(np.arange(30), history))


def test_encode_and_loss_hooks(cyclic):
    split, model = cyclic
    seqs = [np.array([1, 2, 3]), np.array([5])]
    hidden, real = model.encode(seqs)
    assert hidden.shape == (2, 3, TINY["hidden"]) and real.tolist() == [[True, True, True], [False, False, True]]
    emb = model.user_embeddings(np.array([0]), split.history("test"))
    np.testing.assert_allclose(
        emb[0] @ model.net.item_weights().detach().numpy().T, model.score(np.array([0]), split.history("test"))[0], rtol=1e-4, atol=1e-4
    )

    class WithAux(SASRec):
        name = "sasrec-aux-test"
        calls = 0

        def training_loss(self, inputs, targets, users):
            WithAux.calls += 1
            hidden = self.net(inputs)
            return self.next_item_loss(hidden, targets) + 0.0 * hidden.pow(2).mean()

    WithAux.from_config(dict(TINY, max_epochs=1)).fit(cyclic_split(n_users=20))
    assert WithAux.calls > 0


def test_bad_heads_is_a_config_error():
    from personarec.errors import ConfigError

    with pytest.raises(ConfigError):
        build_recommender("sasrec", dict(TINY, hidden=30, n_heads=4)).fit(cyclic_split(n_users=10))


@pytest.mark.parametrize(
    "options",
    [
        dict(norm="post", ff_mult=4, n_heads=2),
        dict(train_windows="all", max_len=6),
        dict(positions="start", init="bert", norm="post", lr=3e-3, max_epochs=40, patience=8),
        dict(loss="sampled_softmax", n_negatives=8),
    ],
)
def test_architecture_options_learn_and_round_trip(options, tmp_path):
    """Post-norm blocks (RecBole's layout), a wider feed-forward, several heads, windowed training,
    positions counted from the first event and BERT initialisation each still learn the cycle; a
    saved model scores as trained, and padding in a batch changes no row."""
    split = cyclic_split()
    model = build_recommender("sasrec", dict(TINY, **options)).fit(split)
    assert hit_rate_at_1(model, split) >= 0.9
    loaded = load_recommender(model.save(tmp_path / "m"))
    history = split.history("test")
    np.testing.assert_allclose(loaded.score(np.arange(8), history), model.score(np.arange(8), history), rtol=1e-5, atol=1e-6)
    batch = model.score(np.arange(8), history)
    for u in range(8):
        np.testing.assert_allclose(model.score_sequence(history[u]), batch[u], rtol=1e-4, atol=1e-4)


def test_positions_from_start_tell_a_short_history_from_a_long_one():
    """With positions="end" the latest event always sits at the last position; with "start" a
    history of 3 events puts it at position 2, so the two settings read a short history apart."""
    from personarec.recommend.sasrec import SASRecConfig, SASRecNet

    torch.manual_seed(0)
    end = SASRecNet(20, SASRecConfig(**dict(TINY, max_len=8, positions="end")))
    start = SASRecNet(20, SASRecConfig(**dict(TINY, max_len=8, positions="start")))
    start.load_state_dict(end.state_dict())
    end.eval(), start.eval()
    full = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])  # no padding: both count the same positions
    torch.testing.assert_close(end(full), start(full))
    short = torch.tensor([[0, 0, 0, 0, 0, 6, 7, 8]])
    assert not torch.allclose(end(short)[0, -1], start(short)[0, -1])
    # "start" reads the padded short history exactly as the unpadded one
    torch.testing.assert_close(start(short)[:, -3:], start(torch.tensor([[6, 7, 8]])))


def test_bert_initialisation_is_recboles():
    from personarec.recommend.sasrec import SASRecConfig, SASRecNet

    torch.manual_seed(0)
    net = SASRecNet(500, SASRecConfig(**dict(TINY, init="bert", hidden=64)))
    assert net.scale == 1.0
    assert abs(float(net.item_emb.weight[1:].detach().std()) - 0.02) < 0.002
    assert abs(float(net.blocks[0].qkv.weight.detach().std()) - 0.02) < 0.002 and float(net.blocks[0].qkv.bias.detach().abs().max()) == 0.0
    assert float(net.item_emb.weight[0].detach().abs().max()) == 0.0  # padding stays zero
    scaled = SASRecNet(500, SASRecConfig(**dict(TINY, hidden=64, init="scaled")))
    assert scaled.scale == 8.0 and abs(float(scaled.item_emb.weight[1:].detach().std()) - 64**-0.5) < 0.01


@pytest.mark.parametrize("patience_steps", [0, 4])
def test_patience_counts_epochs_and_steps(patience_steps):
    """Training stops after ``patience`` epochs *and* ``patience_steps`` optimizer steps without a
    validation gain: one step an epoch here, so 4 steps wait 4 epochs where patience alone waits 1."""
    split = cyclic_split(n_users=20)  # 20 sequences, batch 32: one step an epoch
    cfg = dict(TINY, lr=1e-7, dropout=0.0, patience=1, patience_steps=patience_steps, max_epochs=20)
    model = build_recommender("sasrec", cfg).fit(split)
    assert len(model.history_) == model.best_epoch + max(1, patience_steps)


def test_sampled_softmax_is_cross_entropy_against_the_drawn_items():
    """The loss is the target's cross-entropy against the step's drawn negatives, a draw equal to
    the row's own target is left out, and items the subclass forbids as negatives get no gradient."""
    split = cyclic_split(n_users=20)
    model = build_recommender("sasrec", dict(TINY, max_epochs=1, loss="sampled_softmax", n_negatives=50)).fit(split)
    net = model.net
    hidden = torch.randn(6, TINY["hidden"])
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    torch.manual_seed(3)
    loss = model._sampled_softmax(hidden, targets, None)
    torch.manual_seed(3)
    drawn = torch.randint(model.n_items, (50,))
    weights = net.item_weights().detach()
    expected = []
    for h, t in zip(hidden, targets):
        others = weights[drawn[drawn != t]]
        logits = torch.cat([(h * weights[t]).sum().view(1), others @ h])
        expected.append(-torch.log_softmax(logits, 0)[0])
    assert (drawn[:, None] == targets[None, :]).any(), "the draw should hit a target so the masking is exercised"
    torch.testing.assert_close(loss.detach(), torch.stack(expected).mean(), rtol=1e-5, atol=1e-6)

    allowed = torch.ones(model.n_items, dtype=torch.bool)
    allowed[7] = False  # e.g. a cold item text_sasrec keeps out of the negatives
    net.zero_grad()
    model._sampled_softmax(hidden, targets, allowed).backward()
    grad = net.item_emb.weight.grad
    assert grad[1 + 7].abs().sum() == 0 and grad[1 + 8].abs().sum() > 0


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_last_position_pass_equals_the_full_pass(norm):
    """Scoring computes the last block for the latest position only: the same vector as the full
    pass, for padded rows of different lengths and several blocks."""
    split = cyclic_split(n_users=20)
    model = build_recommender("sasrec", dict(TINY, max_epochs=1, n_blocks=2, n_heads=2, norm=norm)).fit(split)
    seqs = [np.array([1, 2, 3, 4, 5]), np.array([7]), np.array([3, 9, 4])]
    with torch.no_grad():
        full, _ = model.encode(seqs)
        last = model.encode_last(seqs)
    assert last.shape == (3, TINY["hidden"])
    torch.testing.assert_close(last, full[:, -1], rtol=1e-5, atol=1e-5)
