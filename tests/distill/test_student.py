from __future__ import annotations

import numpy as np
import pytest
import torch

from personarec.distill.base_model import load_base
from personarec.distill.dataset import build_examples
from personarec.distill.student import IGNORE, StudentTrainer, collate, encode, latest_checkpoint, load_student


def _mean_loss(model, tok, examples, max_length=160) -> float:
    batch = collate([encode(tok, e, max_length) for e in examples], tok.pad_token_id)
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def test_only_the_answer_is_labelled(tiny_config, pairs):
    _, tok = load_base(tiny_config)
    ex = build_examples(pairs)[0]
    enc = encode(tok, ex, 512)
    answer = [t for t in enc.labels if t != IGNORE]
    assert tok.decode(answer) == ex.target + tok.eos_token
    n_prompt = enc.labels.index(answer[0])
    assert tok.decode(enc.input_ids[:n_prompt]).endswith("assistant\n")
    assert encode(tok, ex, 20) is None  # too long -> skipped, not truncated


@pytest.mark.slow
def test_lora_training_lowers_the_loss(trained_student):
    cfg, examples, result = trained_student
    assert result.steps == 6 and len(result.losses) == 6 and result.resumed_from == 0
    base, tok = load_base(cfg)
    before = _mean_loss(base, tok, examples)
    student, tok = load_student(cfg, result.adapter_dir)
    after = _mean_loss(student, tok, examples)
    assert after < 0.7 * before, (before, after)
    # only the adapter was trained: every base weight is untouched
    base_sd = base.state_dict()
    n_lora = 0
    for name, p in student.named_parameters():
        if "lora_" in name:
            n_lora += 1
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(p, base_sd[key]), name
    assert n_lora == 2 * 7 * base.config.num_hidden_layers


class _Interrupt(RuntimeError):
    pass


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path, trained_student):
    cfg, examples, full = trained_student

    def stop_after_4(step: int, loss: float) -> None:
        if step == 4:
            raise _Interrupt

    trainer = StudentTrainer(cfg, seed=7)
    with pytest.raises(_Interrupt):
        trainer.fit(examples, tmp_path, show_progress=False, on_step=stop_after_4)
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step-3"
    resumed = StudentTrainer(cfg, seed=7).fit(examples, tmp_path, resume=True, show_progress=False)
    assert resumed.resumed_from == 3 and len(resumed.losses) == 3
    # same batches, same RNG, same optimizer state: the resumed run ends where the uninterrupted one did
    np.testing.assert_allclose(resumed.losses, full.losses[3:], rtol=1e-4, atol=1e-5)
    from safetensors.torch import load_file

    a = load_file(str(full.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    # a finished run resumed again does nothing
    again = StudentTrainer(cfg, seed=7).fit(examples, tmp_path, resume=True, show_progress=False)
    assert again.losses == [] and again.resumed_from == cfg.steps
