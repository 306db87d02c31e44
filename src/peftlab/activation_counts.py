"""Activations counted, not guessed: random Llamas built as each recipe trains, beside the estimate.

`measure.saved_activation_bytes` counts the bytes autograd keeps for backward; this module holds
the small random Llamas whose activations the course counts (`SHAPES`: lesson 01's table and
tests/test_activations_measured.py; `LARGE_SHAPES`: benchmarks/activations.py), builds each
training recipe on them the way `finetune.train_lora` builds it (`build`), and puts the count
beside `memory.estimate(...).activations` (`count`).
"""

from __future__ import annotations

import os
from typing import Any

# Random Llamas small enough to count on a CPU in seconds: the lesson's table and the tests.
SHAPES: dict[str, dict[str, int]] = {
    "h128, 2 layers": dict(hidden_size=128, intermediate_size=352, num_attention_heads=4,
                           num_key_value_heads=4, num_hidden_layers=2, vocab_size=512),
    "h192, 3 layers, GQA": dict(hidden_size=192, intermediate_size=512, num_attention_heads=6,
                                num_key_value_heads=2, num_hidden_layers=3, vocab_size=1024),
}  # fmt: skip
# Larger ones, at 1,024-2,048 tokens, for the benchmark (minutes).
LARGE_SHAPES: dict[str, dict[str, int]] = {
    "h1024 L4 a16": dict(hidden_size=1024, intermediate_size=2816, num_attention_heads=16,
                         num_key_value_heads=16, num_hidden_layers=4, vocab_size=32000),
    "h1024 L2 a16": dict(hidden_size=1024, intermediate_size=2816, num_attention_heads=16,
                         num_key_value_heads=16, num_hidden_layers=2, vocab_size=32000),
    "h2048 L2 a16 kv4": dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=16,
                             num_key_value_heads=4, num_hidden_layers=2, vocab_size=32000),
}  # fmt: skip
TARGETS = ("q_proj", "v_proj")


def config(fields: dict[str, int] | str, attn: str = "sdpa") -> Any:
    """A `LlamaConfig` of a shape (a name in `SHAPES` or `LARGE_SHAPES`, or its fields)."""
    from transformers import LlamaConfig

    if isinstance(fields, str):
        known = SHAPES | LARGE_SHAPES
        if fields not in known:
            raise ValueError(f"shape {fields!r}: unknown; choose one of {', '.join(known)}")
        fields = known[fields]
    cfg = LlamaConfig(**fields)
    cfg._attn_implementation = attn
    return cfg


def save_random(shape: dict[str, int] | str, folder: str | os.PathLike, seed: int = 0) -> None:
    """Save a Llama of `shape` with random weights (seeded) to `folder`, for the 4-bit loads."""
    from transformers import LlamaForCausalLM

    from peftlab.quiet import muted
    from peftlab.seed import seed_everything

    seed_everything(seed)
    with muted():
        LlamaForCausalLM(config(shape)).save_pretrained(folder)


def build(
    folder: str | os.PathLike,
    method: str,
    attn: str = "sdpa",
    checkpointing: bool = False,
    *,
    dtype: Any = None,
    r: int = 8,
    target_modules: Any = TARGETS,
) -> Any:
    """The model `finetune.train_lora(method=...)` trains, loaded from `folder`: full fine-tuning
    (its own checkpointing), LoRA on a 16-bit base, or QLoRA on an NF4 base
    (`finetune.build_peft_model`); `dtype` is the base's (bf16 unless given)."""
    import torch
    from transformers import AutoModelForCausalLM

    from peftlab import finetune
    from peftlab.base_model import nf4_config

    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method={method!r}: unknown; choose one of full, lora, qlora")
    kwargs: dict[str, Any] = dict(dtype=dtype or torch.bfloat16, attn_implementation=attn)
    if method == "qlora":
        kwargs.update(quantization_config=nf4_config(), device_map="cpu")
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if method == "full":
        if checkpointing:
            model.config.use_cache = False
            model.activation_checkpointing_enable({"use_reentrant": False})
        return model
    return finetune.build_peft_model(
        model, method=method, r=r, target_modules=list(target_modules)
        if not isinstance(target_modules, str) else target_modules,
        gradient_checkpointing=checkpointing,
    )  # fmt: skip


def count(
    folder: str | os.PathLike,
    shape: dict[str, int] | str,
    method: str,
    precision: str,
    attn: str = "sdpa",
    checkpointing: bool = False,
    batch_size: int = 2,
    seq_len: int = 64,
    *,
    dtype: Any = None,
    r: int = 8,
    target_modules: Any = TARGETS,
) -> dict[str, Any]:
    """Bytes autograd saves for one training forward of the recipe (`measure`'s count, term by
    term, and its `total`) beside `memory.estimate(...).activations` as `estimate`."""
    from peftlab import measure, memory

    model = build(folder, method, attn, checkpointing, dtype=dtype, r=r,
                  target_modules=target_modules)  # fmt: skip
    counted = measure.saved_activation_bytes(model, batch_size, seq_len)
    estimate = memory.estimate(
        config(shape, attn), method=method, r=r, precision=precision, batch_size=batch_size,
        seq_len=seq_len, gradient_checkpointing=checkpointing, attn_implementation=attn,
        target_modules=None if method == "full" else target_modules,
    ).activations  # fmt: skip
    return {"counted": counted, "estimate": estimate}
