"""What each lever buys on the real model (SmolLM2-135M-Instruct, `peftlab models fetch smollm2`):
one LoRA step (r 8, every linear layer, AdamW) on a batch of the support set, and the demo's
generation, per setting: step time, tokens per second and peak memory.

    .venv/bin/python benchmarks/real_model.py [--device cpu|cuda] [--steps 3] [--out FILE]

Each setting runs in a fresh process (peak memory is a process's own), one at a time. The levers:
the output layer only on reply tokens (`finetune.reply_loss`: a vocabulary of 49,152 makes it
the largest single matmul), bf16 autocast (native on CPUs with AVX512-BF16 or AMX, emulated and
slow elsewhere; on a GPU, bf16 where supported), gradient checkpointing, the batch size, and for
generation the precision and whether LoRA is merged. On a lent GPU, `--device cuda` gives the
same table in one command.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

TRAIN = [  # (label, batch, precision, reply logits only, gradient checkpointing)
    ("fp32, full logits (naive)", 16, "fp32", False, False),
    ("fp32, reply logits", 16, "fp32", True, False),
    ("bf16, full logits", 16, "bf16", False, False),
    ("bf16, reply logits (the demo)", 16, "bf16", True, False),
    ("bf16, reply logits, checkpointing", 16, "bf16", True, True),
    ("bf16, reply logits, batch 8", 8, "bf16", True, False),
]
GENERATE = [  # (label, precision, merged)
    ("generate 24, fp32, LoRA unmerged", "fp32", False),
    ("generate 24, bf16, LoRA unmerged (the demo)", "bf16", False),
    ("generate 24, bf16, LoRA merged", "bf16", True),
]


def _peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(setting: dict) -> dict:
    import torch

    from peftlab import base_model, compare, finetune, support_data, tuning
    from peftlab.generate import generate

    device = setting["device"]
    model, tokenizer = base_model.load("smollm2", device=device)
    checkpointing = setting.get("checkpointing", False)
    wrapped = finetune.build_peft_model(
        model, target_modules="all-linear", gradient_checkpointing=checkpointing
    )
    precision = setting["precision"]
    if "batch" in setting:
        examples = support_data.finetune_set()[: setting["batch"]]
        features = [tuning.tokenize_example(tokenizer, e) for e in examples]
        batch = tuning.pad_batch(features, tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], 2e-3)
        wrapped.train()
        times = []
        for _ in range(setting["steps"] + 1):  # the first is a warm-up
            start = time.perf_counter()
            with finetune.autocast(precision, device):
                if setting["reply"]:
                    loss = finetune.reply_loss(wrapped, batch)
                else:
                    loss = wrapped(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        step = statistics.median(times[1:])
        tokens = int(batch["attention_mask"].sum())
        return {"seconds": step, "tokens_per_s": tokens / step, "peak_mb": _peak_mb(device),
                "tokens": tokens}  # fmt: skip
    wrapped.eval()
    if setting["merged"]:
        wrapped.merge_adapter()
    complaints = compare.sample_of(support_data.wild_complaints(), 24)
    start = time.perf_counter()
    with finetune.autocast(precision, device):
        replies = generate(wrapped, tokenizer, complaints)
    seconds = time.perf_counter() - start
    tokens = sum(len(tokenizer(r)["input_ids"]) for r in replies)
    return {"seconds": seconds, "tokens_per_s": tokens / seconds, "peak_mb": _peak_mb(device),
            "tokens": tokens}  # fmt: skip


def run_child(setting: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(setting)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{setting}: failed\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (median)")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from peftlab import finetune, models
    from peftlab.atomic import atomic_write_text
    from peftlab.measure import provenance

    models.require("smollm2")
    native = finetune.resolve_precision("auto", args.device) == "bf16"
    lines = [
        f"SmolLM2-135M-Instruct, LoRA r 8 on every linear layer; {provenance()}; "
        f"device {args.device}, bf16 {'native' if native else 'emulated (slow)'}",
        "",
        "| setting | batch x tokens | seconds | tokens/s | peak MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, batch, precision, reply, checkpointing in TRAIN:
        setting = {"device": args.device, "batch": batch, "precision": precision}
        setting |= {"reply": reply, "checkpointing": checkpointing, "steps": args.steps}
        got = run_child(setting)
        per = got["tokens"] // batch
        row = [f"step: {label}", f"{batch} x {per}", f"{got['seconds']:.2f}",
               f"{got['tokens_per_s']:.0f}", f"{got['peak_mb']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    for label, precision, merged in GENERATE:
        got = run_child({"device": args.device, "precision": precision, "merged": merged})
        lines.append(f"| {label} | 24 replies, {got['tokens']} tokens | {got['seconds']:.2f} | "
                     f"{got['tokens_per_s']:.0f} | {got['peak_mb']:.0f} |")  # fmt: skip
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        atomic_write_text(args.out, table + "\n")


if __name__ == "__main__":
    main()
