"""`peftlab train`: fine-tune a LoRA (or QLoRA) adapter on your own JSONL file."""

import argparse
import json
import sys
import warnings
from pathlib import Path

# finetune.TRAIN_METHODS, spelled out: importing finetune (peft, transformers) would slow every
# `peftlab` start; tests/test_cli_train.py checks the two agree.
TRAIN_METHODS = ("lora", "qlora")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune an adapter on a JSONL file of prompt/completion pairs or chat messages",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help='JSONL: {"prompt", "completion"} or {"messages": [...]} per line',
    )
    p.add_argument(
        "--model", help="hub id or local folder (default: $PEFT_LAB_MODEL or the embedded model)"
    )
    p.add_argument("--method", default="lora", help="lora (16/32-bit base) or qlora (4-bit NF4)")
    p.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=int, default=16, help="lora_alpha (default 16)")
    p.add_argument(
        "--target-modules",
        nargs="+",
        metavar="NAME",
        help="layers that get LoRA, e.g. q_proj v_proj, or all-linear "
        "(default: all-linear on the embedded model, peft's default otherwise)",
    )
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--steps", type=int, help="optimizer steps (default 40)")
    steps.add_argument("--epochs", type=float, help="passes over the training records")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=16, help="records per step (default 16)")
    p.add_argument(
        "--val-fraction",
        type=float,
        help="hold out this share of records, in (0, 0.5], for a validation loss",
    )
    p.add_argument(
        "--packing", action="store_true", help="padding-free batches (DataCollatorWithFlattening)"
    )
    p.add_argument("--out", type=Path, help="adapter folder (default runs/train/<data name>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(run=run)


def _targets(names: list[str] | None):
    if not names:
        return None
    return names[0] if names == ["all-linear"] else names


def run(args: argparse.Namespace) -> int:
    if args.method not in TRAIN_METHODS:
        raise ValueError(
            f"--method {args.method}: unknown method; choose one of {', '.join(TRAIN_METHODS)}"
        )
    if args.val_fraction is not None and not 0 < args.val_fraction <= 0.5:
        raise ValueError(
            f"--val-fraction {args.val_fraction}: must be in (0, 0.5], e.g. 0.1 holds out a tenth"
        )
    from peftlab import chat_records, own_data  # heavy imports only once the arguments are good

    records = chat_records.read_jsonl(args.data)
    config = own_data.TrainConfig(
        data=str(args.data),
        model=args.model,
        method=args.method,
        r=args.r,
        alpha=args.alpha,
        target_modules=_targets(args.target_modules),
        steps=args.steps,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        packing=args.packing,
    )
    own_data.check_config(config)
    warnings.simplefilter("default", UserWarning)  # each warning once, as one line
    warnings.showwarning = _one_line_warning
    out = args.out or Path("runs") / "train" / args.data.stem
    result = own_data.train_adapter(records, config, out=out, progress=not args.json)
    m = result.metrics
    if args.json:
        print(json.dumps({"adapter": str(out), "config": vars(result.config), "metrics": m}))
        return 0
    share = 100 * m["trainable_params"] / m["total_params"]
    print(
        f"trained {m['trainable_params']:,} of {m['total_params']:,} parameters ({share:.2f}%) "
        f"on {m['train_records']} records, {m['steps']} steps, in {m['train_seconds']:.0f} s; "
        f"final training loss {m['final_train_loss']:.3f}"
    )
    if "val_loss" in m:
        print(
            f"validation loss on {m['val_records']} held-out records: "
            f"{m['val_loss_before']:.3f} before, {m['val_loss']:.3f} after"
        )
    print(f"adapter: {out}  (try: peftlab demo --adapter {out} --prompts FILE)")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)
