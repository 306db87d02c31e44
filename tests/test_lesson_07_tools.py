"""Lesson 07's claims that need no training run: merged equals unmerged only in fp32, and the
7B memory ratio comes from lesson 01's calculator."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peftlab import base_model, memory
from peftlab.lessons import lesson07_peft_methods as lesson
from peftlab.quiet import muted

TOKENS = torch.tensor([[5, 17, 42, 8, 99, 3, 61, 12, 7, 30, 2, 55]])


def _merged_gap(dtype: torch.dtype) -> float:
    """Largest logit gap between a LoRA model with a non-zero B and its merged copy."""
    torch.manual_seed(0)
    with muted():
        model, _ = base_model.load()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # an all-zero adapter would prove nothing
    model = model.to(dtype).eval()
    with torch.no_grad():
        unmerged = model(input_ids=TOKENS).logits.float()
        merged = model.merge_and_unload()(input_ids=TOKENS).logits.float()
        base_gap = (unmerged - merged).abs().max().item()
    return base_gap


def test_merged_equals_unmerged_to_rounding_in_fp32_but_not_in_bf16():
    fp32, bf16 = _merged_gap(torch.float32), _merged_gap(torch.bfloat16)
    assert fp32 < 1e-4
    assert bf16 > 100 * fp32 and bf16 > 1e-3


def test_the_7b_memory_ratio_is_lesson_01s_calculator():
    kwargs = dict(batch_size=1, seq_len=512, gradient_checkpointing=True)
    full = memory.estimate("llama-2-7b", "full", **kwargs).total
    lora = memory.estimate("llama-2-7b", "lora", r=8, target_modules="all-linear", **kwargs).total
    assert lesson.seven_b_memory_ratio(True) == pytest.approx(full / lora)
    assert 5 < lesson.seven_b_memory_ratio(False) < lesson.seven_b_memory_ratio(True) < 10
