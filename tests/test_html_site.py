"""`make html` (`peftlab html`): a page per lesson and per executed notebook, figures included."""

import json
import re
import shutil
from pathlib import Path

import pytest

from peftlab import cli, html_site

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
    assert len(LESSONS) == len(NOTEBOOKS) == 6


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


def test_rebuild_replaces_the_site_whole(site, tmp_path):
    out = tmp_path / "site"
    shutil.copytree(site, out)
    (out / "stale.html").write_text("from an older build")
    html_site.build(out)
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
        html_site.build(out)
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
        html_site.build(tmp_path / "site", root)
    assert not (tmp_path / "site").exists()


def test_root_without_lessons_is_refused(tmp_path):
    with pytest.raises(ValueError, match="point --root at a peft-lab checkout"):
        html_site.find_pages(tmp_path)
