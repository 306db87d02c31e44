"""What LoRA costs per step: forward+backward time of peftlab's LoRALinear, peft's lora.Linear
and a frozen nn.Linear, and inference latency with the adapter merged or not.

    .venv/bin/python benchmarks/lora_overhead.py [--quick] [--out FILE]

Measurements are interleaved (one of each per round) and the median is reported, so a busy
machine slows all columns alike instead of whichever one ran last.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import LoraConfig
from peft.tuners.lora import Linear as PeftLoraLinear
from torch import nn

from peftlab import seed_everything
from peftlab.atomic import atomic_write_text
from peftlab.lora import LoRALinear
from peftlab.measure import median_ms

FULL_SIZES = [1024, 4096]
QUICK_SIZES = [128, 256]
FULL_TOKENS = (4, 128)
QUICK_TOKENS = (2, 16)


@dataclass
class Row:
    size: int
    frozen_ms: float
    ours_ms: float
    peft_ms: float
    unmerged_ms: float
    merged_ms: float

    @property
    def ours_over_peft(self) -> float:
        return self.ours_ms / self.peft_ms


def _train_step(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return step


def _infer(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            layer(x)

    return forward


def measure(size: int, tokens: tuple[int, int], r: int, rounds: int, warmup: int) -> Row:
    """Time one size x size layer three ways (training) and two ways (inference)."""
    seed_everything(0)
    frozen = nn.Linear(size, size, bias=False).requires_grad_(False)
    ours = LoRALinear(copy.deepcopy(frozen), r=r, alpha=2 * r)
    config = LoraConfig(r=r, lora_alpha=2 * r)
    theirs = PeftLoraLinear(copy.deepcopy(frozen), "default", config=config, r=r, lora_alpha=2 * r)
    for layer in (ours.lora_B, theirs.lora_B["default"]):
        nn.init.normal_(layer.weight, std=0.01)
    # Activations coming from earlier layers need gradients, so every layer pays for dL/dx.
    x = torch.randn(*tokens, size, requires_grad=True)
    train = median_ms(
        {
            "frozen": _train_step(frozen, x),
            "ours": _train_step(ours, x),
            "peft": _train_step(theirs, x),
        },
        rounds,
        warmup,
    )
    merged = copy.deepcopy(ours)
    merged.merge()
    infer = median_ms(
        {"unmerged": _infer(ours, x.detach()), "merged": _infer(merged, x.detach())},
        rounds,
        warmup,
    )
    return Row(
        size, train["frozen"], train["ours"], train["peft"], infer["unmerged"], infer["merged"]
    )


def format_table(rows: list[Row], tokens: tuple[int, int], r: int) -> str:
    """A markdown table of the measurements, with the setting in its caption."""
    batch, seq = tokens
    lines = [
        f"LoRA overhead on CPU ({torch.get_num_threads()} threads), r = {r}, "
        f"batch {batch} x {seq} tokens, fp32, median ms",
        "",
        "| layer | frozen Linear fwd+bwd | ours fwd+bwd | peft fwd+bwd | ours / peft "
        "| unmerged inference | merged inference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.size} x {row.size} | {row.frozen_ms:.2f} | {row.ours_ms:.2f} "
            f"| {row.peft_ms:.2f} | {row.ours_over_peft:.2f} | {row.unmerged_ms:.2f} "
            f"| {row.merged_ms:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes, tokens = (QUICK_SIZES, QUICK_TOKENS) if args.quick else (FULL_SIZES, FULL_TOKENS)
    rounds = args.rounds or (3 if args.quick else 15)
    rows = [measure(size, tokens, args.rank, rounds, warmup=2) for size in sizes]
    table = format_table(rows, tokens, args.rank)
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
