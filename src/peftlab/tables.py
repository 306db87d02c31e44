"""Markdown tables for notebooks and lessons, GitHub-flavoured (GitHub and nbconvert agree)."""

import re
from collections.abc import Mapping, Sequence
from typing import Any


def cell(value: Any) -> str:
    """A cell's text; a literal `|` (as in |x|) is escaped, or it would split the cell in two."""
    return str(value).replace("|", "\\|")


def gb(n_bytes: float) -> str:
    """Bytes as the lessons write them: gigabytes of 1e9 bytes, one decimal ("13.5 GB")."""
    return f"{n_bytes / 1e9:,.1f} GB"


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


def parse_table(markdown: str) -> list[list[str]]:
    """The rows of a markdown table: the header, then the body (the rule line dropped); cells
    are unescaped."""
    lines = markdown.strip().splitlines()
    return [
        [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for i, line in enumerate(lines)
        if i != 1
    ]


def number(text: str) -> float | None:
    """A cell's number ("1,234", "46%", "1.6x", "-0.2153"), or None for a cell of words."""
    match = re.fullmatch(r"([+-]?\d[\d,]*(?:\.\d+)?)[%x]?", text)
    return float(match.group(1).replace(",", "")) if match else None


def table_differences(
    expected: str, found: str | None, tolerance: Mapping[str, float] | None = None
) -> list[str]:
    """Cells where `found` differs from `expected`; empty when they agree.

    Cells agree when their text is equal or, in a column named in `tolerance`, when both are
    numbers within that column's tolerance (in the printed unit: percentage points for a
    percent). Figures downstream of bf16 or 4-bit rounding differ slightly between CPUs, so
    their columns carry a tolerance; every other cell must match to the letter.
    """
    if not found:
        return ["table not found"]
    want, got = parse_table(expected), parse_table(found)
    if len(want) != len(got) or want[0] != got[0]:
        return [f"{len(got)} rows with header {got[0]}, expected {len(want)} with {want[0]}"]
    tolerance = tolerance or {}
    out = []
    for w_row, g_row in zip(want[1:], got[1:], strict=True):
        if len(g_row) != len(w_row):
            out.append(f"row {g_row[:1]}: {len(g_row)} cells, expected {len(w_row)}")
            continue
        for column, w, g in zip(want[0], w_row, g_row, strict=True):
            tol = tolerance.get(column)
            a, b = number(w), number(g)
            if w == g or (
                tol is not None and a is not None and b is not None and abs(a - b) <= tol
            ):
                continue
            out.append(f"row {w_row[0]!r}, column {column!r}: lesson has {g}, computed {w}")
    return out
