"""Inference latency of the base model, the base + LoRA adapter (unmerged) and the merged model.

    .venv/bin/python benchmarks/merge_latency.py [--quick] [--out FILE] [--model NAME]

An unmerged adapter adds two small matmuls (x A^T, then B^T) to every adapted layer; merging
folds them into W, so the merged model should cost what the base costs, within noise. The
adapter has random non-zero weights (latency does not depend on what it learned). Models are
timed in interleaved rounds and the median is reported, so machine noise hits all alike.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import sys
from functools import partial

import torch
from peft import LoraConfig, get_peft_model

from peftlab import base_model, measure, merging, seed_everything, support_data
from peftlab.atomic import atomic_write_text
from peftlab.generate import generate
from peftlab.quiet import muted


def models_to_time(model_name: str | None, r: int) -> tuple[dict[str, torch.nn.Module], object]:
    """{"base", "adapter (unmerged)", "merged"} models and the tokenizer."""
    seed_everything(0)
    with muted():
        base, tokenizer = base_model.load(model_name)
        config = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear",
                            init_lora_weights=False)  # fmt: skip
        adapted = get_peft_model(base_model.load(model_name)[0], config).eval()
    return {"base": base, "adapter (unmerged)": adapted,
            "merged": merging.merged_copy(adapted)}, tokenizer  # fmt: skip


def generate_ms(models, tokenizer, complaints, new_tokens: int, rounds: int) -> dict[str, float]:
    """Median wall time of greedy generation of `new_tokens` tokens per complaint, in ms."""
    calls = {
        n: partial(generate, model, tokenizer, complaints, max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens)
        for n, model in models.items()
    }  # fmt: skip
    return measure.median_ms(calls, rounds)


def format_table(forward, gen, *, batch: int, prompt_tokens: int, new_tokens: int, r: int) -> str:
    """A markdown table: forward and generation latency, and each relative to the base."""
    lines = [
        f"Merged vs unmerged LoRA on CPU ({torch.get_num_threads()} threads), r = {r} on every "
        f"linear layer, batch {batch}, {prompt_tokens} prompt tokens, fp32, median ms",
        "",
        f"| model | forward (prefill) | / base | generate {new_tokens} tokens | / base |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in forward:
        lines.append(
            f"| {n} | {forward[n]:.2f} | {forward[n] / forward['base']:.2f} "
            f"| {gen[n]:.1f} | {gen[n] / gen['base']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, for a smoke test")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--model", default=None, help="base model (default: the embedded one)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    parser.add_argument("--batch", type=int, default=8, help="complaints per batch (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.rank <= 0 or args.batch <= 0:
        raise ValueError(f"rank={args.rank}, batch={args.batch}: both must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    models, tokenizer = models_to_time(args.model, args.rank)
    complaints = support_data.heldout_complaints(args.batch)
    batch = merging.prompt_batch(tokenizer, complaints)
    repeats, rounds, new_tokens = (2, 1, 4) if args.quick else (20, 5, 32)
    forward = measure.forward_ms(models, batch, repeats=repeats * rounds)
    gen = generate_ms(models, tokenizer, complaints, new_tokens, rounds)
    table = format_table(forward, gen, batch=args.batch, prompt_tokens=batch["input_ids"].shape[1],
                         new_tokens=new_tokens, r=args.rank)  # fmt: skip
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
