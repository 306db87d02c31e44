r"""Static HTML pages of the lessons and the executed notebooks, with an index (`make html`).

Notebooks are exported as committed, outputs and figures included (nothing is re-run); lessons
go through the same nbconvert template as a one-cell notebook, so every page looks alike.
The site is built in a temporary folder and renamed into place, so a failed build leaves the
previous one whole.

Maths is typeset at build time, offline: the TeX of every `$...$` (inline) and `$$...$$` or
`\begin{env}...\end{env}` (display) in a lesson or a notebook's markdown cell becomes MathML
(`latex2mathml`), which browsers lay out natively; as in Jupyter, `\\(...\\)` and `\\[...\\]`
(two backslashes in the markdown) work too. The pages load no MathJax and make no network
request for maths. A `$` counts as maths only as Pandoc reads it: the opening `$` is followed by
a non-space, the closing one follows a non-space and is not followed by a digit, so "$5 or $10"
stays text; code spans, code blocks and code cells with their outputs are never touched. A
formula that cannot be typeset fails the build with a ValueError naming the page and the formula.
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from peftlab import paths
from peftlab.atomic import atomic_dir

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


def _root(root: str | os.PathLike | None) -> Path:
    """`root` as a Path; None means the checkout `paths.course_root()` finds (asked only now)."""
    return paths.course_root() if root is None else Path(root)


def find_pages(root: str | os.PathLike | None = None) -> list[Page]:
    """Every lesson and notebook under `root`, in lesson order (lesson first, then notebook).

    `root` defaults to the course checkout (`peftlab.paths.course_root()`), which raises
    FileNotFoundError saying what to do when there is none.
    """
    root = _root(root)
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


# A `$` opens inline maths only before a non-space and closes it only after a non-space and
# before a non-digit (Pandoc's rule), so prices ("$5 or $10") stay text. Escapes (`\$`) are
# skipped whole; a backtick ends the search, so a code span is never read as maths.
INLINE_MATH_TEX = r"(?s:(?<![$\\])\$(?![\s$])(?P<math_inline_tex>(?:\\.|[^$`\\])+?)(?<!\s)\$(?!\d))"
# MathML elements that take a fixed number of children: fewer means a missing TeX argument.
MATHML_ARITY = {
    "mfrac": 2, "mroot": 2, "msub": 2, "msup": 2, "munder": 2, "mover": 2,
    "msubsup": 3, "munderover": 3,
}  # fmt: skip
# Standard LaTeX that latex2mathml lacks (it leaves `\arg` as text), as commands it has:
# a pattern of the TeX, and the TeX to put in its place.
TEX_SUBSTITUTES = {r"\\arg(?![A-Za-z])": r"\operatorname{arg}"}
# Browsers' generic `math` font is often a text font (DejaVu Sans on Debian), which cannot stretch
# braces or bars: name the OpenType MATH fonts that Linux, macOS and Windows ship first.
MATH_FONTS = (
    '"Latin Modern Math", "STIX Two Math", "Libertinus Math", "TeX Gyre Termes Math", '
    '"DejaVu Math TeX Gyre", "Cambria Math", math'
)
MATH_CSS = (
    f"<style>math{{font-family:{MATH_FONTS};font-size:1.15em}}"
    'math[display="block"]{display:block math;margin:1em 0;overflow-x:auto;overflow-y:hidden}'
    "</style>"
)
# The lab template with its MathJax <script> (a CDN URL) replaced by a little CSS for MathML.
TEMPLATE = "peftlab.html.j2"
TEMPLATE_SOURCE = (
    "{%- extends 'index.html.j2' -%}\n"
    "{%- block html_head_js_mathjax -%}" + MATH_CSS + "{%- endblock html_head_js_mathjax -%}\n"
)


class MathError(ValueError):
    """A TeX formula latex2mathml cannot typeset; `tex` is the formula as written."""

    def __init__(self, tex: str, reason: str):
        formula = " ".join(tex.split())  # on one line, as an error message is
        super().__init__(f"cannot typeset the TeX formula `{formula}` as MathML: {reason}")
        self.tex, self.reason = tex, reason


def _unbalanced_braces(tex: str) -> str | None:
    r"""Why the `{`/`}` groups of `tex` do not pair up (escaped `\{`, `\}` aside), or None."""
    depth = 0
    for token in re.findall(r"\\.|[{}]", tex, flags=re.DOTALL):
        depth += {"{": 1, "}": -1}.get(token, 0)
        if depth < 0:
            return "a '}' closes a group that was never opened"
    return f"{depth} '{{' never closed" if depth else None


def tex_to_mathml(tex: str, display: bool = False) -> str:
    r"""One TeX formula (without its `$` delimiters) as a `<math>` element for an HTML page.

    `display=True` gives block maths (`display="block"`), else inline. latex2mathml turns what it
    does not know into text rather than failing, so its output is checked too: an unknown command
    (`\foo` left as text), a missing argument (`\frac{a}`) or unbalanced braces raise MathError,
    a ValueError naming the formula.
    """
    from latex2mathml.converter import convert

    if not tex.strip():
        raise MathError(tex, "the formula is empty")
    if reason := _unbalanced_braces(tex):
        raise MathError(tex, reason)
    source = tex.strip()
    for pattern, replacement in TEX_SUBSTITUTES.items():
        source = re.sub(pattern, lambda _, r=replacement: r, source)
    try:
        mathml = convert(source, display="block" if display else "inline")
    except Exception as exc:  # latex2mathml's own errors carry no common base class
        raise MathError(tex, f"{type(exc).__name__} {exc}".strip()) from None
    for element in ET.fromstring(mathml).iter():
        name = element.tag.rpartition("}")[2]
        if element.text and (unknown := re.match(r"\\[A-Za-z]+", element.text)):
            raise MathError(tex, f"latex2mathml does not know the command {unknown.group(0)}")
        if name in MATHML_ARITY and len(element) != MATHML_ARITY[name]:
            raise MathError(tex, f"a command is missing an argument (<{name}> is incomplete)")
    # In an HTML page the parser puts <math> in the MathML namespace itself.
    return mathml.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "", 1)


@cache
def _math_renderer_classes():
    """nbconvert's markdown parser and renderer, with maths typeset as MathML (built once)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MathInlineParser

    class InlineParser(MathInlineParser):
        SPECIFICATION = {**MathInlineParser.SPECIFICATION, "inline_math_tex": INLINE_MATH_TEX}

    class Renderer(IPythonRenderer):
        def block_math(self, body: str) -> str:
            return tex_to_mathml(body, display=True)

        def inline_math(self, body: str) -> str:
            return tex_to_mathml(body, display=False)

        def latex_environment(self, name: str, body: str) -> str:
            return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

    return InlineParser, Renderer


def markdown_to_html(source: str, **renderer_options) -> str:
    """Markdown as nbconvert renders a markdown cell, with every formula typeset as MathML."""
    from nbconvert.filters.markdown_mistune import MarkdownWithMath

    inline_parser, renderer = _math_renderer_classes()
    return MarkdownWithMath(
        renderer=renderer(escape=False, **renderer_options), inline=inline_parser(hard_wrap=False)
    ).render(source)


def _exporter():
    """nbconvert's lab HTML exporter, typesetting markdown cells' maths as MathML, no MathJax."""
    from jinja2 import DictLoader, pass_context
    from nbconvert import HTMLExporter

    class Exporter(HTMLExporter):
        @pass_context
        def markdown2html(self, context, source):
            cell = context.get("cell", {})
            if cell.get("cell_type") != "markdown":  # a code cell's text/markdown output
                return super().markdown2html(context, source)
            return markdown_to_html(
                source,
                attachments=cell.get("attachments", {}),
                embed_images=self.embed_images,
                path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                anchor_link_text=self.anchor_link_text,
                exclude_anchor_links=self.exclude_anchor_links,
                **self.lexer_options,
            )

    return Exporter(
        template_name="lab",
        template_file=TEMPLATE,
        extra_loaders=[DictLoader({TEMPLATE: TEMPLATE_SOURCE})],
    )


def _where(page: Page, tex: str) -> str:
    """Where in `page` the formula `tex` is written: a lesson's line, a notebook's cell."""
    if page.kind == "lesson":
        text = page.source.read_text(encoding="utf-8")
        found = text.find(tex)
        return f"{page.source}, line {text.count(chr(10), 0, found) + 1}" if found >= 0 else ""
    import nbformat

    cells = nbformat.read(page.source, as_version=4).cells
    found = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and tex in c.source]
    return f"{page.source}, markdown cell {found[0]}" if found else str(page.source)


def render(page: Page) -> str:
    """One page as a standalone HTML document (figures embedded as data URIs, maths as MathML).

    Raises ValueError naming the page and the formula when a formula cannot be typeset.
    """
    import nbformat

    if page.kind == "notebook":
        nb = nbformat.read(page.source, as_version=4)
    else:
        text = page.source.read_text(encoding="utf-8")
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    try:
        body, _ = _exporter().from_notebook_node(nb, resources={"metadata": {"name": page.title}})
    except MathError as exc:
        raise ValueError(
            f"{_where(page, exc.tex) or page.source}: {exc}. Fix the formula (latex2mathml "
            "typesets standard LaTeX maths), or write a dollar that is not maths as \\$"
        ) from None
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


def build_site(
    out: str | os.PathLike = "site", root: str | os.PathLike | None = None
) -> list[Path]:
    """Write every page and `index.html` to `out`, replacing it whole; return the paths.

    `root` is the checkout holding lessons/ and notebooks/ (default: `paths.course_root()`).
    """
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
