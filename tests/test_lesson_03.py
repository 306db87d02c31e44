"""lessons/03-qlora.md quotes tables and numbers the package computes; keep them in step."""

from pathlib import Path

import pytest
import torch

from peftlab.lessons import lesson03_qlora as lesson

LESSON = Path(__file__).resolve().parents[1] / "lessons" / "03-qlora.md"


@pytest.fixture(scope="module")
def text() -> str:
    return LESSON.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def weights():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield lesson.lesson_weights(lesson.LESSON_MODEL)
    torch.set_num_threads(threads)


def test_lesson_tables_are_current(text, weights, tmp_path):
    folder = lesson.model_folder(lesson.LESSON_MODEL, tmp_path)
    stale = {name: table for name, table in lesson.lesson_03_tables(weights, folder).items()
             if table not in text}  # fmt: skip
    assert not stale, "stale lesson tables; paste:\n\n" + "\n\n".join(stale.values())


def test_lesson_numbers_are_current(text, weights):
    stale = {k: v for k, v in lesson.lesson_03_facts(weights).items() if v not in text}
    assert not stale, f"numbers missing from the lesson: {stale}"


def test_published_figures_still_hold(text):
    assert "0.126953125" in text and "0.373046875" in text  # numbers.md: QLoRA section 3
    assert "0.9677083" in text  # bitsandbytes' create_normal_map offset
    assert "| 15 | `1111` | +1.0000 |" in text and "| 7 | `0111` | +0.0000 |" in text


def test_lesson_names_the_model_it_measures(text):
    assert f"`{lesson.LESSON_MODEL}`" in text


def test_lesson_has_the_required_sections(text):
    for heading in ("## Interview answer", "## TL;DR", "Analogy", "## 8. Paged optimizers"):
        assert heading in text
