"""`peftlab lessons new NN NAME` writes a lesson that passes the course's checks at once.

A copy of the checkout (its package, lessons, notebooks, tests and README) gets a lesson 98;
then the prose, rendering, notebook, layout and README tests run in that copy, on its own
package (PYTHONPATH), with the new lesson's own test, and nbval executes its notebook. The
checkout itself is never written.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peftlab import cli

pytestmark = pytest.mark.slow  # a pytest run in a copy of the checkout (about a minute)

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", "runs")


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    for folder in ("src", "lessons", "notebooks", "tests"):
        shutil.copytree(ROOT / folder, root / folder, ignore=IGNORE)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    return root


@pytest.fixture(scope="module")
def scaffolded(copy):
    os.environ["PEFTLAB_ROOT"] = str(copy)
    try:
        assert cli.main(["lessons", "new", "98", "throwaway-check"]) == 0
    finally:
        del os.environ["PEFTLAB_ROOT"]
    return copy


def test_it_writes_the_four_files_and_the_readme_row(scaffolded):
    for relative in (
        "lessons/98-throwaway-check.md",
        "notebooks/98_throwaway_check.ipynb",
        "src/peftlab/lessons/lesson98_throwaway_check.py",
        "tests/test_lesson_98.py",
    ):
        assert (scaffolded / relative).is_file(), relative
        assert not (ROOT / relative).exists(), f"{relative} was written into the checkout"
    readme = (scaffolded / "README.md").read_text(encoding="utf-8")
    assert "| `98_throwaway_check` | `98-throwaway-check.md` |" in readme


def test_the_scaffolded_lesson_passes_the_courses_checks(scaffolded):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEFTLAB_")}
    env |= {"PYTHONPATH": str(scaffolded / "src"), "OMP_NUM_THREADS": "1"}
    env["PEFTLAB_ROOT"] = str(scaffolded)
    tests = [
        "tests/test_lesson_98.py",
        "tests/test_lesson_prose.py::test_every_lesson_module_has_the_same_shape[lesson98_throwaway_check]",
        "tests/test_lesson_prose.py::test_prose_quotes_what_the_code_computes[lesson98_throwaway_check]",
        "tests/test_lesson_prose.py::test_every_tolerance_names_a_quote_and_its_columns[lesson98_throwaway_check]",
        "tests/test_lesson_prose.py::test_lesson_has_the_required_sections[lesson98_throwaway_check]",
        "tests/test_lesson_rendering.py::test_no_region_marker_breaks_a_paragraph",
        "tests/test_notebook.py::test_every_notebook_opens_with_its_title_then_setup[98_throwaway_check.ipynb]",
        "tests/test_layout.py",
        "tests/test_readme.py::test_the_lessons_table_has_a_row_for_every_lesson",
        "notebooks/98_throwaway_check.ipynb",  # executed, as `make test` executes every notebook
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--nbval-lax", "--nbval-current-env", *tests],
        cwd=scaffolded, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["new", "98"], "usage: peftlab lessons new NN NAME"),
        (["new", "9", "x"], "give two digits"),
        (["new", "98", "Bad Name"], "lower-case words"),
        (["new", "01", "again"], "lesson 01 exists"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(copy, monkeypatch, capsys, words, message):
    monkeypatch.setenv("PEFTLAB_ROOT", str(copy))
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    assert cli.main(["lessons", *words]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
