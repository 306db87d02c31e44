"""Lesson 06, the interview cheat sheet (notebook 06, lessons/06-interview-cheatsheet.md).

The cheat sheet is the question bank (`src/peftlab/quiz/questions/*.yaml`, read by
`peftlab.quiz`) laid out one line per question, so the two never drift: `peftlab lessons 06
--write` regenerates it.
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from peftlab.quiz.bank import DIFFICULTIES, Topic, load_topics
from peftlab.quiz.matching import NUMBER_TOLERANCE
from peftlab.quiz.progress import BOX_INTERVAL_SESSIONS
from peftlab.tables import markdown_table

LESSON = "06-interview-cheatsheet.md"
NOTEBOOK = "06_interview_drill.ipynb"
TRAINS = False
TOLERANCE: dict = {}
SIXTY_SECOND_ANSWER = "peft-basics-what-is-peft"


def results() -> dict:
    """The question bank, by topic, and how far a typed number may be from the bank's."""
    return {"topics": load_topics(), "number tolerance": NUMBER_TOLERANCE}


def quotes(results: Mapping) -> dict[str, str]:
    """The cheat sheet (everything below its introduction) and the answer checker's tolerance."""
    return {
        "cheat sheet": cheat_sheet(results["topics"]),
        "number tolerance": f"{results['number tolerance']:.0%}",
    }


def cheat_sheet(topics: list[Topic]) -> str:
    """The cheat sheet as markdown: counts, one line per question, an interview answer, TL;DR."""
    lines = [
        "| Topic | Lesson | " + " | ".join(d.capitalize() for d in DIFFICULTIES) + " | Total |",
        "|---|---|" + "---:|" * (len(DIFFICULTIES) + 1),
    ]
    for t in topics:
        counts = [sum(q.difficulty == d for q in t.questions) for d in DIFFICULTIES]
        numbers = sorted({q.lesson.removeprefix("lessons/")[:2] for q in t.questions})
        lesson = ", ".join(numbers)
        cells = " | ".join(str(c) for c in counts)
        lines.append(f"| {t.title} | {lesson} | {cells} | {len(t.questions)} |")
    for t in topics:
        lines += ["", f"## {t.title}", ""]
        for q in t.questions:
            points = " · ".join(kp.point for kp in q.key_points)
            lines.append(f"- **{q.question}** {points}.")
    by_id = {q.id: q for t in topics for q in t.questions}
    if SIXTY_SECOND_ANSWER in by_id:
        q = by_id[SIXTY_SECOND_ANSWER]
        lines += ["", "## Interview answer", "", f"*{q.question}*", "", f"> {q.answer}"]
    lines += ["", "## TL;DR", ""]
    lines += [f"- **{t.title}:** {t.tldr}" for t in topics]
    return "\n".join(lines)


def bank_figure(topics: list[Topic]) -> Figure:
    """Questions per topic, stacked by difficulty."""
    fig = Figure(figsize=(7, 2.8))
    ax = fig.add_subplot()
    left = [0] * len(topics)
    for difficulty, colour in zip(DIFFICULTIES, ("#8cc084", "#f2b134", "#d1495b"), strict=True):
        counts = [sum(q.difficulty == difficulty for q in t.questions) for t in topics]
        ax.barh([t.name for t in topics], counts, left=left, color=colour, label=difficulty)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("questions")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title("Interview bank by topic and difficulty")
    fig.tight_layout()
    return fig


def boxes_table() -> str:
    """After how many sessions a card in each Leitner box is due again."""
    intervals = BOX_INTERVAL_SESSIONS
    header = ["box", *(str(b) for b in intervals)]
    return markdown_table(header, [["due again after (sessions)", *intervals.values()]])


def learning_figure(history: list[dict]) -> Figure:
    """Cards per Leitner box after each session of `quiz.simulate_learner`, and those unseen."""
    fig = Figure(figsize=(7, 2.8))
    ax = fig.add_subplot()
    sessions = range(1, len(history) + 1)
    for box in ("1", "2", "3", "4", "5"):
        ax.plot(sessions, [h[box] for h in history], marker="o", ms=3, label=f"box {box}")
    ax.plot(sessions, [h["unseen"] for h in history], "k--", lw=1, label="unseen")
    ax.set_xlabel("session")
    ax.set_ylabel("cards")
    ax.legend(ncol=3, fontsize=8)
    ax.set_title("Cards climb the boxes; missed ones keep coming back")
    fig.tight_layout()
    return fig
