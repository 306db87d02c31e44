"""`peftlab build-base-model`: train the embedded base model from nothing, seeded."""

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-base-model", help="rebuild the embedded tiny Llama (about 25 min on two cores)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="folder to write (default: the package's asset)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps", type=int, default=None, help="pretraining steps (default: the shipped recipe)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps <= 0:
        raise ValueError(f"--steps {args.steps}: the number of training steps must be positive")
    from peftlab import base_model

    kwargs = {"steps": args.steps} if args.steps else {}
    base_model.build_embedded(args.out or base_model.EMBEDDED_PATH, seed=args.seed, **kwargs)
    return 0
