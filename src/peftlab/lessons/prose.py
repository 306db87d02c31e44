"""The one mechanism that keeps every lesson's prose in step with the code.

Every number or table a lesson quotes from a computation sits in the lesson's markdown (or in a
markdown cell of its notebook) between two HTML comments, which the rendered page does not show:

    Llama-2-7B has <!-- computed: llama params -->6,738,415,616<!-- /computed --> parameters.

    <!-- computed: memory table -->

    | method | ... |
    |---|---|

    <!-- /computed -->

The lesson module's `quotes(results)` maps each name to the text the code computes now.
`render(text, quotes)` writes those texts into the regions; `differences(text, quotes)` lists
every region whose text is not what the code computes, every region the code does not know and
every quote no region holds. The lesson tests assert there are no differences, so changing a
computed number fails a test until the text changes too (`peftlab lessons --write` rewrites
the regions).

A region inside a sentence stays inside its line: CommonMark (GitHub, JupyterLab, the static
site) reads a line that *starts* with `<!--` as raw HTML that ends the paragraph above it, so a
marker never opens a line that carries text. `render` mends such a line (the previous line's
last word moves down in front of it, or the two lines join) and `differences` reports one.

A few figures depend, in their last digits, on the CPU's floating-point kernels (bf16 and 4-bit
matmuls). For those the lesson module's `TOLERANCE` names the region and how far a figure may
move: a number (for a region that is one number) or a mapping of column to tolerance (for a
table, see `tables.table_differences`). Everything else must match exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peftlab.tables import number, table_differences

OPEN = "<!-- computed: {name} -->"
CLOSE = "<!-- /computed -->"
_REGION = re.compile(r"<!-- computed: (?P<name>[^>]+?) -->(?P<body>.*?)<!-- /computed -->", re.S)
_STRAY = re.compile(r"<!-- (?:computed: [^>]*|/computed) -->")

Tolerance = float | Mapping[str, float]
Selected = Callable[[str], bool]  # which regions of a text a check or a rewrite is about


def _every(name: str) -> bool:
    return True


# A line whose first text is a marker and that holds more than markers
# (after any indentation and blockquote marks).
_STARTS_LINE = re.compile(r"^(?P<lead>[ \t]*(?:>[ \t]?)*)<!-- (?:computed: [^>]*|/computed) -->")
# A word that, opening a line, would start a block of its own (list item, heading, quote, rule).
_OPENS_BLOCK = re.compile(r"^(?:[-+*>#=|]|\d+[.)]$|`{3}|~{3})")


def _marker_only(line: str) -> bool:
    return not _STRAY.sub("", line).strip()


def split_lines(text: str) -> list[int]:
    """The 1-based numbers of lines that start with a region marker but carry text: markdown
    shows each as raw HTML, out of its paragraph. A marker alone on its line (a table region's)
    is fine."""
    return [
        number
        for number, line in enumerate(text.split("\n"), start=1)
        if _STARTS_LINE.match(line) and not _marker_only(line)
    ]


def mend(text: str) -> str:
    """The text with every line `split_lines` finds rejoined to its sentence: the previous
    line's last word moves down in front of the marker (so lines stay short), or, where that
    word would start a block or the previous line holds no free word, the two lines join.
    What markdown renders is the same paragraph either way. A region that opens a paragraph
    keeps its opening marker on a line of its own, a blank line below it, as a table's does."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        starts = _STARTS_LINE.match(line)
        if not starts or _marker_only(line):
            continue
        indent = starts.group("lead")
        previous = lines[i - 1] if i else ""
        if not previous.strip(" \t>"):  # the region opens its paragraph: its marker stands alone
            marker, rest = starts.group()[len(indent) :], line[starts.end() :]
            if not marker.startswith("<!-- computed:"):
                raise ValueError(f"line {i + 1} opens a paragraph with {marker!r}")
            lines[i : i + 1] = [f"{indent}{marker}", indent.rstrip(), f"{indent}{rest.lstrip()}"]
            return mend("\n".join(lines))
        tail_start = max((m.end() for m in _STRAY.finditer(previous)), default=0)
        head, _, word = previous.rstrip().rpartition(" ")
        body = line[len(indent) :]
        if len(head) >= tail_start and head.strip(" \t>") and not _OPENS_BLOCK.match(word):
            lines[i - 1], lines[i] = head.rstrip(), f"{indent}{word} {body}"
        else:
            lines[i - 1], lines[i] = f"{previous.rstrip()} {body}", None
            lines = [x for x in lines if x is not None]
            return mend("\n".join(lines))
    return "\n".join(lines)


def regions(text: str) -> dict[str, list[str]]:
    """Each region's name and the text it holds now (stripped), in order of appearance.

    Raises ValueError for a marker without its partner or a region inside another.
    """
    found: dict[str, list[str]] = {}
    for match in _REGION.finditer(text):
        body = match.group("body")
        if _STRAY.search(body):
            raise ValueError(f"region {match.group('name')!r} is not closed before the next opens")
        found.setdefault(match.group("name"), []).append(body.strip())
    leftover = _STRAY.findall(_REGION.sub("", text))
    if leftover:
        raise ValueError(f"{leftover[0]!r} has no partner: every region opens and closes")
    for match in _STRAY.finditer(text):
        line = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
        if line.count("`") % 2:  # inside a code span, markdown would show the marker as text
            raise ValueError(
                f"{match.group()!r} sits inside a `code span`: put the backticks in the region"
            )
    return found


def _body(value: str) -> str:
    """A block (several lines) stands between blank lines, so markdown parses it as a block."""
    return f"\n\n{value}\n\n" if "\n" in value else value


def render(
    text: str,
    quotes: Mapping[str, str],
    tolerance: Mapping[str, Tolerance] | None = None,
    only: Selected = _every,
) -> str:
    """The text with every region holding what the code computes (`quotes[name]`), except a
    region whose figures are within its tolerance: it keeps them, so a rewrite on another CPU
    changes only what is really off. Regions `only` does not select (another lesson's, in the
    README) are left as they are."""
    unknown = sorted(name for name in regions(text) if only(name) and name not in quotes)
    if unknown:
        raise ValueError(f"regions with no computed value: {unknown}")
    tolerance = tolerance or {}

    def fill(match: re.Match) -> str:
        name, body = match.group("name"), match.group("body").strip()
        if not only(name):
            return match.group()
        quote = quotes[name].strip()
        if name in tolerance and body and not _within(quote, body, tolerance[name]):
            quote = body
        return OPEN.format(name=name) + _body(quote) + CLOSE

    return mend(_REGION.sub(fill, text))


_COUNT = re.compile(r"(\d[\d,]*) (of \d[\d,]*)")


def figure(text: str) -> tuple[float, str] | None:
    """A one-number region's figure and what it is counted against: "0.91" -> (0.91, ""),
    "8 of 12" -> (8.0, "of 12"); None for words, which a tolerance cannot move."""
    if (value := number(text)) is not None:
        return value, ""
    if found := _COUNT.fullmatch(text):
        return float(found[1].replace(",", "")), found[2]
    return None


def _within(expected: str, found: str, tolerance: Tolerance | None) -> list[str]:
    if isinstance(tolerance, Mapping):
        return table_differences(expected, found, tolerance)
    a, b = figure(expected), figure(found)
    if tolerance is None or a is None or b is None or a[1] != b[1]:
        return [] if expected == found else [f"is {found!r}, computed {expected!r}"]
    if abs(a[0] - b[0]) <= tolerance:
        return []
    return [f"is {found}, computed {expected} (± {tolerance})"]


def differences(
    texts: Mapping[str, str],
    quotes: Mapping[str, str],
    tolerance: Mapping[str, Tolerance] | None = None,
    only: Selected = _every,
) -> list[str]:
    """What in `texts` (document name -> text) differs from `quotes`; empty when all is current.

    Every region must be known to `quotes`, every quote must be held by some region, and every
    region must hold its quote (exactly, or within `tolerance[name]`). Regions `only` does not
    select are someone else's (another lesson's, in the README): not compared.
    """
    tolerance = tolerance or {}
    found: dict[str, list[tuple[str, str]]] = {}
    off = []
    for document, text in texts.items():
        try:
            held = regions(text)
        except ValueError as err:
            off.append(f"{document}: {err}")
            continue
        for name, bodies in held.items():
            if only(name):
                found.setdefault(name, []).extend((document, body) for body in bodies)
        off += [
            f"{document}: line {n} starts with a region marker, which ends its paragraph when "
            "rendered (`peftlab lessons --write` mends it)"
            for n in split_lines(text)
        ]
    for name in sorted(set(found) - set(quotes)):
        off.append(f"{found[name][0][0]}: region {name!r} has no computed value")
    for name in sorted(set(quotes) - set(found)):
        off.append(f"computed {name!r} is quoted by no region of {sorted(texts)}")
    for name, places in found.items():
        if name not in quotes:
            continue
        for document, body in places:
            wrong = _within(quotes[name].strip(), body, tolerance.get(name))
            off += [f"{document}: {name!r} {d}" for d in wrong]
    return off


# --- documents: a lesson's markdown and its notebook's markdown cells ---------------------------
def _markdown_cells(notebook: Mapping[str, Any]) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "markdown"]


def read(path: Path) -> str:
    """The text regions can live in: the markdown file, or a notebook's markdown cells joined
    (ValueError if a region opens in one cell and closes in another)."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = ["".join(c["source"]) for c in _markdown_cells(json.loads(path.read_text("utf-8")))]
    for index, cell in enumerate(cells):
        try:
            regions(cell)
        except ValueError as err:
            raise ValueError(f"{path.name}, markdown cell {index}: {err}") from None
    return "\n\n".join(cells)


def rendered(
    path: Path, quotes: Mapping[str, str], tolerance: Mapping[str, Tolerance] | None = None
) -> str:
    """The file's new content with its regions rendered (`render`), cell by cell in a notebook."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return render(raw, quotes, tolerance)
    notebook: dict[str, Any] = json.loads(raw)
    for cell in _markdown_cells(notebook):
        source = "".join(cell["source"])
        if _STRAY.search(source):
            cell["source"] = render(source, quotes, tolerance).splitlines(keepends=True)
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
