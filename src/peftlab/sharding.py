"""Training memory per device when N data-parallel devices share the work (DDP, ZeRO, FSDP).

`memory.estimate` gives the bytes one device needs to train a model alone, term by term (a
`memory.Breakdown`). Data parallelism runs N copies of that training step on N devices, each on
its own micro-batch, and then differs in what each device keeps (ZeRO, Rajbhandari et al.,
arXiv 1910.02054, section 5 and Figure 1):

| sharding | each device keeps | ZeRO's name |
|---|---|---|
| `ddp` | everything: weights, gradients, optimizer state | baseline |
| `zero1` | 1/N of the optimizer state (and the fp32 master weights it updates) | P_os |
| `zero2` | ... and 1/N of the gradients | P_os+g |
| `zero3` | ... and 1/N of the weights (gathered layer by layer when needed) | P_os+g+p |
| `fsdp` | the same as `zero3` (PyTorch FSDP's FULL_SHARD) | P_os+g+p |

Activations are never divided: every device runs the forward and backward pass of its own
micro-batch (`batch_size` in `memory.estimate` is the per-device micro-batch). The model-state
terms are divided exactly as the paper's Figure 1 divides them: with K = 12 bytes of optimizer
state per parameter (fp32 master weights, momentum, variance) and 2 + 2 bytes of 16-bit weights
and gradients, a 7.5B model on 64 devices needs 120 GB, 31.4 GB, 16.6 GB and 1.9 GB per device.

What the formula leaves out, as the paper's figure does: ZeRO-3 and FSDP gather whole units
(a decoder layer each) on every device while they compute with them, and FSDP prefetches the
next one; communication buffers; and the framework's own memory (the CUDA context).
`gathered_bytes` counts the first of these from the size of one unit, as torch documents FSDP's
backward prefetch (`torch.distributed.fsdp.BackwardPrefetch`): with `BACKWARD_PRE` it holds,
at its peak, the current unit's parameters, the next unit's, and the current unit's gradient,
all unsharded.

The function works on any dataclass with Breakdown's fields (`dataclasses.replace`), so this
module needs nothing from `memory`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "fsdp")
# Which Breakdown terms each strategy divides over the devices.
# `pageable` (memory.Breakdown: the part of optimizer_states a paged optimizer may move to CPU
# RAM) is divided with the optimizer states it is part of.
OPTIMIZER_TERMS = ("optimizer_states", "master_weights", "pageable")
GRADIENT_TERMS = ("gradients",)
WEIGHT_TERMS = ("frozen_weights", "trainable_weights", "quantization_constants")
SHARDED: dict[str, tuple[str, ...]] = {
    "ddp": (),
    "zero1": OPTIMIZER_TERMS,
    "zero2": OPTIMIZER_TERMS + GRADIENT_TERMS,
    "zero3": OPTIMIZER_TERMS + GRADIENT_TERMS + WEIGHT_TERMS,
    "fsdp": OPTIMIZER_TERMS + GRADIENT_TERMS + WEIGHT_TERMS,
}
ZERO_NAMES = {"ddp": "baseline", "zero1": "P_os", "zero2": "P_os+g", "zero3": "P_os+g+p",
              "fsdp": "P_os+g+p"}  # fmt: skip

# Unsharded units FSDP holds at its peak in the backward pass, by `backward_prefetch`
# (torch.distributed.fsdp.BackwardPrefetch's docstring): BACKWARD_PRE the current parameters,
# the next ones and the current gradient; BACKWARD_POST the next parameters and the current
# gradient; no prefetch the current parameters and gradient.
PEAK_UNITS = {"BACKWARD_PRE": 3, "BACKWARD_POST": 2, None: 2}

B = TypeVar("B")


def check(devices: Any, sharding: Any) -> None:
    """ValueError unless `devices` is a positive integer and `sharding` one of STRATEGIES."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
        raise ValueError(f"devices={devices!r}: the number of devices must be a positive integer")
    if sharding not in STRATEGIES:
        raise ValueError(f"sharding={sharding!r}: unknown; choose one of {', '.join(STRATEGIES)}")


def per_device(breakdown: B, devices: int = 1, sharding: str = "ddp") -> B:
    """The bytes each of `devices` data-parallel devices holds when training with `sharding`:
    the sharded terms divided by the number of devices (rounded up: a device holds whole
    bytes), the others as they are. One device, or `ddp`, returns the same numbers."""
    check(devices, sharding)
    fields = {f.name for f in dataclasses.fields(breakdown)}
    return dataclasses.replace(
        breakdown,
        **{
            term: math.ceil(getattr(breakdown, term) / devices)
            for term in SHARDED[sharding]
            if term in fields
        },
    )


def model_states(breakdown: Any) -> int:
    """Everything but the activations: weights, gradients, optimizer state, constants (what
    ZeRO calls the model states)."""
    return breakdown.total - breakdown.activations


def min_devices(breakdown: Any, sharding: str, capacity: int, limit: int = 4096) -> int | None:
    """The fewest devices of `capacity` bytes on which each device's share fits, or None when no
    number up to `limit` does (DDP never shards, so more devices do not help it)."""
    if capacity <= 0:
        raise ValueError(f"capacity={capacity}: give a device's memory in bytes")
    for n in range(1, limit + 1):
        if per_device(breakdown, n, sharding).total <= capacity:
            return n
        if sharding == "ddp":
            return None
    return None


def gathered_bytes(unit_bytes: int, backward_prefetch: str | None = "BACKWARD_PRE") -> int:
    """Bytes FSDP holds unsharded at its peak beside each device's shard: `PEAK_UNITS` copies of
    one unit (its parameters or their gradient, `unit_bytes` each, in the dtype FSDP gathers).
    A memory estimate that divides everything by N leaves these out."""
    if backward_prefetch not in PEAK_UNITS:
        choices = ", ".join(map(str, PEAK_UNITS))
        raise ValueError(f"backward_prefetch={backward_prefetch!r}: choose one of {choices}")
    if unit_bytes < 0:
        raise ValueError(f"unit_bytes={unit_bytes}: give one unit's size in bytes")
    return PEAK_UNITS[backward_prefetch] * unit_bytes
