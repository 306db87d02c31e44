"""Activation memory counted on the CPU beside peftlab.memory's estimate, at larger shapes.

    .venv/bin/python benchmarks/activations.py [--quick] [--out FILE]

For random Llamas of hidden size 1024 and 2048 at 1,024-2,048 tokens, each recipe (full
fine-tuning in bf16, LoRA r=8 on q_proj/v_proj of a bf16 base, QLoRA r=8 on q_proj/v_proj built
by `finetune.build_peft_model` as `train_lora` trains it), SDPA and eager attention, with and
without gradient checkpointing: `measure.saved_activation_bytes` counts the bytes autograd keeps
for backward (one forward pass; every storage once, weights excluded), and `memory.estimate`
predicts them from the config. Prints a markdown table headed by the date, library versions and
machine. About 6 minutes on one core (`--quick`: one shape at 1,024 tokens).
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile

import torch
import transformers

from peftlab import activation_counts, activation_memory, quiet
from peftlab.atomic import atomic_write_text

MIB = 2**20
SHAPES = activation_counts.LARGE_SHAPES
RUNS = {  # shape: (batch, seq) pairs
    "h1024 L4 a16": [(1, 1024)],
    "h1024 L2 a16": [(1, 2048)],
    "h2048 L2 a16 kv4": [(1, 1024)],
}
RECIPES = {"full bf16": ("full", "bf16"), "LoRA": ("lora", "mixed"), "QLoRA": ("qlora", "mixed")}


def header() -> str:
    """Date, library versions and machine, so a table says where it came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{datetime.date.today().isoformat()}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, peft {__import__('peft').__version__}, bitsandbytes "
        f"{__import__('bitsandbytes').__version__}; {cpu}, {torch.get_num_threads()} thread(s)"
    )


def child(args: argparse.Namespace) -> None:
    """Count and estimate one configuration; print JSON (each runs in its own process, so the
    allocator's high-water mark of one run does not carry into the next)."""
    shape, seq, attn, recipe, ckpt = args.child.split("|")
    seq, ckpt = int(seq), ckpt == "yes"
    method, precision = RECIPES[recipe]
    r = activation_counts.count(args.saved, shape, method, precision, attn, ckpt, 1, seq)
    korthikanti = activation_memory.korthikanti_bytes(activation_counts.config(shape), 1, seq, ckpt)
    print(json.dumps({"counted": r["counted"]["total"], "estimate": r["estimate"],
                      "korthikanti": korthikanti}))  # fmt: skip


def rows(quick: bool) -> list[list[str]]:
    out = []
    shapes = list(SHAPES)[:1] if quick else list(SHAPES)
    for shape in shapes:
        with tempfile.TemporaryDirectory() as folder:
            activation_counts.save_random(shape, folder)
            for (batch, seq), attn, recipe, ckpt in itertools.product(
                RUNS[shape], ("sdpa", "eager"), RECIPES, ("no", "yes")
            ):
                key = "|".join([shape, str(seq), attn, recipe, ckpt])
                cmd = [sys.executable, __file__, "--child", key, "--saved", folder]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{key}: exit {done.returncode}\n{done.stderr[-2000:]}")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                ratio = f"{100 * (r['estimate'] / r['counted'] - 1):+.2f}%"
                out.append([shape, f"{batch} x {seq:,}", attn, recipe, ckpt,
                            f"{r['counted'] / MIB:,.1f}", f"{r['estimate'] / MIB:,.1f}", ratio,
                            f"{r['korthikanti'] / MIB:,.1f}"])  # fmt: skip
                print(" | ".join(out[-1]), file=sys.stderr, flush=True)
    return out


def table(body: list[list[str]]) -> str:
    head = ["model", "tokens", "attention", "recipe", "checkpointing", "counted MiB",
            "estimate MiB", "estimate vs counted", "Korthikanti MiB"]  # fmt: skip
    lines = [
        "Activation memory: counted on the CPU (measure.saved_activation_bytes) beside",
        "memory.estimate(...).activations; Korthikanti et al.'s GPT formula for comparison.",
        header(),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 5 + ["---:"] * 4) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape at 1,024 tokens")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--saved", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet.silence()
    if args.child:
        child(args)
        return 0
    text = table(rows(args.quick))
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
