"""Lesson 06's cheat sheet lays out the question bank: every question once, counts per topic."""

from peftlab.lessons.lesson06_interview import cheat_sheet
from peftlab.quiz import load_topics

TOPICS = load_topics()


def test_every_question_once_and_tldr_last():
    text = cheat_sheet(TOPICS)
    for t in TOPICS:
        assert f"\n## {t.title}\n" in text
        for q in t.questions:
            assert text.count(f"**{q.question}**") == 1
            assert all(kp.point in text for kp in q.key_points)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[-2:] == ["## Interview answer", "## TL;DR"]
    tldr = text.split("## TL;DR", 1)[1]
    assert all(t.tldr in tldr for t in TOPICS)


def test_counts_table_follows_the_bank():
    text = cheat_sheet(TOPICS[:2])
    assert "## LoRA" not in text
    first = TOPICS[0]
    hard = sum(q.difficulty == "hard" for q in first.questions)
    assert f"| {hard} | {len(first.questions)} |" in text.split("\n## ", 1)[0]


def test_figures_draw_the_bank_and_the_learner():
    from peftlab import quiz
    from peftlab.lessons.lesson06_interview import bank_figure, boxes_table, learning_figure

    ax = bank_figure(TOPICS).axes[0]
    widths = [bar.get_width() for bar in ax.patches]
    assert sum(widths) == sum(len(t.questions) for t in TOPICS)
    bank = [q for t in TOPICS for q in t.questions]
    history = quiz.simulate_learner(bank, 3, 5, {"easy": 1, "medium": 2, "hard": 3}, seed=0)
    lines = learning_figure(history).axes[0].lines
    assert [list(line.get_ydata()) for line in lines[:1]] == [[h["1"] for h in history]]
    assert boxes_table().splitlines()[-1] == "| due again after (sessions) | 1 | 2 | 4 | 8 | 16 |"
