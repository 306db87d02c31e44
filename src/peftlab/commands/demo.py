"""`peftlab demo`: the customer-support before/after table on the embedded (or any) model."""

import argparse
import json
import os
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
        "--model",
        help="smollm2 (the real model, once fetched), embedded (the toy), a local folder or a hub "
        "id (default: $PEFT_LAB_MODEL, else smollm2 when fetched, else embedded)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA with bf16 where there is a GPU), cpu or cuda"
    )
    p.add_argument(
        "--all", action="store_true",
        help="answer every complaint of the default sets (the real model answers 24 of each)",
    )  # fmt: skip
    p.add_argument(
        "--method", default="lora", help="lora (16/32-bit base) or qlora (4-bit NF4 base)"
    )
    p.add_argument("--prompts", type=Path, help="text file with one complaint per line")
    p.add_argument(
        "--adapter", type=Path,
        help="an adapter folder (`peftlab train --out`): compare with it instead of training",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=int, default=None,
        help="fine-tuning steps (default: the model's recipe, 40 on smollm2, 150 on embedded)",
    )  # fmt: skip
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
    if args.all and args.prompts:
        raise ValueError("--all: it widens the default sets; --prompts names your own")
    if args.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {args.device}: choose auto, cpu or cuda")
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


def default_model_name(args: argparse.Namespace) -> str:
    """--model, else $PEFT_LAB_MODEL, else the real model when it is fetched and whole, else the
    embedded one, with a line on stderr saying why."""
    from peftlab import models

    chosen = args.model or os.environ.get("PEFT_LAB_MODEL")
    if chosen:
        return chosen
    issue = models.problem("smollm2")
    if issue is None:
        return "smollm2"
    why = "damaged" if models.folder("smollm2").exists() else "not fetched"
    print(f"note: the real model (smollm2) is {why}, so the demo runs the embedded toy model; "
          "`peftlab models fetch smollm2` fetches it (93 MB, once)", file=sys.stderr)  # fmt: skip
    return "embedded"


def run(args: argparse.Namespace) -> int:
    _check(args)
    complaints = read_prompts(args.prompts) if args.prompts else None
    warnings.simplefilter("default", UserWarning)
    warnings.showwarning = _one_line_warning
    model_name = default_model_name(args) if args.adapter is None else None
    from peftlab.compare import before_after  # heavy imports only when the demo runs

    if args.adapter is not None:
        from peftlab.own_data import compare_adapter

        # the base the adapter was trained on (its train_config.json) unless one is named
        model_name = args.model or os.environ.get("PEFT_LAB_MODEL")
        result = compare_adapter(args.adapter, complaints, model_name=model_name)
        print(json.dumps(result.to_dict(), indent=2) if args.json else render_table(result))
        return 0
    kwargs = {"steps": args.steps} if args.steps else {}
    result = before_after(
        complaints, model_name=model_name, method=args.method, seed=args.seed,
        progress=not args.json, device=args.device, **kwargs,
        **({"sample": None} if args.all else {}),
    )  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_table(result))
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


SHORT = {"greeting": "greet", "acknowledges": "ack", "action": "act", "timeline": "time"}
SET_TITLES = {"wild": "in the wild"}
N_WORST = 5


def _marks(marks: dict, faithful: bool | None = None) -> str:
    text = " ".join(("+" if marks[c] else "-") + short for c, short in SHORT.items())
    return text if faithful is None else f"{text} {'+' if faithful else '-'}faith"


def _rows_table(rows, width: int) -> list[str]:
    titles = ("complaint", "before (base model)", "after (LoRA)")
    header = " | ".join(f"{t:<{width}}" for t in titles) + " | marks before -> after"
    lines = [header, "-" * len(header)]
    for row in rows:
        cols = [textwrap.wrap(row[k], width) or [""] for k in ("complaint", "before", "after")]
        marks = (
            f"{_marks(row['before_marks'], row.get('before_faithful'))} -> "
            f"{_marks(row['after_marks'], row.get('after_faithful'))}"
        )
        for i in range(max(map(len, cols))):
            cells = " | ".join(f"{c[i] if i < len(c) else '':<{width}}" for c in cols)
            lines.append(f"{cells} | {marks if i == 0 else ''}".rstrip())
        invented = row.get("after_invented")
        if invented:
            lines.append(
                f"  (the after reply names what the complaint does not: {', '.join(invented)})"
            )
        lines.append("")
    return lines


def measures_table(named_rows: dict[str, list]) -> str:
    """Each set's measures (`compare.measures`), before -> after, one column per set."""
    from peftlab.compare import measures  # imported by the time a result is rendered

    summaries = {name: measures(rows) for name, rows in named_rows.items()}
    names = [f"{SET_TITLES.get(n, n)} ({len(r)})" for n, r in named_rows.items()]
    width = max(24, *(len(n) for n in names))
    lines = [f"{'':<28}" + "".join(f"{n:>{width}}" for n in names)]
    labels = {"rubric": "mean rubric score", "acknowledges": "acknowledges its problem",
              "faithful": "faithful (names no other)", "distinct": "distinct replies"}  # fmt: skip
    for measure, label in labels.items():
        cells = []
        for s in summaries.values():
            keys = ("before", "after") if measure == "rubric" else (
                f"{measure}_before", f"{measure}_after")  # fmt: skip
            b, a = s[keys[0]], s[keys[1]]
            cells.append(f"{b:.2f} -> {a:.2f}" if measure == "rubric" else f"{b:.0%} -> {a:.0%}")
        lines.append(f"{label:<28}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def render_table(result, width: int = 34) -> str:
    """The human table: complaint | before | after | marks, for the main set and the worst
    replies of each further set, then every set's measures, before -> after."""
    from peftlab.compare import worst

    lines = _rows_table(result.examples, width)
    sets = getattr(result, "sets", None) or {}
    for name, scored in sets.items():
        title = SET_TITLES.get(name, name)
        n = len(scored["examples"])
        lines += [f"{title}: the {N_WORST} worst replies after fine-tuning, of {n} "
                  "(unfaithful first, then by rubric score)", ""]  # fmt: skip
        lines += _rows_table(worst(scored["examples"], N_WORST), width)
    share = 100 * result.trainable_params / result.total_params
    main = "held-out" if sets else "complaints"
    named_rows = {main: result.examples} | {n: s["examples"] for n, s in sets.items()}
    lines += [
        f"{result.model} + {result.method}: trained {result.trainable_params:,} of "
        f"{result.total_params:,} parameters ({share:.2f}%) in {result.train_seconds:.0f} s "
        f"({result.steps} steps, {result.precision} on {result.device})",
        "",
        "before -> after fine-tuning:",
        measures_table(named_rows),
        "",
        "marks: + met, - missed (greeting, acknowledges the problem, action, timeline: the rubric;",
        "faith: names no product, service or problem the complaint does not, reported apart)",
    ]
    if "wild" in sets:
        lines.append(
            "in the wild: src/peftlab/assets/wild-complaints.txt, written the way customers write"
            + ("" if result.model != "peftlab-base" else "; the toy model echoes the customer's")
        )
        if result.model == "peftlab-base":
            lines.append(
                "words but often miscopies words it rarely read (lesson 05, 'In the wild')"
            )
    return "\n".join(lines)
