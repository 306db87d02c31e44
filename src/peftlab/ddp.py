"""The course's fine-tune as a script for `accelerate launch`: one command, one process or many.

    python -m peftlab.ddp --out runs/ddp
    accelerate launch --cpu --num_processes 2 -m peftlab.ddp --out runs/ddp
    accelerate launch --config_file configs/ddp-multi-gpu.yaml -m peftlab.ddp --out runs/ddp

The script is the same in every case: `finetune.train_lora` (peft + transformers' Trainer), which
under `accelerate launch` runs as distributed data parallel (DDP): every process holds the whole
model, trains on its own shard of each global batch, and the gradients are averaged (all-reduce)
before each optimizer step, so every replica takes the same step. `--global-batch-size` is the
batch of one optimizer step over all processes; each process takes its share of it.

Two things change with several processes, and this script handles both:
- only the main process writes the adapter (every replica holds the same weights; two writers
  would race for one folder);
- each process records, in `OUT/ranks/rank<k>.json`, which training examples went through its
  model at each step and the losses the Trainer logged, so a test can check the sharding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from peftlab.atomic import atomic_dir, atomic_write_text

RANKS_DIR = "ranks"
ADAPTER_DIR = "adapter"
# One process or several, the losses of a run agree to float32 rounding (the gradients are the
# same sums taken in another order); tests/test_ddp.py holds them to this relative tolerance.
LOSS_TOLERANCE = 1e-4
DEFAULTS = dict(steps=6, global_batch_size=8, examples=48, r=8, learning_rate=3e-3, seed=0)


def per_process_batch(global_batch_size: int, world_size: int) -> int:
    """Each process's share of a global batch; ValueError unless it divides evenly."""
    if global_batch_size <= 0 or world_size <= 0:
        raise ValueError(
            f"global_batch_size={global_batch_size}, world_size={world_size}: both must be "
            "positive integers"
        )
    if global_batch_size % world_size:
        raise ValueError(
            f"global batch {global_batch_size} does not split over {world_size} processes: "
            f"use a multiple of {world_size}"
        )
    return global_batch_size // world_size


def distinct_examples(n: int, seed: int = 0):
    """The first `n` distinct examples of the support fine-tune set (distinct, so that the
    examples a process trained on can be named from the tokens it saw)."""
    from peftlab import support_data

    if n <= 0:
        raise ValueError(f"examples={n}: train on at least one example")
    unique = list(
        {(e.complaint, e.reply): e for e in support_data.finetune_set(seed=seed)}.values()
    )
    if n > len(unique):
        raise ValueError(f"examples={n}: the fine-tune set has {len(unique)} distinct examples")
    return unique[:n]


def fsdp_qlora_config():
    """QLoRA's 4-bit config (`base_model.nf4_config`) with the packed 4-bit weights stored as
    bf16 tensors (`bnb_4bit_quant_storage`): FSDP flattens and shards only floating-point
    tensors of one dtype, so this is what lets it shard a 4-bit base with its bf16 norms and
    embeddings (configs/fsdp-qlora.yaml). Load the model with `dtype=torch.bfloat16` too."""
    import torch

    from peftlab.base_model import nf4_config

    config = nf4_config()
    config.bnb_4bit_quant_storage = torch.bfloat16
    return config


def _recorder(model, tokenizer, examples):
    """A forward pre-hook on the input embeddings that notes which examples each training
    forward pass saw (rows matched by their tokens, right padding removed)."""
    from peftlab.tuning import tokenize_example

    index = {
        tuple(tokenize_example(tokenizer, ex)["input_ids"]): i for i, ex in enumerate(examples)
    }
    pad = tokenizer.pad_token_id
    seen: list[list[int]] = []

    def hook(module, args):
        if not module.training:
            return
        rows = []
        for row in args[0].tolist():
            while row and row[-1] == pad:
                row.pop()
            rows.append(index.get(tuple(row), -1))
        seen.append(rows)

    handle = model.get_input_embeddings().register_forward_pre_hook(hook)
    return seen, handle


def train_this_process(
    out: str | os.PathLike,
    *,
    steps: int = DEFAULTS["steps"],
    global_batch_size: int = DEFAULTS["global_batch_size"],
    examples: int = DEFAULTS["examples"],
    r: int = DEFAULTS["r"],
    learning_rate: float = DEFAULTS["learning_rate"],
    seed: int = DEFAULTS["seed"],
    model_name: str | None = None,
) -> dict:
    """Fine-tune with LoRA on this process's share of every global batch; the main process
    saves the adapter to `out/adapter`. Returns this process's record (also written to
    `out/ranks/rank<k>.json`)."""
    import torch
    from accelerate import PartialState

    from peftlab import base_model, finetune
    from peftlab.compare import demo_targets
    from peftlab.quiet import muted
    from peftlab.seed import seed_everything

    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # processes on a CPU machine: the Trainer's accelerate state then uses gloo
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    per_process_batch(global_batch_size, 1)  # bad arguments fail before anything starts
    data = distinct_examples(examples, seed)
    # join the process group the launcher set up (the Trainer's own state does the same)
    state = PartialState(cpu=not torch.cuda.is_available())
    batch = per_process_batch(global_batch_size, state.num_processes)
    out = Path(out)
    seed_everything(seed)
    with muted():
        model, tokenizer = base_model.load(model_name)
    seen, handle = _recorder(model, tokenizer, data)
    with muted():
        result = finetune.train_lora(
            model, tokenizer, data, r=r, steps=steps, batch_size=batch,
            learning_rate=learning_rate, seed=seed, run_name=None, runs_dir=out,
            progress=False, target_modules=demo_targets(model_name),
        )  # fmt: skip
    handle.remove()
    wrote = state.is_main_process
    if wrote:
        with atomic_dir(out / ADAPTER_DIR) as tmp:
            result.model.save_pretrained(tmp)
    record = {
        "rank": state.process_index,
        "world_size": state.num_processes,
        "per_process_batch": batch,
        "global_batch_size": global_batch_size,
        "batches": seen,
        "losses": result.losses,
        "wrote_adapter": wrote,
    }
    (out / RANKS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RANKS_DIR / f"rank{state.process_index}.json", json.dumps(record))
    state.wait_for_everyone()
    return record


def read_records(out: str | os.PathLike) -> list[dict]:
    """Every process's record of a run, by rank."""
    files = sorted(Path(out, RANKS_DIR).glob("rank*.json"), key=lambda p: int(p.stem[4:]))
    return [json.loads(p.read_text()) for p in files]


def free_port() -> int:
    """A TCP port nobody listens on now, for the processes' rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(
    out: str | os.PathLike, processes: int = 2, args: Sequence[str] = (), port: int | None = None
) -> list[str]:
    """The command that runs this script on `processes` processes of this machine.

    One process: `python -m peftlab.ddp`. Several: `accelerate launch --multi_gpu`, whose
    launcher is torchrun; on a machine without GPUs the processes form a CPU group over gloo.
    (accelerate's `--cpu` launcher starts a single process unless given an MPI hostfile.)
    """
    if processes <= 0:
        raise ValueError(f"processes={processes}: run at least one process")
    script = ["-m", "peftlab.ddp", "--out", str(out), *args]
    if processes == 1:
        return [sys.executable, *script]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
        "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(port or free_port()), *script,
    ]  # fmt: skip


def run(
    out: str | os.PathLike, processes: int = 2, args: Sequence[str] = (), timeout: float = 600
) -> list[dict]:
    """Run the script on `processes` local processes (one thread each, no GPU) and return
    every process's record; RuntimeError with the end of its stderr if it fails."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("ACCELERATE_USE_CPU", None)
    done = subprocess.run(
        launch_command(out, processes, args), env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{processes}-process run failed:\n{done.stderr[-3000:]}")
    return read_records(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m peftlab.ddp",
        description="LoRA fine-tune of the course model; the same script under accelerate launch.",
    )
    p.add_argument("--out", required=True, help="folder for the adapter and per-process records")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--global-batch-size", type=int, default=DEFAULTS["global_batch_size"],
                   help="examples per optimizer step, over all processes")  # fmt: skip
    p.add_argument("--examples", type=int, default=DEFAULTS["examples"])
    p.add_argument("--r", type=int, default=DEFAULTS["r"])
    p.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--model", default=None, help="hub id or folder (default: the embedded model)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        record = train_this_process(
            args.out, steps=args.steps, global_batch_size=args.global_batch_size,
            examples=args.examples, r=args.r, learning_rate=args.learning_rate, seed=args.seed,
            model_name=args.model,
        )  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if record["wrote_adapter"]:
        losses = ", ".join(f"{loss:.4f}" for _, loss in record["losses"])
        print(f"{record['world_size']} process(es), losses {losses}; adapter in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
