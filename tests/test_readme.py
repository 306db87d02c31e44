"""The README is a short front door whose numbers are computed regions, checked like a lesson's.

A README region is named after the lesson that computes it and that lesson's quote
(`<!-- computed: lesson 11: measures -->`): `lessons.differences(lesson 11)` (the prose test,
`peftlab lessons 11`) compares it, `lessons.write` rewrites it. Here: the README's shape, every
region naming a lesson, and the mechanism on a made-up checkout.
"""

import json
import re
from types import SimpleNamespace

import pytest

from peftlab import lessons, paths

README = paths.course_root() / "README.md"
MAX_LINES = 150


def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, "move detail to docs/ (docs/usage.md)"
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_the_lessons_table_has_a_row_for_every_lesson():
    """A new lesson adds its row (docs/ARCHITECTURE.md, "Adding lesson NN")."""
    text = README.read_text(encoding="utf-8")
    notebooks = sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) == len(lessons.MODULES)
    for notebook in notebooks:
        (lesson,) = paths.lessons_dir().glob(f"{notebook.name[:2]}-*.md")
        row = f"| `{notebook.stem}` | `{lesson.name}` |"
        assert row in text, f"the README's lessons table has no row for {lesson.name}: {row}"


def test_every_readme_region_names_a_lesson_that_quotes_it():
    assert lessons.readme_lessons(), "the README's front-door table is a computed region"


def test_every_link_in_the_readme_points_into_the_repository():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)", text):
        assert (README.parent / target).exists(), f"README links to {target}, not in the checkout"


# --- the mechanism, on a made-up checkout --------------------------------------------------------
@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout with lesson 01's files, a README quoting lessons 01 and 11, and a fake lesson
    01 module that quotes one number and one table."""
    (tmp_path / "lessons").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "lessons" / "01-peft-basics.md").write_text(
        "Rank <!-- computed: rank -->8<!-- /computed -->.\n", encoding="utf-8"
    )
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    text = json.dumps(notebook, indent=1) + "\n"  # as prose.rendered writes it
    (tmp_path / "notebooks" / "01_x.ipynb").write_text(text, encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "Score <!-- computed: lesson 01: score -->0.90<!-- /computed --> and steps "
        "<!-- computed: lesson 11: steps -->40<!-- /computed -->.\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PEFTLAB_ROOT", str(tmp_path))
    quotes = {"rank": "8", "score": "0.90"}
    lesson = SimpleNamespace(
        LESSON="01-peft-basics.md",
        NOTEBOOK="01_x.ipynb",
        TOLERANCE={"score": 0.05},
        quotes=lambda results: dict(quotes, **results),
    )
    return tmp_path, lesson


def test_a_readme_region_is_checked_by_its_lesson_within_its_tolerance(checkout):
    _, lesson = checkout
    assert lessons.differences(lesson, {}) == []
    assert lessons.differences(lesson, {"score": "0.93"}) == []  # within 0.05
    off = lessons.differences(lesson, {"score": "0.70"})
    assert off == ["README.md: 'score' is 0.90, computed 0.70 (± 0.05)"]


def test_a_quote_only_the_readme_holds_counts_as_held(checkout):
    root, lesson = checkout
    (root / "README.md").write_text("Steps <!-- computed: lesson 11: steps -->40<!-- /computed -->")
    assert lessons.differences(lesson, {}) == [
        "computed 'score' is quoted by no region of "
        "['README.md', 'lessons/01-peft-basics.md', 'notebooks/01_x.ipynb']"
    ]


def test_a_readme_region_the_lesson_does_not_quote_is_reported(checkout):
    root, lesson = checkout
    readme = root / "README.md"
    readme.write_text(
        readme.read_text() + "And <!-- computed: lesson 01: typo -->1<!-- /computed -->.\n"
    )
    assert lessons.differences(lesson, {}) == ["README.md: region 'typo' has no computed value"]


def test_writing_a_lesson_rewrites_its_readme_regions_and_no_others(checkout):
    root, lesson = checkout
    readme = root / "README.md"
    before = readme.read_text()
    changed = lessons.write(lesson, {"score": "0.70"})
    assert changed == [readme]
    assert readme.read_text() == before.replace(">0.90<", ">0.70<")  # lesson 11's stays
    assert lessons.differences(lesson, {"score": "0.70"}) == []


def test_a_readme_region_must_name_a_lesson(checkout):
    root, _ = checkout
    (root / "README.md").write_text("<!-- computed: measures -->1<!-- /computed -->\n")
    with pytest.raises(ValueError, match="name a lesson and its quote"):
        lessons.readme_lessons()
