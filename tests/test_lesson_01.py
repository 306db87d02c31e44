"""lessons/01-peft-basics.md quotes tables and numbers the package computes; keep them in step."""

from pathlib import Path

import pytest

from peftlab.lessons import lesson01_peft_basics as lesson

LESSON = Path(__file__).resolve().parents[1] / "lessons" / "01-peft-basics.md"


@pytest.fixture(scope="module")
def text() -> str:
    return LESSON.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["bytes per parameter", "rule of thumb", "methods", "ranks"])
def test_lesson_tables_are_current(text, name):
    table = lesson.lesson_01_tables()[name]
    assert table in text, f"lesson table {name!r} is stale; paste:\n{table}"


def test_peft_methods_table_is_current(text):
    table = lesson.peft_methods_table()
    assert table in text, f"PEFT methods table is stale; paste:\n{table}"


def test_lesson_numbers_are_current(text):
    stale = {k: v for k, v in lesson.lesson_01_facts().items() if v not in text}
    assert not stale, f"numbers missing from the lesson: {stale}"


def test_published_figures_still_hold():
    facts = lesson.lesson_01_facts()
    assert facts["llama-2-7b parameters"] == "6,738,415,616"  # numbers.md
    assert facts["lora r=8 q,v trainable"] == "4,194,304"  # numbers.md


def test_lesson_has_the_required_sections(text):
    for heading in ("## Interview answer", "## TL;DR", "Analogy"):
        assert heading in text


def test_notebook_prose_numbers_are_current():
    import json

    from peftlab import memory

    path = LESSON.parents[1] / "notebooks" / "01_full_ft_vs_peft.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    totals = {m: memory.estimate("llama-2-7b", method=m).total / 1e9 for m in memory.METHODS}
    facts = lesson.lesson_01_facts()
    expected = [
        f"full ≈ {totals['full']:.0f} GB",
        f"LoRA ≈ {totals['lora']:.0f} GB",
        f"QLoRA ≈ {totals['qlora']:.0f} GB",
        facts["interview: full"],
        facts["interview: lora total"],
        facts["interview: qlora total"],
        facts["interview: lora share"],
    ]
    assert not [e for e in expected if e not in prose], "notebook 01 prose is stale"
