"""`peftlab lessons`: is every lesson's prose what its code computes? (`--write`: make it so.)

Each lesson module computes its results and the texts its prose quotes (`peftlab.lessons`); the
committed markdown and notebook hold those texts in `<!-- computed: ... -->` regions
(`peftlab.lessons.prose`). This command recomputes the results and compares, or rewrites the
regions. Exit code 1 when a lesson is stale, 2 for a lesson number that does not exist.

`peftlab lessons new NN NAME` scaffolds lesson NN instead (`commands.scaffold`).
"""

import argparse
from pathlib import Path

NEW_LESSON = """\
peftlab lessons new NN NAME:
  NN    two digits, a lesson number not taken yet (12)
  NAME  lower-case words joined by '-' (reward-models); the title is NAME with
        spaces, capitalized ("Reward models")
  writes lessons/NN-NAME.md, notebooks/NN_NAME.ipynb (no outputs yet: execute
  it before committing), src/peftlab/lessons/lessonNN_NAME.py (in those two,
  '_' for '-') and tests/test_lesson_NN.py, and adds a row to the README's
  lessons table. What comes next: docs/ARCHITECTURE.md, "Adding lesson NN".
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lessons",
        help="check that each lesson's quoted numbers and tables match its code (--write: fix)",
        description="Recompute each lesson's results and compare the numbers and tables its "
        "prose (and the README's regions quoting it) quotes with them; exit 1 if any lesson is "
        "stale. `peftlab lessons new NN NAME` writes a new lesson's markdown, notebook, module "
        "and test, and its README row, instead.",
        epilog=NEW_LESSON,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "numbers",
        nargs="*",
        metavar="NN",
        help="lesson numbers such as 01 03 (default: all); or: new NN NAME",
    )
    p.add_argument(
        "--write", action="store_true", help="rewrite the stale regions from the code instead"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peftlab import lessons, paths
    from peftlab.quiet import muted

    root = paths.course_root()  # no checkout: say so now, before computing anything
    if args.numbers[:1] == ["new"]:
        return _new(root, args.numbers[1:], args.write)
    chosen = [lessons.module(n) for n in args.numbers] or [
        lessons.module(m) for m in lessons.MODULES
    ]
    stale = False
    for module in chosen:
        name = module.LESSON[:2]
        with muted():  # no progress bars from loading the lesson's models
            results = module.results()
        off = lessons.differences(module, results)
        rewritten = lessons.write(module, results) if off and args.write else []
        for path in rewritten:
            print(f"lesson {name}: rewrote {_shown(path)}")
        if rewritten:
            off = lessons.differences(module, results)  # what rewriting regions cannot fix
            if any(path.suffix == ".ipynb" for path in rewritten):
                print(f"lesson {name}: re-execute its notebook so that its outputs follow")
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


def _new(root: Path, words: list[str], write: bool) -> int:
    from peftlab.commands.scaffold import scaffold

    if write or len(words) != 2:
        raise ValueError("usage: peftlab lessons new NN NAME, e.g. peftlab lessons new 12 dpo")
    number, name = words
    for path in scaffold(root, number, name):
        print(f"wrote {_shown(path)}")
    print(
        f"next: write the lesson (and, for a course lesson, its quiz topic; docs/ARCHITECTURE.md, "
        f"'Adding lesson NN'), "
        f"then `peftlab lessons {number}` and re-execute the notebook"
    )
    return 0


def _shown(path: Path) -> str:
    """A rewritten file relative to the course checkout, as the lessons name their files."""
    from peftlab import paths

    try:
        return str(path.relative_to(paths.course_root()))
    except ValueError:
        return str(path)
