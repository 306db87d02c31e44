"""lessons/05-customer-support-demo.md quotes numbers the package computes; keep them in step.

Numbers that need no training are recomputed here. Numbers that need a fine-tune (the before/after
table, the sweep) are pinned to notebook 05: its cells tagged `nbval-check-output` print them,
nbval re-runs the notebook and fails if those outputs change, and this test fails if the lesson
does not quote the notebook's current outputs.
"""

import json
from pathlib import Path

import pytest

from peftlab.lessons import lesson05_support_demo as lesson
from peftlab.rubric import CRITERIA

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "lessons" / "05-customer-support-demo.md"
NOTEBOOK = ROOT / "notebooks" / "05_customer_support_demo.ipynb"


@pytest.fixture(scope="module")
def text() -> str:
    return LESSON.read_text(encoding="utf-8")


def checked_outputs() -> list[str]:
    """Printed text of every notebook cell whose output nbval checks."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    outputs = []
    for cell in cells:
        if "nbval-check-output" in cell.get("metadata", {}).get("tags", []):
            text = "".join(
                "".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream"
            )
            outputs.append(text.strip())
    return outputs


def test_data_table_is_current(text):
    table = lesson.data_markdown(lesson.data_facts())
    assert table in text, "stale data table; paste:\n\n" + table


def test_memory_table_is_current(text):
    table = lesson.memory_markdown(lesson.memory_rows())
    assert table in text, "stale memory table; paste:\n\n" + table


def test_lesson_quotes_the_notebooks_checked_outputs(text):
    outputs = checked_outputs()
    assert len(outputs) == 5 and all(outputs), "notebook 05 must be committed executed"
    stale = [out for out in outputs if out not in text]
    assert not stale, "stale lesson; paste from notebook 05:\n\n" + "\n\n".join(stale)


def test_notebook_tables_say_what_the_lesson_claims():
    by_criterion = next(out for out in checked_outputs() if "| **mean score** |" in out)
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in by_criterion.splitlines()}
    for criterion in CRITERIA:  # the lesson says every criterion improved
        before, after = (float(v.strip(" %")) for v in rows[criterion])
        assert after > before, criterion


def test_lesson_has_the_required_sections(text):
    for heading in ("## Interview answer", "## TL;DR", "Analogy", "held-out", "stand-in"):
        assert heading in text


def test_sweep_says_what_the_lesson_claims():
    table = next(out for out in checked_outputs() if out.startswith("| rank r |"))
    points = {}
    for line in table.splitlines()[2:]:
        r, steps, _params, loss, score = (cell.strip() for cell in line.strip("|").split("|"))
        points[int(r), int(steps)] = (float(loss), float(score))
    ranks, steps = sorted({r for r, _ in points}), sorted({s for _, s in points})
    for r in ranks:  # the loss falls with more steps, for every rank
        assert points[r, steps[-1]][0] < points[r, steps[0]][0]
    for s in steps:  # and is lower with the larger rank
        assert points[ranks[-1], s][0] < points[ranks[0], s][0]
    # after the longest run the larger rank scores and the smaller one has not yet
    assert points[ranks[-1], steps[-1]][1] > points[ranks[0], steps[-1]][1]
