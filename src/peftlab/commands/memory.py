"""`peftlab memory`: not built yet (see the project's issues)."""

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="(not built yet)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise ValueError("'peftlab memory' is not built yet")
