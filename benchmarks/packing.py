"""Training throughput with and without padding-free packing (DataCollatorWithFlattening).

    .venv/bin/python benchmarks/packing.py [--quick] [--out FILE] [--batch 16] [--threads N]

Each batch is timed forward + backward through the embedded model with LoRA on every linear
layer: once right-padded to its longest example (`tuning.pad_batch`), once flattened into one
row (`packing.packed_batch`). Tokens per second counts real tokens only, so the padded run pays
for its pad tokens. Two data sets: the shipped examples/support.jsonl (replies of similar length,
little padding) and the same support chats with every fourth one a long multi-turn chat (the
spread of lengths real data has). The best of several passes is reported.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import datetime
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

import torch

from peftlab import base_model, chat_records, finetune, packing, support_data
from peftlab.atomic import atomic_write_text
from peftlab.generate import context_length
from peftlab.quiet import muted
from peftlab.seed import seed_everything

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "support.jsonl"


def mixed_records(n: int = 64) -> list[chat_records.Record]:
    """Support chats where every fourth is a long conversation (six earlier turns)."""
    records = []
    for i, ex in enumerate(support_data.finetune_set(n, seed=2)):
        turns = [{"role": "user", "content": support_data.format_prompt(ex.complaint)},
                 {"role": "assistant", "content": ex.reply}]  # fmt: skip
        if i % 4 == 0:
            turns = turns * 4
        records.append(chat_records.Record(tuple(turns)))
    return records


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s)"


def versions() -> str:
    return ", ".join(
        f"{lib} {importlib.metadata.version(lib)}" for lib in ("torch", "transformers", "peft")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pass, for a smoke test")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--batch", type=int, default=16, help="examples per batch (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.batch <= 0:
        raise ValueError(f"--batch {args.batch}: must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    with muted():
        model, tokenizer = base_model.load()
        model = finetune.build_peft_model(model, r=8, alpha=16, target_modules="all-linear")
    repeats = 1 if args.quick else 5
    sets = {
        "examples/support.jsonl": chat_records.read_jsonl(EXAMPLES),
        "support + long chats": mixed_records(),
    }
    lines = [
        f"Padding-free packing, forward + backward, LoRA r=8 on every linear layer, batch "
        f"{args.batch}, fp32; {datetime.date.today().isoformat()}; {versions()}; {machine()}",
        "",
        "| data | examples | real tokens | computed padded | tokens/s padded "
        "| tokens/s packed | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, records in sets.items():
        features = chat_records.encode(tokenizer, records, context_length(model))
        runs = {
            pack: packing.tokens_per_second(
                model, features, tokenizer.pad_token_id, packing=pack,
                batch_size=args.batch, repeats=repeats,
            )
            for pack in (False, True)
        }  # fmt: skip
        padded, packed = runs[False], runs[True]
        lines.append(
            f"| {name} | {len(features)} | {padded['real_tokens']:,} "
            f"| {padded['computed_tokens']:,} | {padded['tokens_per_s']:,.0f} "
            f"| {packed['tokens_per_s']:,.0f} "
            f"| {packed['tokens_per_s'] / padded['tokens_per_s']:.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
