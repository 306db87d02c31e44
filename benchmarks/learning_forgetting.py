"""What fine-tuning learns and forgets: lesson 08's grids, wider and longer.

    .venv/bin/python benchmarks/learning_forgetting.py [--quick] [--out FILE] [--model NAME]
        [--steps N] [--batch N] [--seeds 0,1,2] [--full-lrs 3e-4,...] [--lora-lrs 1e-3,...]

Full fine-tuning and LoRA (rank 8, all linear layers) over a log-spaced learning-rate grid;
learning (validation loss on the support task, held-out rubric score) and forgetting (rise of the
loss on held-out pretraining text) along training for full fine-tuning and LoRA at ranks 1, 8, 64
and on q,v only; alpha/r against rsLoRA's alpha/sqrt(r) across ranks; attention-only LoRA at the
rank that matches all-linear r=8's parameter count (computed for `--model`); overfitting on a
small slice through transformers' Trainer with early stopping. Every result over every seed.
Prints (and writes with --out) markdown tables headed by the date, versions and machine. The
lesson runs `lesson08.results()`, a shorter run of the same grids; this is the full one. Runs on
the CPU, on one thread, as the lesson does.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import sys

from peftlab import forgetting, measure
from peftlab.atomic import atomic_write_text
from peftlab.lessons import lesson08_learning_forgetting as lesson08
from peftlab.seed import one_thread

FULL = forgetting.SweepBudget(steps=48, evals=(12, 24, 48), n_forget=96, n_val=40, n_heldout=32,
                           max_new_tokens=48)  # fmt: skip
FULL_LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
LORA_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
OVERFIT = {"n_examples": 8, "epochs": 20, "lr": 1e-2, "patience": 3}
QUICK = forgetting.SweepBudget(steps=2, seeds=(0,), evals=(2,), n_forget=4, n_heldout=2,
                            max_new_tokens=8)  # fmt: skip
QUICK_OVERFIT = {"n_examples": 4, "epochs": 2, "lr": 1e-2, "patience": 1}


def report(results: dict, model: str) -> str:
    """The protocol and every table of the lesson, as markdown."""
    grid, vertex = lesson08.lr_ratio(results)
    return "\n".join(
        [
            f"Learning and forgetting on {model}: {lesson08.protocol_text(results)}",
            f"({measure.provenance()})",
            "",
            "Learning rate (best LoRA / best full fine-tuning: "
            f"{grid:.1f}x on the grid, {vertex:.1f}x between grid points):",
            "",
            lesson08.lr_table(results),
            "",
            "Curves, each config at its rate:",
            "",
            lesson08.curves_table(results),
            "",
            "Scale rule across ranks, at LoRA's best rate:",
            "",
            lesson08.rank_rule_table(results),
            "",
            "Matched parameter budget:",
            "",
            lesson08.matched_table(results),
            "",
            f"Overfitting ({lesson08.overfit_text(results)}):",
            "",
            lesson08.overfit_table(results),
            "",
        ]
    )


def _numbers(text: str, kind: type) -> tuple:
    try:
        values = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{text!r}: give comma-separated numbers, e.g. 0,1,2") from None
    if not values:
        raise ValueError(f"{text!r}: give at least one number")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 steps, one seed: a smoke test")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    parser.add_argument("--model", default=None, help="any causal LM (default: the embedded one)")
    parser.add_argument("--steps", type=int, default=None, help=f"default {FULL.steps}")
    parser.add_argument("--batch", type=int, default=None, help=f"default {FULL.batch_size}")
    parser.add_argument("--seeds", default=None, help="default 0,1,2")
    parser.add_argument("--full-lrs", default=None, help="full fine-tuning's rate grid")
    parser.add_argument("--lora-lrs", default=None, help="LoRA's rate grid")
    args = parser.parse_args(argv)
    try:
        protocol = QUICK if args.quick else FULL
        changes: dict = {}
        if args.steps is not None:
            steps = args.steps
            changes.update(steps=steps, evals=tuple(sorted({max(1, steps // 4), max(1, steps // 2),
                                                             steps})))  # fmt: skip
        if args.batch is not None:
            changes["batch_size"] = args.batch
        if args.seeds is not None:
            changes["seeds"] = _numbers(args.seeds, int)
        protocol = forgetting.SweepBudget(**{**protocol.__dict__, **changes})
        full_lrs = _numbers(args.full_lrs, float) if args.full_lrs else FULL_LRS
        lora_lrs = _numbers(args.lora_lrs, float) if args.lora_lrs else LORA_LRS
        if args.quick:
            full_lrs, lora_lrs = full_lrs[:1], lora_lrs[:1]
        if min(full_lrs + lora_lrs) <= 0:
            raise ValueError("learning rates must be positive")
        overfit = QUICK_OVERFIT if args.quick else OVERFIT
        rank = forgetting.matched_rank(8, model_name=args.model)
        matched = forgetting.lora(rank, forgetting.ATTENTION)
    except ValueError as err:
        print(f"learning_forgetting: {err}", file=sys.stderr)
        return 2
    with one_thread():
        results = lesson08.run_grids(
            protocol, full_lrs, lora_lrs, overfit, matched, args.model,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )  # fmt: skip
    text = report(results, args.model or "the embedded model")
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
