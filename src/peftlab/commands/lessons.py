"""`peftlab lessons`: is every lesson's prose what its code computes? (`--write`: make it so.)

Each lesson module computes its results and the texts its prose quotes (`peftlab.lessons`); the
committed markdown and notebook hold those texts in `<!-- computed: ... -->` regions
(`peftlab.lessons.prose`). This command recomputes the results and compares, or rewrites the
regions. Exit code 1 when a lesson is stale, 2 for a lesson number that does not exist.
"""

import argparse
from pathlib import Path
from types import ModuleType

INTERFACE = ("LESSON", "NOTEBOOK", "results", "quotes", "TOLERANCE")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lessons",
        help="check that each lesson's quoted numbers and tables match its code (--write: fix)",
        description="Recompute each lesson's results and compare the numbers and tables its "
        "prose quotes with them; exit 1 if any lesson is stale.",
    )
    p.add_argument(
        "numbers", nargs="*", metavar="NN", help="lesson numbers such as 01 03 (default: all)"
    )
    p.add_argument(
        "--write", action="store_true", help="rewrite the stale regions from the code instead"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peftlab import lessons
    from peftlab.quiet import muted

    names = [_number(n) for n in args.numbers] or [_number(m) for m in lessons.MODULES]
    chosen = {name: _load(lessons, name, required=bool(args.numbers)) for name in names}
    stale = False
    for name, module in chosen.items():
        if isinstance(module, str):
            print(f"lesson {name}: skipped, {module}")
            continue
        with muted():  # no progress bars from loading the lesson's models
            results = module.results()
        off = lessons.differences(module, results)
        rewritten = lessons.write(module, results) if off and args.write else []
        for path in rewritten:
            print(f"lesson {name}: rewrote {_shown(path)}")
        if rewritten:
            off = lessons.differences(module, results)  # what rewriting regions cannot fix
        if not off:
            if not rewritten:
                print(f"lesson {name}: up to date")
            continue
        stale = True
        print(f"lesson {name}: {len(off)} difference{'s' if len(off) != 1 else ''}")
        for line in off:
            print(f"  {line}")
    if stale and not args.write:
        print("run `peftlab lessons --write` to rewrite the stale regions from the code")
    return 1 if stale else 0


def _number(name: str) -> str:
    """'1', '01' or 'lesson01_peft_basics' -> '01'."""
    if name.isdigit():
        return name.zfill(2)
    if name.startswith("lesson") and name[6:8].isdigit():
        return name[6:8]
    return name


def _load(lessons: ModuleType, number: str, required: bool) -> ModuleType | str:
    """The lesson's module, or why it cannot be checked yet (not converted to the interface).

    ValueError for a number no lesson has, or for one asked for that cannot be checked yet.
    """
    try:
        module = lessons.module(number)
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("peftlab.lessons."):
            raise  # a library the lesson needs is missing: not ours to hide
        why = f"its module {err.name} does not exist yet"
    else:
        lacking = [attr for attr in INTERFACE if not hasattr(module, attr)]
        if not lacking:
            return module
        why = f"its module has no {', '.join(lacking)} yet"
    if required:
        raise ValueError(f"lesson {number} cannot be checked: {why}")
    return why


def _shown(path: Path) -> str:
    """A rewritten file relative to the course checkout, as the lessons name their files."""
    from peftlab import paths

    try:
        return str(path.relative_to(paths.course_root()))
    except ValueError:
        return str(path)
