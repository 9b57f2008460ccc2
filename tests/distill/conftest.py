"""Tiny hand-made distillation pairs and one shared, briefly trained student (built once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CLUSTERS = ["space opera", "romantic comedy", "film noir", "war epics", "animated family", "slasher horror"]
SYSTEM = "Write the user's persona as JSON. Use only the listed cluster names."


def _pair(watched: list[str], interests: list[str], explore: str) -> tuple[list[dict[str, str]], str]:
    user = "Clusters: " + ", ".join(CLUSTERS) + ".\nWatched: " + ", ".join(watched) + "."
    target = {
        "summary": f"Enjoys {' and '.join(interests)}.",
        "interests": [{"cluster": c, "weight": round(1.0 - 0.3 * i, 1)} for i, c in enumerate(interests)],
        "explore": [{"cluster": explore, "reason": "a new direction"}],
    }
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}], json.dumps(target)


PAIRS = [
    _pair(["space opera", "space opera", "war epics"], ["space opera", "war epics"], "film noir"),
    _pair(["romantic comedy", "animated family"], ["romantic comedy", "animated family"], "space opera"),
    _pair(["film noir", "slasher horror", "film noir"], ["film noir", "slasher horror"], "romantic comedy"),
    _pair(["animated family", "animated family", "space opera"], ["animated family", "space opera"], "war epics"),
]


@pytest.fixture(scope="session")
def pairs():
    return PAIRS


@pytest.fixture(scope="session")
def tiny_config():
    from personarec.distill.config import DistillConfig

    return DistillConfig(
        steps=6, batch_size=2, grad_accum=1, learning_rate=2e-3, warmup_steps=0, checkpoint_every=3,
        max_length=160, threads=2, lora={"r": 8, "alpha": 16, "dropout": 0.0},
    )


@pytest.fixture(scope="session")
def trained_student(tmp_path_factory, tiny_config, pairs):
    """(config, examples, TrainResult) of a 6-step LoRA run on the tiny pairs."""
    from personarec.distill.dataset import build_examples
    from personarec.distill.student import StudentTrainer

    examples = build_examples(pairs)
    out: Path = tmp_path_factory.mktemp("student")
    result = StudentTrainer(tiny_config, seed=7).fit(examples, out, show_progress=False)
    return tiny_config, examples, result
