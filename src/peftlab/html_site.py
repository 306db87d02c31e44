"""Static HTML pages of the lessons and the executed notebooks, with an index (`make html`).

Notebooks are exported as committed, outputs and figures included (nothing is re-run); lessons
go through the same nbconvert template as a one-cell notebook, so every page looks alike.
The site is built in a temporary folder and renamed into place, so a failed build leaves the
previous one whole.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from peftlab.atomic import atomic_dir

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("lesson", "notebook")


@dataclass(frozen=True)
class Page:
    number: str  # "01": the lesson order
    kind: str  # "lesson" or "notebook"
    source: Path
    title: str

    @property
    def filename(self) -> str:
        return f"{self.source.stem}.html"


def _heading(markdown: str) -> str | None:
    found = re.search(r"^#\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return found.group(1) if found else None


def _short_title(title: str) -> str:
    """A title without its leading number ("01 — ", "Lesson 02 · "): the index shows it."""
    return re.sub(r"^(Lesson\s+)?\d+\s*[—·:-]\s*", "", title)


def _number(path: Path) -> str:
    found = re.match(r"(\d+)[_-]", path.name)
    if not found:
        raise ValueError(f"{path}: page names start with their lesson number, e.g. 01_...")
    return found.group(1)


def _notebook_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    unrun = [i for i in code if nb.cells[i].execution_count is None]
    if unrun:
        raise ValueError(
            f"{path.name} has cells that never ran (cell {unrun[0]}): run it top to bottom and "
            "save it before building the pages"
        )
    text = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    return _heading(text) or path.stem


def find_pages(root: str | os.PathLike = ROOT) -> list[Page]:
    """Every lesson and notebook under `root`, in lesson order (lesson first, then notebook)."""
    root = Path(root)
    lessons, notebooks = root / "lessons", root / "notebooks"
    for folder in (lessons, notebooks):
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder: point --root at a peft-lab checkout")
    pages = [
        Page(_number(p), "lesson", p, _heading(p.read_text(encoding="utf-8")) or p.stem)
        for p in sorted(lessons.glob("[0-9]*.md"))
    ]
    pages += [
        Page(_number(p), "notebook", p, _notebook_title(p))
        for p in sorted(notebooks.glob("[0-9]*.ipynb"))
    ]
    if not pages:
        raise ValueError(f"no numbered lessons or notebooks under {root}")
    return sorted(pages, key=lambda p: (p.number, KINDS.index(p.kind)))


def _link_notebook_names(page_html: str) -> str:
    """`notebooks/05_x.ipynb` written as code in a lesson becomes a link to its page."""
    return re.sub(
        r"<code>notebooks/(\d+[\w-]*)\.ipynb</code>",
        r'<a href="\1.html"><code>notebooks/\1.ipynb</code></a>',
        page_html,
    )


def render(page: Page) -> str:
    """One page as a standalone HTML document (figures embedded as data URIs)."""
    import nbformat
    from nbconvert import HTMLExporter

    if page.kind == "notebook":
        nb = nbformat.read(page.source, as_version=4)
    else:
        text = page.source.read_text(encoding="utf-8")
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(
        nb, resources={"metadata": {"name": page.title}}
    )
    return _link_notebook_names(body) if page.kind == "lesson" else body


def index_html(pages: list[Page]) -> str:
    """The contents page: one row per lesson number, linking its lesson and its notebook."""
    rows = []
    for number in sorted({p.number for p in pages}):
        by_kind = {p.kind: p for p in pages if p.number == number}
        title = _short_title((by_kind.get("lesson") or by_kind["notebook"]).title)
        links = " · ".join(
            f'<a href="{by_kind[k].filename}">{k}</a>' for k in KINDS if k in by_kind
        )
        rows.append(f"<tr><td>{number}</td><td>{html.escape(title)}</td><td>{links}</td></tr>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>peft-lab: lessons and notebooks</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
        "td{padding:.4rem .8rem;border-bottom:1px solid #ddd}</style></head><body>"
        "<h1>peft-lab</h1><p>Fine-tuning LLMs with PEFT, on a laptop CPU. Read each lesson, "
        "then its notebook, shown here as last run. The widgets (calculators, playground) "
        "come alive only in JupyterLab: <code>make lab</code>.</p>"
        f"<table>{''.join(rows)}</table></body></html>\n"
    )


def build(out: str | os.PathLike = "site", root: str | os.PathLike = ROOT) -> list[Path]:
    """Write every page and `index.html` to `out`, replacing it whole; return the paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: give --out a folder name (it is replaced whole)")
    if out.is_dir() and any(not f.name.endswith(".html") for f in out.iterdir()):
        raise ValueError(
            f"{out} holds files that are not pages of an earlier site, and the build replaces "
            "the whole folder: give --out a new folder or one made by `peftlab html`"
        )
    pages = find_pages(root)
    with atomic_dir(out) as tmp:
        for page in pages:
            (tmp / page.filename).write_text(render(page), encoding="utf-8")
        (tmp / "index.html").write_text(index_html(pages), encoding="utf-8")
    return [out / "index.html", *(out / p.filename for p in pages)]
