"""`peftlab html`: the lessons and executed notebooks as static HTML pages, with an index.

Maths in the lessons and notebooks is typeset as MathML at build time, so the pages need no
network to show it.
"""

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("html", help="export lessons and executed notebooks to static HTML pages")
    p.add_argument("--out", type=Path, default=Path("site"), help="folder to write (default: site)")
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="checkout holding lessons/ and notebooks/ (default: $PEFTLAB_ROOT, this package's "
        "clone, or the current folder or one above it)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peftlab import html_site

    paths = html_site.build_site(args.out, args.root)
    print(f"wrote {len(paths)} pages to {args.out}/ (open {args.out / 'index.html'})")
    return 0
