"""Measuring what the arithmetic predicts: bytes held by tensors, bytes on disk, wall time.

`peftlab.memory` computes training memory from a config alone; the functions here measure real
models (the tensors a training step leaves behind, the activations autograd saves for backward,
weight files, forward latency), so a lesson can put the prediction and the measurement side by
side.
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


# --- bytes autograd keeps for the backward pass -------------------------------------------------
def saved_activation_bytes(
    model: Any, batch_size: int = 1, seq_len: int = 128, autocast: bool = False, seed: int = 0
) -> dict[str, int]:
    """Bytes of activations a training forward keeps for backward, counted, not estimated.

    One forward pass (train mode, random tokens as inputs and labels) runs under
    `torch.autograd.graph.saved_tensors_hooks`, which sees every tensor autograd saves for
    backward. A tensor counts once per storage (views such as a transposed copy of the same
    buffer share one), at the storage's full size; storages of parameters and buffers (a
    frozen weight saved for the input gradient, the rotary tables) are weights, not activations.

    Gradient checkpointing (transformers' per-layer `_gradient_checkpointing_func`) keeps no
    saved tensors inside a layer; it keeps the layer's inputs and recomputes the layer during
    backward. Those inputs are counted as `checkpoint_inputs`, and the largest set of tensors one
    layer saves while it is recomputed (counted by running it once more with the hooks on) as
    `recompute`: the backward pass holds all kept tensors plus one recomputed layer.

    Returns bytes: `layers` (saved inside the decoder layers), `other` (embeddings, final norm,
    output head, loss), `checkpoint_inputs`, `recompute`, and `total`, their sum.
    """
    import functools

    torch.manual_seed(seed)
    model.train()
    weights = {t.untyped_storage().data_ptr() for t in _weight_tensors(model)}
    counted: dict[int, int] = {}
    kept: list[torch.Tensor] = []  # holding them keeps their storage from being reused
    totals = dict(layers=0, other=0, checkpoint_inputs=0, recompute=0)
    where = ["other"]

    def count(tensor: Any, key: str, seen: dict[int, int]) -> None:
        if isinstance(tensor, (tuple, list)):  # position_embeddings: (cos, sin)
            for item in tensor:
                count(item, key, seen)
            return
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in weights or ptr in counted or ptr in seen:
            return
        seen[ptr] = storage.nbytes()
        kept.append(tensor)
        totals[key] += storage.nbytes()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        count(tensor, where[-1], counted)
        return tensor

    layers = _decoder_layers(model)
    originals = {}

    def checkpointed(original: Callable, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        bound = [*args, *kwargs.values()]
        if isinstance(fn, functools.partial):
            bound += [*fn.args, *fn.keywords.values()]
        for value in bound:
            count(value, "checkpoint_inputs", counted)
        recompute: dict[int, int] = {}

        def pack_recomputed(tensor: torch.Tensor) -> torch.Tensor:
            count(tensor, "recompute", recompute)
            return tensor

        before = totals["recompute"]
        with (
            torch.enable_grad(),
            torch.autograd.graph.saved_tensors_hooks(pack_recomputed, lambda t: t),
        ):
            fn(*args, **kwargs)
        one_layer = totals["recompute"] - before
        totals["recompute"] = max(before, one_layer)
        return original(fn, *args, **kwargs)

    for layer in layers:
        original = getattr(layer, "_gradient_checkpointing_func", None)
        if getattr(layer, "gradient_checkpointing", False) and original is not None:
            originals[layer] = original
            layer._gradient_checkpointing_func = functools.partial(checkpointed, original)

    def enter(*_: Any) -> None:
        where.append("layers")

    def leave(*_: Any) -> None:
        where.pop()

    handles = [layer.register_forward_pre_hook(enter) for layer in layers]
    handles += [layer.register_forward_hook(leave) for layer in layers]
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = model(input_ids=ids, labels=ids).loss
    finally:
        for handle in handles:
            handle.remove()
        for layer, original in originals.items():
            layer._gradient_checkpointing_func = original
    del loss
    return {**totals, "total": sum(totals.values())}


def _weight_tensors(model: Any) -> list[torch.Tensor]:
    """Parameters, buffers and bitsandbytes' 4-bit quantization constants of `model`."""
    tensors = [*model.parameters(), *model.buffers()]
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        if state is not None:
            tensors.append(state.absmax)
            if state.nested:
                tensors += [state.state2.absmax, state.state2.code]
    return tensors


def _decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated transformer blocks (transformers' GradientCheckpointingLayer)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def provenance() -> str:
    """Date, library versions and machine, for the head of a benchmark's table."""
    import datetime
    import platform

    import peft
    import transformers

    cpu = platform.processor() or platform.machine()
    return (
        f"{datetime.date.today().isoformat()}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, peft {peft.__version__}; {cpu}, "
        f"{torch.get_num_threads()} thread(s)"
    )
