"""Lessons read as written when rendered: a computed region never breaks its paragraph.

CommonMark (GitHub, JupyterLab, the static site) reads a line that starts with `<!--` as an HTML
block: it ends the paragraph above it and is passed through as raw HTML, so the text on that
line loses its paragraph and its markdown. Rendered here with markdown-it-py in CommonMark mode,
the renderer JupyterLab's stack ships, every region marker must be inline in its sentence or
stand alone on its line between blank lines (a table's region).
"""

import json
import re

import pytest
from markdown_it import MarkdownIt

from peftlab import html_site, paths

MARKER = re.compile(r"<!-- (?:computed: [^>]*|/computed) -->")
ROOT = paths.lessons_dir().parent


def documents() -> list[tuple[str, str]]:
    """(where, markdown) for the README, every lesson and every notebook markdown cell."""
    found = [("README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    found += [
        (f"lessons/{p.name}", p.read_text(encoding="utf-8"))
        for p in sorted(paths.lessons_dir().glob("*.md"))
    ]
    for notebook in sorted(paths.notebooks_dir().glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        found += [
            (f"notebooks/{notebook.name}, cell {i}", "".join(cell["source"]))
            for i, cell in enumerate(cells)
            if cell["cell_type"] == "markdown"
        ]
    return found


def broken_markers(markdown: str) -> list[str]:
    """Each HTML block a region marker produces that is not a marker alone between blank lines,
    as 'line N: text'."""
    lines = markdown.split("\n")
    off = []
    for token in MarkdownIt("commonmark").parse(markdown):
        if token.type != "html_block" or not MARKER.search(token.content):
            continue
        start = token.map[0]
        interrupts = start > 0 and lines[start - 1].strip() != ""
        if MARKER.sub("", token.content).strip() or interrupts:
            off.append(f"line {start + 1}: {lines[start].strip()[:80]}")
    return off


@pytest.mark.parametrize(("where", "markdown"), documents(), ids=[d[0] for d in documents()])
def test_no_region_marker_breaks_a_paragraph(where, markdown):
    off = broken_markers(markdown)
    assert not off, (
        f"{where}: a region marker starts these lines (run `peftlab lessons --write`):\n"
        + ("\n".join(off))
    )


def test_the_check_finds_a_marker_that_starts_a_line_in_a_paragraph():
    inline = "The best rate is\n<!-- computed: lr -->0.01<!-- /computed -->: a ratio of 10."
    assert broken_markers(inline) == [
        "line 2: <!-- computed: lr -->0.01<!-- /computed -->: a ratio of 10."
    ]
    assert broken_markers("The best rate is <!-- computed: lr -->0.01<!-- /computed -->.") == []
    table = "Text.\n\n<!-- computed: t -->\n\n| a |\n|---|\n| 1 |\n\n<!-- /computed -->\n"
    assert broken_markers(table) == []


def test_the_static_site_shows_lesson_08_section_2_as_one_paragraph():
    page = next(p for p in html_site.find_pages() if p.source.name.startswith("08-"))
    html = html_site.render(page)
    paragraph = re.search(r"<p>Full fine-tuning's best rate is.*?</p>", html, re.S)
    assert paragraph, "section 2's paragraph is not one <p> on the lesson 08 page"
    text = MARKER.sub("", paragraph.group())
    for words in ("LoRA's", "on the grid", "between grid points"):
        assert words in text, f"{words!r} fell out of section 2's paragraph"
