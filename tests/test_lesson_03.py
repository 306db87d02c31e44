"""Lesson 03 beyond its prose (tests/test_lesson_prose.py): the figures it quotes from papers
and from bitsandbytes, which no function of ours computes."""

from peftlab import paths
from peftlab.lessons import lesson03_qlora as lesson


def test_published_figures_still_hold():
    text = (paths.lessons_dir() / lesson.LESSON).read_text(encoding="utf-8")
    assert "0.126953125" in text and "0.373046875" in text  # numbers.md: QLoRA section 3
    assert "0.9677083" in text  # bitsandbytes' create_normal_map offset
    assert "| 15 | `1111` | +1.0000 |" in text and "| 7 | `0111` | +0.0000 |" in text
    assert "## 8. Paged optimizers" in text
