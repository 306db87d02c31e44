"""`peftlab memory`: how much memory training a model takes, term by term, and which GPUs fit it."""

import argparse
import json

GB = 10**9
GIB = 2**30


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "memory",
        help="training-memory breakdown (GB and GiB) and GPU fit for full, LoRA or QLoRA",
        description="Estimate the memory needed to fine-tune a model, term by term.",
    )
    p.add_argument("--model", default="llama-2-7b", help="preset name or path to a config.json")
    p.add_argument("--method", default="full", help="full, lora or qlora (default: full)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r (default: 8)")
    p.add_argument(
        "--targets",
        default=None,
        help="comma-separated module names or all-linear (default: peft's, q_proj,v_proj on Llama)",
    )
    p.add_argument("--precision", default="mixed", help="mixed, bf16 or fp32 (default: mixed)")
    p.add_argument(
        "--optimizer",
        default="adamw",
        help="adamw, adamw8bit, paged_adamw, paged_adamw8bit, sgd_momentum or sgd "
        "(default: adamw; paged states may move to CPU RAM: see 'GPU floor')",
    )
    p.add_argument(
        "--optimizer-precision",
        default=None,
        help="fp32 or bf16: dtype of Adam's moments (default: bf16 only when everything else is)",
    )
    p.add_argument("--attn-implementation", default="sdpa", help="sdpa or eager (default: sdpa)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on for qlora (as prepare_model_for_kbit_training does), off otherwise",
    )
    p.add_argument(
        "--no-double-quant", action="store_true", help="QLoRA without double quantization"
    )
    p.add_argument(
        "--no-prepare-kbit",
        action="store_true",
        help="QLoRA: keep embeddings/norms/head in 16 bits (the QLoRA paper's script) instead "
        "of peft's fp32 upcast",
    )
    p.add_argument(
        "--accounting", default="zero", help="zero (16 bytes/param) or hf (18) for full mixed"
    )
    p.add_argument(
        "--reference",
        default="none",
        help="DPO's frozen reference model: none (SFT), separate (a second copy of the base) or "
        "adapter-off (LoRA/QLoRA: the policy with its adapter off, no extra weights)",
    )
    p.add_argument("--devices", type=int, default=1, help="data-parallel devices (default: 1)")
    p.add_argument(
        "--sharding",
        default="ddp",
        help="with --devices: ddp, zero1, zero2, zero3 or fsdp; memory per device (default: ddp)",
    )
    p.add_argument("--compare", action="store_true", help="full, LoRA and QLoRA side by side")
    p.add_argument("--json", action="store_true", help="every term in bytes, plus total")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peftlab import memory

    config = memory.preset(args.model)
    methods = memory.METHODS if args.compare else (args.method,)
    results = {method: _one(memory, config, method, args) for method in methods}
    settings = _settings(args)
    if args.json:
        payload = {"model": str(args.model), "params": memory.count_params(config), **settings}
        if args.compare:
            payload["methods"] = results
        else:
            payload.update(results[args.method])
        print(json.dumps(payload, indent=2))
        return 0
    print(_header(memory, config, args, settings))
    print(_table(results))
    return 0


def _settings(args: argparse.Namespace) -> dict:
    return {
        "precision": args.precision,
        "optimizer": args.optimizer,
        "optimizer_precision": args.optimizer_precision or "default",
        "attn_implementation": args.attn_implementation,
        "prepare_kbit": not args.no_prepare_kbit,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "gradient_checkpointing": args.gradient_checkpointing,
        "rank": args.rank,
        "targets": args.targets or "default",
        "reference": args.reference,
    }


def _one(memory, config, method: str, args: argparse.Namespace) -> dict:
    """The breakdown, trainable count and GPU fit of one method."""
    from peftlab.presets import fits

    targets = _parse_targets(args.targets)
    breakdown = memory.estimate(
        config,
        method=method,
        r=args.rank,
        target_modules=targets,
        precision=args.precision,
        optimizer=args.optimizer,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        gradient_checkpointing=args.gradient_checkpointing,
        double_quant=not args.no_double_quant,
        accounting=args.accounting,
        optimizer_precision=args.optimizer_precision,
        attn_implementation=args.attn_implementation,
        prepare_kbit=not args.no_prepare_kbit,
        devices=args.devices,
        sharding=args.sharding,
        reference=args.reference,
    )
    if method == "full":
        trainable = memory.count_params(config)
    else:
        targets = targets or memory.default_targets(config)
        trainable = memory.lora_params(config, args.rank, targets)
    return {
        "method": method,
        "trainable_params": trainable,
        "bytes": breakdown.to_dict(),
        "pageable": breakdown.pageable,
        "gpu_floor": breakdown.gpu_floor,
        "fits": fits(breakdown.total),
    }


def _parse_targets(text: str | None) -> list[str] | str | None:
    if text is None:
        return None
    if text.strip().lower() == "all-linear":
        return "all-linear"
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--targets {text!r}: name modules like q_proj,v_proj or all-linear")
    return names


def _header(memory, config, args: argparse.Namespace, settings: dict) -> str:
    n = memory.count_params(config)
    ckpt = {
        True: ", gradient checkpointing",
        False: ", no gradient checkpointing",
        None: ", gradient checkpointing for qlora only",
    }[args.gradient_checkpointing]
    return (
        f"{args.model}: {n:,} parameters; {settings['precision']} precision, "
        f"{settings['optimizer']}, batch {args.batch_size} x {args.seq_len} tokens{ckpt}"
        f"{_per_device(args)}{_reference(args)}\n"
        f"(GB = 1e9 bytes, GiB = 2^30 bytes)\n"
    )


def _per_device(args: argparse.Namespace) -> str:
    if args.devices == 1:
        return ""
    return f"; per device of {args.devices}, {args.sharding} (batch per device)"


def _reference(args: argparse.Namespace) -> str:
    return {
        "none": "",
        "separate": "; DPO with a separate frozen reference model",
        "adapter-off": "; DPO with the adapter switched off as the reference",
    }.get(args.reference, "")


def _table(results: dict[str, dict]) -> str:
    """Rows of terms, one GB column per method, GiB for the total, then trainable share and fit."""
    from peftlab import memory, presets

    methods = list(results)
    width = 32
    head = "".join(f"{m + ' GB':>14}" for m in methods)
    lines = [f"{'term':<{width}}{head}"]
    for term in (*memory.TERMS, "total"):
        cells = "".join(f"{results[m]['bytes'][term] / GB:>14.3f}" for m in methods)
        lines.append(f"{term.replace('_', ' '):<{width}}{cells}")
    lines.append(
        f"{'total GiB':<{width}}"
        + "".join(f"{results[m]['bytes']['total'] / GIB:>14.3f}" for m in methods)
    )
    if any(results[m]["pageable"] for m in methods):
        lines.append(
            f"{'GPU floor GB (paged evicted)':<{width}}"
            + "".join(f"{results[m]['gpu_floor'] / GB:>14.3f}" for m in methods)
        )
    lines.append(
        f"{'trainable params':<{width}}"
        + "".join(f"{results[m]['trainable_params']:>14,}" for m in methods)
    )
    lines.append("")
    gpus = list(results[methods[0]]["fits"])
    for gpu in gpus:
        cells = "".join(f"{'fits' if results[m]['fits'][gpu] else 'no':>14}" for m in methods)
        lines.append(f"{gpu:<{width}}{cells}")
    no_bf16 = ", ".join(presets.NO_BF16)
    lines.append(f"(a card holds its nominal size in GiB; {no_bf16}: no bf16, use fp16 compute)")
    return "\n".join(lines)
