"""How fast is NF4 written in plain PyTorch? peftlab.nf4 against bitsandbytes on the CPU.

    .venv/bin/python benchmarks/nf4_speed.py [--quick] [--out FILE]

Both sides quantize the same fp32 weight to NF4 (blocksize 64, with and without double
quantization) and dequantize it back; the script checks that the bytes agree before timing.
Calls are interleaved and the median reported, so a busy machine slows both columns alike.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import sys

import bitsandbytes.functional as bnbf
import torch

from peftlab import nf4, seed_everything
from peftlab.atomic import atomic_write_text
from peftlab.measure import median_ms

FULL_SHAPES = [(1024, 1024), (4096, 4096)]
QUICK_SHAPES = [(256, 256), (1024, 1024)]


def measure(shape: tuple[int, int], rounds: int) -> list[tuple[str, float, float]]:
    """(operation, peftlab ms, bitsandbytes ms) for one weight shape."""
    seed_everything(0)
    w = torch.randn(shape) * 0.02
    packed, absmax = nf4.quantize_nf4(w)
    bnb_packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    if not torch.equal(packed, bnb_packed.reshape(-1)):
        raise RuntimeError(f"shape={shape}: peftlab and bitsandbytes disagree; run the tests")
    _, state_dq = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    dq = nf4.double_quantize(absmax)

    fns = {
        "ours quantize": lambda: nf4.quantize_nf4(w),
        "bnb quantize": lambda: bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4"),
        "ours quantize+dq": lambda: nf4.double_quantize(nf4.quantize_nf4(w)[1]),
        "bnb quantize+dq": lambda: bnbf.quantize_4bit(
            w, blocksize=64, quant_type="nf4", compress_statistics=True
        ),
        "ours dequantize": lambda: nf4.dequantize_nf4(packed, absmax, shape),
        "bnb dequantize": lambda: bnbf.dequantize_4bit(bnb_packed, state),
        "ours dequantize+dq": lambda: nf4.dequantize_nf4(packed, nf4.double_dequantize(*dq), shape),
        "bnb dequantize+dq": lambda: bnbf.dequantize_4bit(bnb_packed, state_dq),
    }
    ms = median_ms(fns, rounds, warmup=1)
    ops = ["quantize", "quantize+dq", "dequantize", "dequantize+dq"]
    return [(op, ms[f"ours {op}"], ms[f"bnb {op}"]) for op in ops]


def table(rows: list[tuple[tuple[int, int], str, float, float]]) -> str:
    lines = [
        f"NF4 on the CPU ({torch.get_num_threads()} threads), blocksize 64, median ms",
        "",
        "| weight | operation | peftlab.nf4 | bitsandbytes | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for shape, op, ours, bnb in rows:
        weight = f"{shape[0]}x{shape[1]}"
        lines.append(f"| {weight} | {op} | {ours:.2f} | {bnb:.2f} | {ours / bnb:.1f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per call")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    rounds = args.rounds or (3 if args.quick else 7)
    if rounds < 1:
        raise SystemExit(f"--rounds={rounds}: time at least one round")
    torch.compiler.set_stance("force_eager")  # bnb's PyTorch fallback would compile per shape
    rows = [(shape, *row) for shape in shapes for row in measure(shape, rounds)]
    text = table(rows)
    sys.stdout.write(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
