"""`make html` (`peftlab html`): a page per lesson and per executed notebook, figures included,
maths typeset as MathML with no network."""

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from peftlab import cli, html_site, paths

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9]*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
TABLE_RULE = re.compile(r"^\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$", re.MULTILINE)
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "site"
    assert cli.main(["html", "--out", str(out)]) == 0
    return out


def png_outputs(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [
        "".join(out["data"]["image/png"]).replace("\n", "")
        for cell in cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]


def test_every_lesson_and_notebook_has_a_page(site):
    expected = {"index.html"} | {f"{p.stem}.html" for p in LESSONS + NOTEBOOKS}
    assert {p.name for p in site.iterdir()} == expected
    assert [p.name[:2] for p in LESSONS] == [p.name[:2] for p in NOTEBOOKS]  # paired by number
    assert len(LESSONS) >= 6


def test_index_links_lesson_then_notebook_in_lesson_order(site):
    links = re.findall(r'href="([^"]+)"', (site / "index.html").read_text(encoding="utf-8"))
    expected = [f"{p.stem}.html" for pair in zip(LESSONS, NOTEBOOKS, strict=True) for p in pair]
    assert links == expected


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_page_embeds_every_figure_of_the_notebook(site, notebook):
    page = (site / f"{notebook.stem}.html").read_text(encoding="utf-8")
    figures = png_outputs(notebook)
    assert figures, f"{notebook.name} has no figures"
    embedded = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', page)
    assert embedded == figures


def markdown_tables(text: str) -> list[list[str]]:
    """Each table as its lines: header, rule, rows (up to the first line not starting with |)."""
    lines, tables = text.splitlines(), []
    for i, line in enumerate(lines):
        if i and TABLE_RULE.fullmatch(line):
            end = i + 1
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            tables.append(lines[i - 1 : end])
    return tables


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_tables_have_as_many_cells_in_every_row_as_in_the_header(lesson):
    for table in markdown_tables(lesson.read_text(encoding="utf-8")):
        cells = [len(UNESCAPED_PIPE.findall(line.strip().strip("|"))) + 1 for line in table]
        assert set(cells) == {cells[0]}, f"a | inside a cell splits it (escape it as \\|): {table}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_page_has_its_tables_sections_and_notebook_link(site, lesson):
    text = lesson.read_text(encoding="utf-8")
    page = (site / f"{lesson.stem}.html").read_text(encoding="utf-8")
    assert page.count("<table") == len(markdown_tables(text)) > 0
    for heading in ("Interview answer", "TL;DR"):
        assert re.search(rf"<h2[^>]*>{re.escape(heading)}", page), heading
    notebook = next(p for p in NOTEBOOKS if p.name[:2] == lesson.name[:2])
    assert f'<a href="{notebook.stem}.html">' in page
    assert "&lt;!-- computed" not in page and "&lt;!-- /computed" not in page  # markers stay hidden


def test_rebuild_replaces_the_site_whole(site, tmp_path):
    out = tmp_path / "site"
    shutil.copytree(site, out)
    (out / "stale.html").write_text("from an older build")
    html_site.build_site(out)
    assert not (out / "stale.html").exists()
    assert (out / "index.html").read_text() == (site / "index.html").read_text()


def test_failed_build_leaves_the_previous_site_intact(site, tmp_path, monkeypatch):
    out = tmp_path / "site"
    shutil.copytree(site, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(page):
        raise RuntimeError(f"cannot render {page.source.name}")

    monkeypatch.setattr(html_site, "render", broken)
    with pytest.raises(RuntimeError):
        html_site.build_site(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temp folder left behind


def test_out_must_be_a_new_folder_or_an_earlier_site(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert cli.main(["html", "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "draft.md").write_text("keep me too")
    assert cli.main(["html", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "not pages of an earlier site" in err and len(err.strip().splitlines()) == 1
    assert (folder / "draft.md").read_text() == "keep me too"


def test_a_notebook_that_never_ran_is_refused(tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "lessons", root / "lessons")
    (root / "notebooks").mkdir()
    nb = json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["execution_count"], cell["outputs"] = None, []
    (root / "notebooks" / NOTEBOOKS[0].name).write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(ValueError, match="never ran"):
        html_site.build_site(tmp_path / "site", root)
    assert not (tmp_path / "site").exists()


def test_root_without_lessons_is_refused(tmp_path):
    with pytest.raises(ValueError, match="point --root at a peft-lab checkout"):
        html_site.find_pages(tmp_path)


# --- where the pages come from: the checkout peftlab.paths finds -------------------------------


@pytest.fixture
def no_checkout(tmp_path, monkeypatch) -> Path:
    """As installed from a wheel and run from a folder that is no checkout."""
    monkeypatch.delenv("PEFTLAB_ROOT", raising=False)
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "site-packages" / "peftlab")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_a_checkout_the_build_says_to_set_peftlab_root(no_checkout, capsys):
    with pytest.raises(FileNotFoundError, match="PEFTLAB_ROOT"):
        html_site.find_pages()
    assert cli.main(["html", "--out", str(no_checkout / "site")]) == 2
    assert "PEFTLAB_ROOT" in capsys.readouterr().err
    assert not (no_checkout / "site").exists()


def test_pages_come_from_the_checkout_peftlab_root_names(no_checkout, monkeypatch):
    root = no_checkout / "peft-lab"
    (root / "lessons").mkdir(parents=True)
    (root / "notebooks").mkdir()
    shutil.copy(LESSONS[0], root / "lessons")
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    assert [p.source for p in html_site.find_pages()] == [root / "lessons" / LESSONS[0].name]


def test_importing_the_site_builder_needs_no_checkout(tmp_path):
    code = (
        "from pathlib import Path\n"
        "from peftlab import paths\n"
        "paths.PACKAGE = Path('/nonexistent/site-packages/peftlab')\n"
        "import peftlab.html_site, peftlab.commands.html\n"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no PEFTLAB_ROOT
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


# --- maths: TeX typeset as MathML at build time ------------------------------------------------


def math_elements(page_html: str) -> list[str]:
    """The display attribute of every <math> element, in order."""
    return re.findall(r'<math display="(block|inline)">', page_html)


class VisibleText(HTMLParser):
    """The text a reader sees as prose: outside code, scripts, styles and <math>."""

    HIDDEN = {"code", "pre", "script", "style", "math", "title"}

    def __init__(self):
        super().__init__()
        self.open, self.parts = [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_data(self, data):
        if not self.open:
            self.parts.append(data)


def visible_text(page_html: str) -> str:
    parser = VisibleText()
    parser.feed(page_html)
    return "".join(parser.parts)


def test_inline_and_display_maths_become_mathml():
    page = html_site.markdown_to_html(
        "The update $\\Delta W = BA$ has rank $\\le r$:\n\n"
        "$$h = W_0x + \\frac{\\alpha}{r}BAx$$\n\n"
        "Over lines:\n\n$$\na\n+ b\n$$\n\nand LaTeX's own \\\\[x^2\\\\] and \\\\(y\\\\)."
    )
    assert math_elements(page) == ["inline", "inline", "block", "block", "block", "inline"]
    assert "<mfrac>" in page and "<msub><mi>W</mi><mn>0</mn></msub>" in page
    assert "$" not in page and "\\" not in page


def test_maths_inside_a_table_cell_and_a_heading():
    page = html_site.markdown_to_html(
        "## Why $B$ starts at zero\n\n| matrix | shape |\n|---|---|\n| $A$ | $r\\times d$ |\n"
    )
    assert re.search(r"<h2[^>]*>Why <math display=\"inline\">", page)
    assert page.count("<td><math") == 2


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5.",
        "Plans at $5 or $10 a month.",
        "From $5 to $ 10.",
        "A lone $ sign, and another $ here.",
        "Escaped: \\$x\\$.",
    ],
)
def test_dollars_that_are_not_maths_stay_text(text):
    page = html_site.markdown_to_html(text)
    assert "<math" not in page
    assert visible_text(page).strip() == text.replace("\\$", "$")


def test_code_spans_and_code_blocks_are_left_alone():
    page = html_site.markdown_to_html(
        "Run `echo $HOME $x$` or `kill $$`, and $y$ is maths.\n\n"
        "```sh\nexport PATH=$HOME/bin:$PATH  # $x$ and $$z$$\n```\n\n    indented $x$\n"
    )
    assert math_elements(page) == ["inline"]  # only $y$
    assert "<code>echo $HOME $x$</code>" in page and "<code>kill $$</code>" in page
    code = "".join(re.findall(r"<pre>(.*?)</pre>", page, flags=re.DOTALL))
    text = re.sub(r"<[^>]+>", "", code)
    assert "$HOME/bin:$PATH" in text and "$x$ and $$z$$" in text and "indented $x$" in text


def test_a_notebooks_code_cells_and_outputs_are_left_alone(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# 01 — Maths\n\nThe rank $r$."),
            nbformat.v4.new_code_cell(
                "print('$x$ costs $5')",
                execution_count=1,
                outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="$x$ costs $5\n"),
                    nbformat.v4.new_output(
                        "display_data", data={"text/markdown": "**$y$**", "text/plain": "y"}
                    ),
                ],
            ),
        ]
    )
    path = tmp_path / "01_maths.ipynb"
    nbformat.write(nb, path)
    page = html_site.render(html_site.Page("01", "notebook", path, "Maths"))
    assert math_elements(page) == ["inline"]  # the markdown cell's $r$
    assert page.count("$x$ costs $5") == 2  # the code and its printed output
    assert "$y$" in page  # a text/markdown output is shown as the code cell made it


@pytest.mark.parametrize(
    ("tex", "reason"),
    [
        ("\\foo{x}", "does not know the command \\\\foo"),
        ("\\frac{a}", "missing an argument"),
        ("x^{2", "never closed"),
        ("a}", "never opened"),
        ("x^", "MissingSuperScriptOrSubscriptError"),
    ],
)
def test_tex_that_cannot_be_typeset_is_refused(tex, reason):
    with pytest.raises(ValueError, match=reason) as error:
        html_site.tex_to_mathml(tex)
    assert f"`{tex}`" in str(error.value)


def test_standard_commands_latex2mathml_lacks_are_typeset():
    assert "<mo>arg</mo>" in html_site.tex_to_mathml("\\arg\\min_k x")


def test_a_formula_that_cannot_be_typeset_fails_the_build_naming_page_and_formula(tmp_path):
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    shutil.copytree(ROOT / "lessons", root / "lessons")
    lesson = root / "lessons" / LESSONS[1].name
    lines = lesson.read_text(encoding="utf-8").splitlines()
    lesson.write_text("\n".join([*lines, "", "Broken: $\\frac{a}$."]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as error:
        html_site.build_site(tmp_path / "site", root)
    message = str(error.value)
    assert f"{LESSONS[1].name}, line {len(lines) + 2}" in message
    assert "`\\frac{a}`" in message and "missing an argument" in message
    assert not (tmp_path / "site").exists()


def test_every_page_typesets_its_maths_and_loads_no_mathjax(site):
    for page_file in sorted(site.glob("*.html")):
        page = page_file.read_text(encoding="utf-8")
        assert "mathjax" not in page.lower(), page_file.name
        text = visible_text(page)
        leftover = re.findall(r".{0,30}(?:\$|\\[A-Za-z]+).{0,30}", text)
        assert not leftover, f"{page_file.name}: TeX left as text: {leftover}"


def markdown_of(source: Path) -> str:
    """A lesson's text, or a notebook's markdown cells (where its maths is written)."""
    if source.suffix == ".md":
        return source.read_text(encoding="utf-8")
    cells = nbformat.read(source, as_version=4).cells
    return "\n\n".join(c.source for c in cells if c.cell_type == "markdown")


@pytest.mark.parametrize(
    "source", [p for p in LESSONS + NOTEBOOKS if "$" in markdown_of(p)], ids=lambda p: p.stem
)
def test_pages_with_maths_hold_mathml(site, source):
    page = (site / f"{source.stem}.html").read_text(encoding="utf-8")
    kinds = math_elements(page)
    assert "inline" in kinds, source.name
    if "$$" in markdown_of(source):
        assert "block" in kinds, source.name
