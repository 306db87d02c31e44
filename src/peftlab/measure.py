"""Measuring what the arithmetic predicts: bytes held by tensors, bytes on disk, wall time.

`peftlab.memory` computes training memory from a config alone; the functions here measure real
models (the tensors a training step leaves behind, weight files, forward latency), so a lesson
can put the prediction and the measurement side by side.
"""

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch


# --- bytes held in memory ---------------------------------------------------------------------
def held_bytes(model: Any, optimizer: Any = None) -> dict[str, int]:
    """Bytes actually held by a model's tensors (and an optimizer's state), grouped like Breakdown.

    Frozen and trainable parameters, `.grad` tensors, optimizer state tensors (the scalar `step`
    counters excluded), and the NF4 absmax constants of bitsandbytes 4-bit weights.
    """
    held = dict(
        frozen_weights=0,
        trainable_weights=0,
        gradients=0,
        optimizer_states=0,
        quantization_constants=0,
    )
    for param in model.parameters():
        key = "trainable_weights" if param.requires_grad else "frozen_weights"
        held[key] += _nbytes(param)
        if param.grad is not None:
            held["gradients"] += _nbytes(param.grad)
        quant_state = getattr(param, "quant_state", None)
        if quant_state is not None:
            held["quantization_constants"] += _nbytes(quant_state.absmax)
            if quant_state.nested:
                held["quantization_constants"] += _nbytes(quant_state.state2.absmax)
    if optimizer is not None:
        for state in optimizer.state.values():
            for name, value in state.items():
                if name != "step" and hasattr(value, "element_size"):
                    held["optimizer_states"] += _nbytes(value)
    return held


def train_step(
    model: Any, batch_size: int = 2, seq_len: int = 32, autocast: bool = False, seed: int = 0
) -> Any:
    """One forward, backward and AdamW step on random tokens; returns the optimizer.

    This is the smallest run after which every training tensor exists, so `held_bytes` can
    be compared with `estimate`. The model is put in train mode (bitsandbytes repacks 4-bit
    weights for CPU inference in eval mode).
    """
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    return optimizer


def _nbytes(tensor: Any) -> int:
    return tensor.nelement() * tensor.element_size()


# --- bytes on disk ----------------------------------------------------------------------------
def weights_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the weight files (*.safetensors) in a model or adapter folder."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def storage(base_dir: str | os.PathLike, adapter_dirs: Sequence[str | os.PathLike],
            merged_dir: str | os.PathLike) -> dict[str, int]:  # fmt: skip
    """Weight bytes on disk: one base + N adapters versus N merged copies of the model."""
    n = len(adapter_dirs)
    base, merged = weights_bytes(base_dir), weights_bytes(merged_dir)
    adapters = sum(weights_bytes(d) for d in adapter_dirs)
    return {"adapters": n, "base_bytes": base, "adapter_bytes": adapters,
            "base_plus_adapters_bytes": base + adapters, "merged_model_bytes": merged,
            "merged_models_bytes": n * merged}  # fmt: skip


# --- wall time --------------------------------------------------------------------------------
def median_ms(
    fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 0
) -> dict[str, float]:
    """Median wall time of each call, in milliseconds, timed round-robin: every round calls each
    function once, in order, so machine noise (another process, clock changes) hits all alike.
    The first `warmup` rounds are not counted."""
    if repeats <= 0:
        raise ValueError(f"repeats={repeats}: time at least one round")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def forward_ms(
    models: Mapping[str, torch.nn.Module],
    batch: Mapping[str, torch.Tensor],
    repeats: int = 20,
    warmup: int = 2,
) -> dict[str, float]:
    """Median forward latency (ms) per model over the batch, without gradients (`median_ms`)."""
    with torch.no_grad():
        return median_ms({name: partial(model, **batch) for name, model in models.items()},
                         repeats, warmup)  # fmt: skip
