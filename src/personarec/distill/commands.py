"""``personarec distill ...``: teacher labels -> LoRA student -> GGUF adapter for llama.cpp.

Artifacts under ``RUN_DIR/distill/``:

- ``examples.jsonl``  student prompt (no future) + teacher persona JSON, one training user a line
- ``teacher.json``    what labelling cost (calls, seconds, dropped topics)
- ``student/adapter`` the LoRA adapter (peft format); ``student/checkpoints/step-N`` resumable state
- ``student.gguf``    the adapter (or merged model) as GGUF, served by the ``embedded`` backend with
  ``personas.backend_config.lora_path`` (or ``model_path`` for a merged export)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, console, resolve_config
from personarec.config import RunConfig
from personarec.distill.config import DistillConfig
from personarec.distill.dataset import DistillExample, load_examples, save_examples
from personarec.errors import DataError
from personarec.run import RunDir

app = typer.Typer(
    help="Teacher -> student LLM distillation: label training users with the hindsight teacher, "
    "LoRA-fine-tune a small student, export it as a GGUF adapter for the embedded backend.",
    no_args_is_help=True,
)


def distill_config(cfg: RunConfig) -> DistillConfig:
    return cfg.section("distill", DistillConfig)  # type: ignore[return-value]


def distill_dir(run: RunDir) -> Path:
    d = run.path / "distill"
    d.mkdir(parents=True, exist_ok=True)
    return d


def label_training_users(cfg: RunConfig, run: RunDir, *, show_progress: bool = True) -> list[DistillExample]:
    """Teacher personas for ``distill.train_users`` training users -> ``RUN_DIR/distill/examples.jsonl``."""
    import numpy as np

    from personarec.distill.teacher_data import teacher_examples
    from personarec.personas.backends.base import build_backend
    from personarec.personas.commands import load_inputs, personas_config

    dc, pc = distill_config(cfg), personas_config(cfg)
    split, space = load_inputs(cfg)
    pool = np.asarray(split.eval_users("valid"))
    rng = np.random.default_rng(cfg.seed)
    users = sorted(int(u) for u in rng.choice(pool, size=min(dc.train_users, len(pool)), replace=False))
    backend = build_backend(pc.backend, pc.backend_config)
    try:
        with run.stage("distill.teacher", users=len(users)) as entry:
            examples, report, _ = teacher_examples(split, space, backend, users, pc, seed=cfg.seed, show_progress=show_progress)
            path = save_examples(examples, distill_dir(run) / "examples.jsonl")
            (distill_dir(run) / "teacher.json").write_text(json.dumps(report.__dict__, indent=2))
            entry.update(examples=len(examples), artifact=str(path))
    finally:
        backend.close()
    return examples


def train_student(cfg: RunConfig, run: RunDir, examples: list[DistillExample] | None = None, *, resume: bool = False, show_progress: bool = True) -> Path:
    """Fine-tune the student on ``examples`` (default: the run's ``examples.jsonl``), export it
    (``distill.export``), and return the adapter path (GGUF when exported, else peft directory)."""
    from personarec.distill.export import export_student
    from personarec.distill.student import StudentTrainer

    dc = distill_config(cfg)
    if examples is None:
        examples = load_examples(distill_dir(run) / "examples.jsonl")
    if not examples:
        raise DataError("no distillation examples; run `personarec distill label` first")
    with run.stage("distill.student", examples=len(examples), steps=dc.steps) as entry:
        result = StudentTrainer(dc, seed=cfg.seed).fit(examples, distill_dir(run) / "student", resume=resume, show_progress=show_progress)
        entry.update(resumed_from=result.resumed_from, final_loss=result.losses[-1] if result.losses else None,
                     skipped_too_long=result.skipped_too_long, adapter=str(result.adapter_dir))  # fmt: skip
        if dc.export == "none":
            return result.adapter_dir
        gguf = export_student(dc, result.adapter_dir, distill_dir(run) / "student.gguf")
        entry.update(gguf=str(gguf), export=dc.export)
    return gguf


@app.command("label")
def label_cmd(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    users: Annotated[int | None, typer.Option("--users", help="Training users to label (default distill.train_users).")] = None,
    set_: SetOption = None,
) -> None:
    """Write teacher personas (multi-step, hindsight) for training users, paired with the student's prompt."""
    cfg = resolve_config(config, set_, run_dir=run_dir, distill__train_users=users)
    examples = label_training_users(cfg, RunDir(cfg.run_dir, cfg))
    console.print(f"{len(examples)} examples -> {Path(cfg.run_dir) / 'distill' / 'examples.jsonl'}")


@app.command("student")
def student_cmd(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps (default distill.steps).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in RUN_DIR/distill/student.")] = False,
    examples: Annotated[Path | None, typer.Option("--examples", help="JSONL of {user_id, prompt, target}; default RUN_DIR/distill/examples.jsonl (labelled first if absent).")] = None,
    set_: SetOption = None,
) -> None:
    """LoRA-fine-tune the student on the teacher's personas and export it as GGUF for llama.cpp."""
    cfg = resolve_config(config, set_, run_dir=run_dir, distill__steps=steps)
    run = RunDir(cfg.run_dir, cfg)
    if examples is not None:
        data = load_examples(examples)
    elif (distill_dir(run) / "examples.jsonl").exists():
        data = load_examples(distill_dir(run) / "examples.jsonl")
    else:
        data = label_training_users(cfg, run)
    out = train_student(cfg, run, data, resume=resume)
    console.print(f"student -> {out}")
    if out.suffix == ".gguf":
        key = "lora_path" if distill_config(cfg).export == "adapter" else "model_path"
        console.print(f"serve it: --set personas.backend=embedded --set personas.backend_config.{key}={out}")


@app.command("export")
def export_cmd(
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    kind: Annotated[str | None, typer.Option("--kind", help="adapter (LoRA GGUF next to the base) | merged (one full GGUF).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="GGUF path (default RUN_DIR/distill/student.gguf).")] = None,
    set_: SetOption = None,
) -> None:
    """Export the trained adapter (RUN_DIR/distill/student/adapter) as a GGUF."""
    from personarec.distill.export import export_student

    cfg = resolve_config(config, set_, run_dir=run_dir)
    run = RunDir(cfg.run_dir, cfg)
    adapter = distill_dir(run) / "student" / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise DataError(f"no trained student in {adapter}; run `personarec distill student` first")
    path = export_student(distill_config(cfg), adapter, out or distill_dir(run) / "student.gguf", kind)
    console.print(f"exported -> {path}")
