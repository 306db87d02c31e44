"""Lesson 01 beyond its prose (tests/test_lesson_prose.py): the figures it quotes from papers."""

from peftlab.lessons import lesson01_peft_basics as lesson


def test_published_figures_still_hold():
    quotes = lesson.quotes(lesson.results())
    assert quotes["llama-2-7b parameters"] == "6,738,415,616"  # numbers.md
    assert quotes["lora r=8 q,v trainable"] == "4,194,304"  # numbers.md
