"""The compact student: hindsight labels that never read test events, trained on exactly the tokens
serving shows, and served by the batched llama.cpp engine with its adapter."""

from __future__ import annotations

import numpy as np
import pytest

from personarec.distill.compact_labels import hindsight_examples, hindsight_likes
from personarec.personas.compact import CANDIDATE_CODES, HISTORY_CODES, compact_prompt
from personarec.personas.config import PersonasConfig
from personarec.personas.history import ClusterStat
from personarec.personas.transitions import TransitionStats
from tests.personas.spaces import genre_space

USERS = list(range(40))


class NoTestSplit:
    """The split with its test events locked away: reading them fails the test."""

    def __init__(self, split):
        self._split = split

    def __getattr__(self, name):
        if name == "test":
            raise AssertionError("the labeller read the test events")
        return getattr(self._split, name)

    def targets(self, stage):
        assert stage != "test", "the labeller read the test targets"
        return self._split.targets(stage)

    def history(self, stage):
        assert stage != "test", "the labeller read a history that includes validation"
        return self._split.history(stage)


@pytest.fixture(scope="module")
def setup(ml100k_split):
    space = genre_space(ml100k_split)
    transitions = TransitionStats.fit(ml100k_split.history("train"), space.fine, space.n_fine)
    config = PersonasConfig(compact_example=False)
    prompt = compact_prompt(config, "movie", space.fine_names)
    return ml100k_split, space, transitions, config, prompt


def _parse(target: str) -> tuple[list[tuple[str, str]], str]:
    likes, nxt = target.split("\n")
    assert likes.startswith("Likes: ") and nxt.startswith("Next: ")
    pairs = [tuple(x.split(" ")) for x in likes[len("Likes: ") :].split(", ")]
    return pairs, nxt[len("Next: ") :]


def test_labels_use_only_training_and_validation_events(setup):
    split, space, transitions, config, prompt = setup
    examples, report = hindsight_examples(NoTestSplit(split), space, transitions, config, prompt, USERS)
    assert report.examples == len(examples) > 0
    assert report.examples + report.skipped_no_hit + report.skipped_short == report.cutoffs_tried
    for ex in examples:
        likes, nxt = _parse(ex.target)
        assert nxt in CANDIDATE_CODES[: config.compact_candidates]
        assert all(code in HISTORY_CODES and level in ("high", "mid", "low") for code, level in likes)
        assert len({code for code, _ in likes}) == len(likes) <= config.max_interests
        assert [m["role"] for m in ex.prompt] == ["system", "user"]  # no worked example, no answer


def test_next_label_is_where_the_user_went(setup):
    """Last cut-off (b=0): the labelled candidate's cluster is a cluster of the validation item."""
    split, space, transitions, config, prompt = setup
    examples, _ = hindsight_examples(split, space, transitions, config, prompt, USERS, cutoffs=(0,))
    valid = split.targets("valid")
    index = {str(split.user_ids[u]): u for u in USERS}
    assert examples
    for ex in examples:
        _, nxt = _parse(ex.target)
        line = next(x for x in ex.prompt[-1]["content"].splitlines() if x.startswith(nxt + " "))
        went = {space.fine_names[int(c)] for c in space.fine[np.asarray(valid[index[ex.user_id]])]}
        assert line[2:] in went


def test_hindsight_likes_puts_returned_clusters_first():
    def stat(c):
        return ClusterStat(cluster=c, name=str(c), count=1, events_since=0, weight=0.1, examples=())

    listed = [stat(c) for c in (10, 11, 12, 13)]
    assert hindsight_likes(listed, {12}, 5) == [(2, "high"), (0, "mid"), (1, "mid")]
    assert hindsight_likes(listed, set(), 5) == [(0, "mid"), (1, "mid"), (2, "low")]
    assert hindsight_likes(listed, {10, 11, 12, 13}, 2) == [(0, "high"), (1, "high")]


@pytest.mark.slow
def test_student_trains_on_the_tokens_serving_shows_and_is_served_batched(setup, tmp_path):
    """HF chat template (training) == llama.cpp tokens (serving); a short LoRA run, exported, then
    served by the batched engine with the adapter: every persona generated and valid."""
    from personarec.distill.base_model import load_base
    from personarec.distill.config import DistillConfig, LoraSettings
    from personarec.distill.export import export_student
    from personarec.distill.student import StudentTrainer, build_peft_model
    from personarec.personas.backends.base import build_backend
    from personarec.personas.generate import PersonaEngine

    split, space, transitions, config, prompt = setup
    examples, _ = hindsight_examples(split, space, transitions, config, prompt, USERS)
    cfg = DistillConfig(
        steps=3, batch_size=4, grad_accum=1, learning_rate=1e-3, warmup_steps=0, max_length=400,
        checkpoint_every=100, lora=LoraSettings(r=4, alpha=8, dropout=0.0, last_layers=2),
    )  # fmt: skip
    _, tok = load_base(cfg)
    backend = build_backend("embedded", {"n_threads": 2})
    # the serving path: the engine's own compact writer on the same user's training history
    serving = PersonaEngine(split, space, backend, config.model_copy(update={"history_stage": "valid"}),
                            transitions=transitions, seed=1)  # fmt: skip
    last, _ = hindsight_examples(split, space, transitions, config, prompt, USERS, cutoffs=(0,))
    ex = last[0]
    req, _ = serving.compact.request(serving.context(split.user_index()[ex.user_id]))
    trained_ids = tok.apply_chat_template(ex.prompt, add_generation_prompt=True, tokenize=True)
    trained_ids = list(trained_ids["input_ids"] if hasattr(trained_ids, "keys") else trained_ids)
    trained_ids += tok("Likes:", add_special_tokens=False)["input_ids"]
    assert trained_ids == serving.compact.prefix + req.tokens

    model, _ = load_base(cfg)
    peft_model = build_peft_model(model, cfg)
    adapted = {n.split(".layers.")[1].split(".")[0] for n, p in peft_model.named_parameters() if p.requires_grad}
    n_layers = int(model.config.num_hidden_layers)
    assert adapted == {str(n_layers - 2), str(n_layers - 1)}

    trained = StudentTrainer(cfg, seed=1).fit(examples[:24], tmp_path / "student", show_progress=False)
    gguf = export_student(cfg, trained.adapter_dir, tmp_path / "student.gguf", kind="adapter")
    student = build_backend("embedded", {"n_threads": 2, "lora_path": str(gguf)})
    engine = PersonaEngine(split, space, student, config.model_copy(update={"history_stage": "test"}), seed=1)
    assert engine.format == "compact"
    outs = engine.personas_for([engine.context(u) for u in USERS[:6]])
    assert [o.status for o in outs] == ["generated"] * 6
    assert all(o.persona.explore and o.persona.interests for o in outs)
    assert "LoRA" in outs[0].persona.provenance.model
    student.close()
    backend.close()
