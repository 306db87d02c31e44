"""Serving many LoRA adapters from one base model: hot-swapping, and mixed batches.

One base in memory, adapters of a few megabytes attached by name (peft's `load_adapter`), one
made active (`set_adapter`) or dropped (`delete_adapter`) in milliseconds. Requests for
different adapters can share ONE forward pass: peft takes `adapter_names`, one name per row, and
adds each row's own low-rank update B A x to the shared base output (`"__base__"` for a row that
wants the plain base). That is the idea multi-LoRA servers (vLLM, LoRAX, S-LoRA) run at scale with
custom kernels; here it runs on the course's model with peft, and is measured against the
alternative, one merged model per adapter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from peft import PeftModel

from peftlab import adapters, measure, merging
from peftlab.generate import generate
from peftlab.quiet import muted

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


def loaded(model: PeftModel) -> list[str]:
    """The names of the adapters attached to `model`."""
    return list(model.peft_config)


def _check(model: PeftModel, names: Sequence[str]) -> None:
    if not isinstance(model, PeftModel):
        raise ValueError("model is not a PeftModel: load adapters first (adapters.load_many)")
    unknown = sorted({n for n in names if n != BASE and n not in model.peft_config})
    if unknown:
        raise ValueError(
            f"adapter(s) {unknown} not loaded; loaded: {loaded(model)} (or {BASE!r} for the base)"
        )


def mixed_generate(
    model: PeftModel, tokenizer, complaints: Sequence[str], names: Sequence[str], **kwargs
) -> list[str]:
    """Replies to `complaints` in one batch, row i answered with adapter `names[i]`.

    peft runs the base layers once for the whole batch and each adapter's B A only on its rows.
    """
    if len(names) != len(complaints):
        raise ValueError(
            f"{len(names)} adapter names for {len(complaints)} complaints: give one name per row"
        )
    _check(model, names)
    model.eval()
    return generate(
        model, tokenizer, complaints, batch_size=len(complaints), adapter_names=list(names),
        **kwargs,
    )  # fmt: skip


def own_replies(
    model: PeftModel, tokenizer, complaints: Sequence[str], names: Sequence[str], **kwargs
) -> list[str]:
    """Replies to `complaints`, row i answered by switching to adapter `names[i]` alone
    (`set_adapter`, or the base with adapters disabled): one request at a time, the way a
    server without mixed batching would answer them."""
    if len(names) != len(complaints):
        raise ValueError(
            f"{len(names)} adapter names for {len(complaints)} complaints: give one name per row"
        )
    _check(model, names)
    active = model.active_adapter
    replies = []
    try:
        for complaint, name in zip(complaints, names, strict=True):
            if name == BASE:
                with model.disable_adapter():
                    replies += generate(model, tokenizer, [complaint], **kwargs)
            else:
                model.set_adapter(name)
                replies += generate(model, tokenizer, [complaint], **kwargs)
    finally:
        model.set_adapter(active)
    return replies


def hot_swap(
    model: PeftModel, tokenizer, folder: str | os.PathLike, name: str, complaints: Sequence[str]
) -> dict:
    """Load an adapter into a running model, answer with it, and remove it again; the bytes the
    model holds before, with, and after the adapter (`measure.held_bytes`)."""
    if name in model.peft_config or name == BASE:
        raise ValueError(f"adapter name {name!r} is taken; choose another name")
    before = _held(model)
    active = model.active_adapter
    adapters.check_adapter_fits(model, folder)
    with muted():
        model.load_adapter(str(folder), adapter_name=name)
    model.set_adapter(name)
    with_adapter = _held(model)
    replies = generate(model, tokenizer, complaints)
    model.set_adapter(active)
    model.delete_adapter(name)
    return {"replies": replies, "before": before, "with": with_adapter, "after": _held(model)}


def _held(model: torch.nn.Module) -> int:
    held = measure.held_bytes(model)
    return held["frozen_weights"] + held["trainable_weights"]


def memory_bytes(model: PeftModel, names: Sequence[str]) -> dict[str, int]:
    """Bytes held in memory: one base with the adapters `names` attached, against one merged
    model per adapter (each merged copy measured, `merging.merged_copy`)."""
    _check(model, names)
    shared = _held(model)
    adapter_bytes = sum(
        p.numel() * p.element_size()
        for n, p in model.named_parameters()
        if any(f".{a}." in n for a in names)
    )
    merged = 0
    active = model.active_adapter
    for name in names:
        model.set_adapter(name)
        merged += _held(merging.merged_copy(model))
    model.set_adapter(active)
    return {
        "adapters": len(names),
        "base_bytes": shared - adapter_bytes,
        "adapter_bytes": adapter_bytes,
        "shared_bytes": shared,
        "merged_bytes": merged,
    }


def latency_ms(
    model: PeftModel,
    tokenizer,
    complaints: Sequence[str],
    names: Sequence[str],
    repeats: int = 10,
) -> dict[str, float]:
    """Median time (ms) of one forward pass over `complaints`, row i for adapter `names[i]`:
    one mixed batch on the shared base; one batch per adapter on the shared base
    (`set_adapter` between them); one batch per adapter, each on its own merged model."""
    _check(model, names)
    if BASE in names:
        raise ValueError(f"{BASE!r}: time adapters only (a merged model per adapter)")
    groups = {name: [i for i, n in enumerate(names) if n == name] for name in dict.fromkeys(names)}
    batch = merging.prompt_batch(tokenizer, list(complaints))
    rows = {name: {k: v[idx] for k, v in batch.items()} for name, idx in groups.items()}
    active = model.active_adapter
    merged = {}
    for name in groups:
        model.set_adapter(name)
        merged[name] = merging.merged_copy(model).eval()
    model.set_adapter(active)
    model.eval()

    def mixed():
        model(**batch, adapter_names=list(names))

    def swapped():
        for name, part in rows.items():
            model.set_adapter(name)
            model(**part)

    def separate():
        for name, part in rows.items():
            merged[name](**part)

    with torch.no_grad():
        timed = measure.median_ms(
            {"one base, one mixed batch": mixed, "one base, set_adapter per adapter": swapped,
             "one merged model per adapter": separate},
            repeats, warmup=2,
        )  # fmt: skip
    model.set_adapter(active)
    return timed


def adapter_folders(folders: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """The folders as paths, each checked to hold a peft adapter."""
    out = {}
    for name, folder in folders.items():
        if not (Path(folder) / "adapter_config.json").is_file():
            raise ValueError(f"{folder}: no adapter_config.json; give a folder saved by peft")
        out[name] = Path(folder)
    return out
