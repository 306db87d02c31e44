"""`peftlab demo`: the customer-support before/after table on the embedded (or any) model."""

import argparse
import json
import sys
import textwrap
import warnings
from pathlib import Path

# finetune.TRAIN_METHODS, spelled out: importing finetune (peft, transformers) would slow every
# `peftlab` start; tests/test_cli_demo.py checks the two agree.
TRAIN_METHODS = ("lora", "qlora")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="answer complaints before and after a LoRA fine-tune")
    p.add_argument(
        "--model", help="hub id or local folder (default: $PEFT_LAB_MODEL or the embedded model)"
    )
    p.add_argument(
        "--method", default="lora", help="lora (16/32-bit base) or qlora (4-bit NF4 base)"
    )
    p.add_argument("--prompts", type=Path, help="text file with one complaint per line")
    p.add_argument(
        "--adapter", type=Path,
        help="an adapter folder (`peftlab train --out`): compare with it instead of training",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default 150)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def read_prompts(path: Path) -> list[str]:
    """Complaints from a text file, one per line; empty lines are skipped with a warning."""
    if not path.is_file():
        raise ValueError(
            f"--prompts {path}: no such file; give a text file with one complaint per line"
        )
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(
            f"--prompts {path}: looks binary; give a UTF-8 text file, one complaint per line"
        )
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"--prompts {path}: not UTF-8 text ({exc.reason})") from exc
    complaints = [line.strip() for line in lines if line.strip()]
    skipped = len(lines) - len(complaints)
    if not complaints:
        raise ValueError(f"--prompts {path}: no complaints in it; write one complaint per line")
    if skipped:
        warnings.warn(f"--prompts {path}: skipped {skipped} empty line(s)", stacklevel=2)
    return complaints


def _check(args: argparse.Namespace) -> None:
    if args.method not in TRAIN_METHODS:
        raise ValueError(
            f"--method {args.method}: unknown method; choose one of {', '.join(TRAIN_METHODS)}"
        )
    if args.steps is not None and args.steps <= 0:
        raise ValueError(f"--steps {args.steps}: the number of training steps must be positive")
    if args.adapter is not None:
        if args.steps is not None:
            raise ValueError("--steps: nothing is trained with --adapter; drop one of the two")
        if not (args.adapter / "adapter_config.json").is_file():
            raise ValueError(
                f"--adapter {args.adapter}: no adapter_config.json there; give the folder "
                "`peftlab train` wrote (its --out)"
            )


def run(args: argparse.Namespace) -> int:
    _check(args)
    complaints = read_prompts(args.prompts) if args.prompts else None
    warnings.simplefilter("default", UserWarning)
    warnings.showwarning = _one_line_warning
    from peftlab.compare import before_after  # heavy imports only when the demo runs

    if args.adapter is not None:
        from peftlab.own_data import compare_adapter

        result = compare_adapter(args.adapter, complaints, model_name=args.model)
        print(json.dumps(result.to_dict(), indent=2) if args.json else render_table(result))
        return 0
    kwargs = {"steps": args.steps} if args.steps else {}
    result = before_after(
        complaints, model_name=args.model, method=args.method, seed=args.seed,
        progress=not args.json, **kwargs,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_table(result))
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


SHORT = {"greeting": "greet", "acknowledges": "ack", "action": "act", "timeline": "time"}


def _marks(marks: dict) -> str:
    return " ".join(("+" if marks[c] else "-") + short for c, short in SHORT.items())


def render_table(result, width: int = 34) -> str:
    """The human table: complaint | before | after | marks, then a summary."""
    titles = ("complaint", "before (base model)", "after (LoRA)")
    header = " | ".join(f"{t:<{width}}" for t in titles) + " | marks before -> after"
    lines = [header, "-" * len(header)]
    for row in result.examples:
        cols = [textwrap.wrap(row[k], width) or [""] for k in ("complaint", "before", "after")]
        marks = f"{_marks(row['before_marks'])} -> {_marks(row['after_marks'])}"
        for i in range(max(map(len, cols))):
            cells = " | ".join(f"{c[i] if i < len(c) else '':<{width}}" for c in cols)
            lines.append(f"{cells} | {marks if i == 0 else ''}".rstrip())
        lines.append("")
    share = 100 * result.trainable_params / result.total_params
    s = result.summary
    lines += [
        f"{result.model} + {result.method}: trained {result.trainable_params:,} of "
        f"{result.total_params:,} parameters ({share:.2f}%) in {result.train_seconds:.0f} s",
        f"mean rubric score over {len(result.examples)} complaints: "
        f"before {s['before']:.2f}, after {s['after']:.2f}",
        "marks: + met, - missed (greeting, acknowledges the problem, action, timeline)",
    ]
    return "\n".join(lines)
