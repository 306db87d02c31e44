"""Peak process memory of one training step beside peftlab.memory's prediction.

Each method (full fp32, LoRA and QLoRA on a bf16 / NF4 base) runs in its own process on a
random ~100M-parameter Llama, so peaks do not mix. For each it prints:
- held: bytes of parameters, gradients, optimizer state and NF4 constants after the step
  (summed from the tensors), beside the predicted weights + gradients + optimizer terms;
- growth: how far the process's resident memory rose above its level before the step,
  beside the predicted gradients + optimizer + activations.
CPU kernels keep their own scratch buffers and the allocator keeps freed pages, so the peak is
a measurement to compare with, not an identity. Runs in about a minute on 2 cores.

    python benchmarks/memory_measured.py [--model random-llama-100m] [--batch-size 2]
        [--seq-len 128] [--out FILE]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MIB = 2**20
METHOD_PRECISION = {"full": "fp32", "lora": "mixed", "qlora": "mixed"}


def vm_kib() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in KiB (Linux)."""
    status = open("/proc/self/status").read()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) for key in ("VmRSS", "VmHWM")}


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(method: str, config, saved: str):
    """The model as `finetune.train_lora` builds it (QLoRA: prepare_model_for_kbit_training,
    fp32 embeddings/norms/head, gradient checkpointing on)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from peftlab import finetune
    from peftlab.base_model import nf4_config

    if method == "full":
        torch.manual_seed(0)
        return LlamaForCausalLM(config)
    if method == "lora":
        base = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.bfloat16)
    else:
        base = AutoModelForCausalLM.from_pretrained(
            saved, quantization_config=nf4_config(), device_map="cpu", dtype=torch.bfloat16
        )
    return finetune.build_peft_model(base, method=method, target_modules=["q_proj", "v_proj"])


def child(args: argparse.Namespace) -> None:
    """Build one method's model, take one step, print measured and predicted bytes as JSON."""
    import gc

    from peftlab import measure, memory, quiet

    quiet.silence()
    config = memory.preset(args.model)
    model = build(args.child, config, args.saved)
    gc.collect()
    reset_peak()
    before = vm_kib()["VmRSS"]
    optimizer = measure.train_step(model, batch_size=args.batch_size, seq_len=args.seq_len)
    growth = (vm_kib()["VmHWM"] - before) * 1024
    held = measure.held_bytes(model, optimizer)
    est = memory.estimate(
        config,
        method=args.child,
        target_modules=["q_proj", "v_proj"],
        precision=METHOD_PRECISION[args.child],
        batch_size=args.batch_size,
        seq_len=args.seq_len,
    )
    step_terms = est.gradients + est.optimizer_states + est.activations
    print(
        json.dumps(
            {
                "method": args.child,
                "held": sum(held.values()),
                "predicted_held": est.total - est.activations,
                "growth": growth,
                "predicted_growth": step_terms,
                "predicted_total": est.total,
            }
        )
    )


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"{args.model}, one AdamW step, batch {args.batch_size} x {args.seq_len} tokens (MiB)",
        "",
        "| method | held | predicted held | step growth | predicted grads+optim+activations |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        label = f"{row['method']} ({METHOD_PRECISION[row['method']]})"
        cells = [row[k] / MIB for k in ("held", "predicted_held", "growth", "predicted_growth")]
        lines.append(f"| {label} | " + " | ".join(f"{c:,.1f}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random-llama-100m")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--saved", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    import torch
    from transformers import LlamaForCausalLM

    from peftlab import memory, quiet

    quiet.silence()
    rows = []
    with tempfile.TemporaryDirectory() as saved:
        torch.manual_seed(0)
        LlamaForCausalLM(memory.preset(args.model)).save_pretrained(saved)
        for method in METHOD_PRECISION:
            cmd = [sys.executable, __file__, "--child", method, "--saved", saved]
            cmd += ["--model", args.model, "--batch-size", str(args.batch_size)]
            cmd += ["--seq-len", str(args.seq_len)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    text = table(rows, args)
    print(text)
    if args.out:
        from peftlab.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
