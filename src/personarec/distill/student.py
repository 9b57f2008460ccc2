"""LoRA fine-tuning of the student LLM on CPU (``transformers`` + ``peft``), resumable.

A plain loop rather than ``transformers.Trainer``: on 2 CPU cores every step counts, and a short
loop makes the three things that matter obvious: the loss covers only the assistant's tokens
(the persona JSON and its end-of-turn token, never the prompt), the batch order is a pure function
of the seed (so a resumed run sees exactly the batches an uninterrupted one would), and a
checkpoint holds everything needed to continue (adapter, optimizer, scheduler, RNG states).
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from personarec.distill.base_model import load_base
from personarec.distill.config import DistillConfig
from personarec.distill.dataset import DistillExample
from personarec.errors import DataError

IGNORE = -100
CHECKPOINT_PREFIX = "step-"


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)  # one mean loss per optimizer step run now
    resumed_from: int = 0
    skipped_too_long: int = 0


def encode(tokenizer: Any, example: DistillExample, max_length: int) -> Encoded | None:
    """Tokenise prompt + target with the chat template; label only the target tokens.

    The prompt part is the template with the generation prompt (what the model sees at serving
    time); the full text is the template with the assistant turn. The first must be a prefix of
    the second, which every chat template we know satisfies; we check it rather than assume it.
    """
    prompt_ids = tokenizer.apply_chat_template(example.prompt, add_generation_prompt=True, tokenize=True)
    full_ids = tokenizer.apply_chat_template(
        [*example.prompt, {"role": "assistant", "content": example.target}], tokenize=True
    )
    prompt_ids, full_ids = _ids(prompt_ids), _ids(full_ids)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise DataError("the chat template's prompt is not a prefix of the prompt+answer; cannot mask the prompt")
    # drop template trailing whitespace after the end-of-turn token (e.g. "\n"): nothing to learn there
    eos = tokenizer.eos_token_id
    if eos in full_ids[len(prompt_ids) :]:
        full_ids = full_ids[: len(prompt_ids) + full_ids[len(prompt_ids) :].index(eos) + 1]
    if len(full_ids) > max_length:
        return None
    labels = [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return Encoded(full_ids, labels)


def _ids(x: Any) -> list[int]:
    if hasattr(x, "keys") and "input_ids" in x:  # BatchEncoding from newer transformers
        x = x["input_ids"]
    return [int(t) for t in x]


def collate(batch: list[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad a micro-batch; padding is masked out of attention and of the loss."""
    import torch

    n = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, e in enumerate(batch):
        k = len(e.input_ids)
        ids[i, :k] = torch.tensor(e.input_ids)
        labels[i, :k] = torch.tensor(e.labels)
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_order(n_examples: int, n_batches: int, batch_size: int, seed: int) -> list[list[int]]:
    """Indices of every micro-batch of the run: shuffled epochs, a pure function of the seed."""
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    need = n_batches * batch_size
    while len(stream) < need:
        stream.extend(rng.permutation(n_examples).tolist())
    return [stream[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


def build_peft_model(model: Any, cfg: DistillConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    import torch

    layers, targets = None, cfg.lora.target_modules
    if cfg.lora.last_layers:
        n = int(model.config.num_hidden_layers)
        layers = list(range(max(0, n - cfg.lora.last_layers), n))
        if targets == "all-linear":  # peft restricts layers only for named modules: name every linear one
            targets = sorted({
                name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                if isinstance(mod, torch.nn.Linear) and ".layers." in name
            })  # fmt: skip
    lora = LoraConfig(
        layers_to_transform=layers,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted(
        (p for p in (out_dir / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*") if (p / "state.pt").exists()),
        key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
    )
    return ckpts[-1] if ckpts else None


class StudentTrainer:
    """Fine-tunes the student with LoRA. ``fit`` writes ``out_dir/adapter`` (peft format) and
    checkpoints under ``out_dir/checkpoints/step-N``; ``fit(resume=True)`` continues from the last."""

    def __init__(self, config: DistillConfig | None = None, seed: int = 42) -> None:
        self.config = config or DistillConfig()
        self.seed = self.config.seed if self.config.seed is not None else seed

    @classmethod
    def from_config(cls, config: dict[str, Any] | DistillConfig | None = None, seed: int = 42) -> StudentTrainer:
        if config is None or isinstance(config, DistillConfig):
            return cls(config, seed)
        return cls(DistillConfig.model_validate(config), seed)

    def get_config(self) -> dict[str, Any]:
        return {**self.config.model_dump(mode="json"), "seed": self.seed}

    # ------------------------------------------------------------------------------------------
    def fit(
        self,
        examples: list[DistillExample],
        out_dir: str | Path,
        *,
        resume: bool = False,
        show_progress: bool = True,
        on_step: Callable[[int, float], None] | None = None,
    ) -> TrainResult:
        import torch

        cfg = self.config
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        _set_seed(self.seed)

        adapter = out / "adapter"
        if resume and _finished(adapter, cfg.steps, self.seed):
            return TrainResult(adapter, cfg.steps, [], cfg.steps, 0)

        model, tok = load_base(cfg)
        encoded = [encode(tok, e, cfg.max_length) for e in examples]
        kept = [e for e in encoded if e is not None]
        skipped = len(encoded) - len(kept)
        if not kept:
            raise DataError(f"all {len(examples)} examples are longer than distill.max_length={cfg.max_length} tokens")

        _set_seed(self.seed)  # LoRA init is random: same seed -> same init
        model = build_peft_model(model, cfg)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup_steps, cfg.steps))
        order = batch_order(len(kept), cfg.steps * cfg.grad_accum, cfg.batch_size, self.seed)

        start = 0
        ckpt = latest_checkpoint(out) if resume else None
        if ckpt is not None:
            start = self._restore(ckpt, model, opt, sched)
        losses_now: list[float] = []

        from personarec.cli_common import progress

        with progress() as bar:
            task = bar.add_task("LoRA fine-tuning", total=cfg.steps, completed=start, visible=show_progress)
            for step in range(start, cfg.steps):
                opt.zero_grad(set_to_none=True)
                step_loss = 0.0
                for micro in range(cfg.grad_accum):
                    idx = order[step * cfg.grad_accum + micro]
                    batch = collate([kept[i] for i in idx], tok.pad_token_id)
                    loss = model(**batch).loss / cfg.grad_accum
                    loss.backward()
                    step_loss += float(loss.detach())
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                losses_now.append(step_loss)
                if on_step is not None:
                    on_step(step + 1, step_loss)
                bar.update(task, advance=1, description=f"LoRA fine-tuning (loss {step_loss:.3f})")
                if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                    self._save_checkpoint(out, step + 1, model, opt, sched, step_loss)

        shutil.rmtree(adapter, ignore_errors=True)
        model.save_pretrained(adapter)
        tok.save_pretrained(adapter)
        (adapter / "distill.json").write_text(
            json.dumps({"steps": cfg.steps, "seed": self.seed, "config": self.get_config(), "examples": len(kept)}, indent=2, default=str)
        )
        return TrainResult(adapter, cfg.steps, losses_now, start, skipped)

    # ------------------------------------------------------------------------------------------
    def _save_checkpoint(self, out: Path, step: int, model: Any, opt: Any, sched: Any, loss: float) -> Path:
        import torch

        root = out / "checkpoints"
        d = root / f"{CHECKPOINT_PREFIX}{step}"
        tmp = root / f".tmp-{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp / "adapter")
        torch.save(
            {
                "step": step,
                "loss": loss,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate(),
                "config": self.get_config(),
            },
            tmp / "state.pt",
        )
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
        ckpts = sorted(root.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))
        for old in ckpts[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return d

    def _restore(self, ckpt: Path, model: Any, opt: Any, sched: Any) -> int:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = torch.load(ckpt / "state.pt", weights_only=False)
        saved = state.get("config", {})
        for key in ("lora", "batch_size", "grad_accum", "steps", "learning_rate", "model", "seed"):
            if key in saved and saved[key] != self.get_config()[key]:
                raise DataError(f"cannot resume from {ckpt}: {key} changed ({saved[key]!r} -> {self.get_config()[key]!r})")
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        return int(state["step"])


def _finished(adapter: Path, steps: int, seed: int) -> bool:
    meta = adapter / "distill.json"
    if not meta.exists():
        return False
    info = json.loads(meta.read_text())
    return info.get("steps") == steps and info.get("seed") == seed


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 10 % of the peak."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def load_student(cfg: DistillConfig, adapter_dir: str | Path) -> tuple[Any, Any]:
    """The base model with a trained adapter, ready for inference (eval mode)."""
    from peft import PeftModel

    model, tok = load_base(cfg)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, tok
