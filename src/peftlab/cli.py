"""The `peftlab` command: each subcommand lives in `peftlab.commands.<name>`.

A subcommand module exposes `add_parser(subparsers)` and `run(args) -> int`. Bad input raises
`ValueError` (or `FileNotFoundError`); it is printed as one line on stderr with exit code 2.
"""

import argparse
import importlib
import os
import sys

COMMANDS = {
    "demo": "demo",
    "memory": "memory",
    "quiz": "quiz",
    "build-base-model": "build_base_model",
    "html": "html",
    "lessons": "lessons",
    "train": "train",
    "models": "models",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; keep it one line
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="peftlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"peftlab.commands.{module_name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"peftlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"peftlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (`peftlab quiz --progress | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
