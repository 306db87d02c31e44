"""The PEFT family side by side on one task: lesson 07's protocol at full scale.

    .venv/bin/python benchmarks/peft_methods.py [--quick] [--out FILE] [--model NAME]
        [--methods LoRA,DoRA,...] [--steps N] [--batch N] [--seeds 0,1,2] [--lr-factors 0.3,1,3]

Every method (`peftlab.peft_methods.METHODS`: the thirteen of lesson 07 and more that peft 0.21
ships) is trained through peft on the same fine-tune examples, steps and batch; its learning rate
is chosen from a grid by validation loss on a split of the fine-tune set, then it is trained with
every seed and scored on held-out complaints with the course rubric. Prints (and writes with
--out) a markdown table headed by the date, library versions and machine. The lesson quotes the
smaller grid of `lesson07.results()`; this script is the full grid (minutes per method on a
laptop CPU). Runs on the CPU, on one thread, as the lesson does.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import os
import sys
import tempfile

from peftlab import measure, peft_family, peft_methods
from peftlab.atomic import atomic_write_text
from peftlab.lessons import lesson07_peft_methods as lesson07
from peftlab.seed import one_thread

FULL = peft_family.FamilyBudget(steps=60, lr_factors=(1 / 3, 1.0, 3.0, 10.0), n_heldout=32)
QUICK = peft_family.FamilyBudget(steps=4, seeds=(0,), lr_factors=(1.0,), n_heldout=2,
                             max_new_tokens=8, timing_repeats=1)  # fmt: skip


def report(results: dict, model: str) -> str:
    """The protocol, both tables and the methods peft could not train, as markdown."""
    return "\n".join(
        [
            f"PEFT methods on {model}: {lesson07.protocol_text(results['protocol'])}",
            f"({measure.provenance()})",
            "",
            lesson07.results_table(results),
            "",
            lesson07.costs_table(results),
            "",
            lesson07.lr_table(results),
            "",
            f"Not trained: {lesson07.unsupported_text(results)}",
            "",
        ]
    )


def _numbers(text: str, kind: type) -> tuple:
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{text!r}: give comma-separated numbers, e.g. 0,1,2") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LoRA and IA3, 4 steps: a smoke test")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    parser.add_argument("--model", default=None, help="any causal LM (default: the embedded one)")
    parser.add_argument("--methods", default=",".join(peft_methods.METHODS),
                        help="comma-separated method names (default: all)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help=f"default {FULL.steps}")
    parser.add_argument("--batch", type=int, default=None, help=f"default {FULL.batch_size}")
    parser.add_argument("--seeds", default=None, help="default 0,1,2")
    parser.add_argument("--lr-factors", default=None, help="grid around each method's base lr")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="methods trained at a time, one process and thread each "
                             "(default: 2 on two or more cores)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.workers < 1:
        print(f"peft_methods: --workers {args.workers}: give at least 1", file=sys.stderr)
        return 2
    try:
        protocol = QUICK if args.quick else FULL
        changes = {}
        if args.steps is not None:
            changes["steps"] = args.steps
        if args.batch is not None:
            changes["batch_size"] = args.batch
        if args.seeds is not None:
            changes["seeds"] = _numbers(args.seeds, int)
        if args.lr_factors is not None:
            changes["lr_factors"] = _numbers(args.lr_factors, float)
        protocol = peft_family.FamilyBudget(**{**protocol.__dict__, **changes})
        methods = ["LoRA", "IA3"] if args.quick else [m.strip() for m in args.methods.split(",")]
        peft_methods.check_methods(methods)
        if peft_methods.REFERENCE not in methods:
            raise ValueError(f"--methods must include {peft_methods.REFERENCE}: ratios use it")
    except ValueError as err:
        print(f"peft_methods: {err}", file=sys.stderr)
        return 2
    with one_thread(), tempfile.TemporaryDirectory() as scratch:
        results = peft_family.compare_family(
            protocol, methods, args.model, scratch,
            progress=lambda line: print(line, file=sys.stderr, flush=True), workers=args.workers,
        )  # fmt: skip
    text = report(results, args.model or "the embedded model")
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
