"""Markdown tables for notebooks and lessons, GitHub-flavoured (GitHub and nbconvert agree)."""

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """A cell's text; a literal `|` (as in |x|) is escaped, or it would split the cell in two."""
    return str(value).replace("|", "\\|")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
) -> str:
    """A markdown table; `align` holds one rule per column ("---", "---:", ":-:"), default left."""
    rules = list(align) if align is not None else ["---"] * len(header)
    if len(rules) != len(header):
        raise ValueError(f"{len(rules)} alignment rules for {len(header)} columns")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
