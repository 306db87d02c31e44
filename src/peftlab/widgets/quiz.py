"""ipywidgets front ends for the interview drill: flashcards and a timed mock interview.

Each builder is a small class holding its widgets (`.widget` is what a notebook displays), so
tests can press its buttons with `.click()` and read what the learner would see.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets

from peftlab import quiz

COVERED = "#1a7f37"
MISSED = "#cf222e"
UNSURE = "#9a6700"


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def question_html(q: quiz.Question, position: str = "") -> str:
    """The question card: topic, difficulty, lesson and the question itself."""
    head = f"{position} · " if position else ""
    return (
        f"<div style='color:#57606a'>{head}{_esc(q.topic)} · {_esc(q.difficulty)} · "
        f"{_esc(q.lesson)}</div><h4 style='margin:4px 0'>{_esc(q.question)}</h4>"
    )


def answer_html(q: quiz.Question) -> str:
    """The model answer with its key points, common mistakes and the follow-up with its answer
    (folded away, so you can try it first)."""
    points = "".join(f"<li>{_esc(kp.point)}</li>" for kp in q.key_points)
    mistakes = "".join(f"<li>{_esc(m)}</li>" for m in q.mistakes)
    return (
        f"<p><b>Model answer.</b> {_esc(q.answer)}</p><b>Key points</b><ul>{points}</ul>"
        f"<b>Common mistakes</b><ul>{mistakes}</ul><p><b>Follow-up:</b> {_esc(q.follow_up)}</p>"
        f"<details><summary>Answer to the follow-up</summary><p>{_esc(q.follow_up_answer)}</p>"
        "</details>"
    )


VERDICT_COLOURS = {quiz.KNEW: COVERED, quiz.UNSURE: UNSURE, quiz.MISSED: MISSED}
VERDICT_MARKS = {quiz.KNEW: "&#10003;", quiz.UNSURE: "?", quiz.MISSED: "&#10007;"}


def check_html(result: quiz.Grade) -> str:
    """Each key point in its verdict's colour (knew, unsure, missed) with why the checker decided
    (what it looked for, the figure it wanted, or the listed mistake the answer made)."""
    items = []
    for p in result.points:
        why = "" if p.verdict == quiz.KNEW else f" <i>({_esc(p.why)})</i>"
        items.append(
            f"<li style='color:{VERDICT_COLOURS[p.verdict]}'>{VERDICT_MARKS[p.verdict]} "
            f"{_esc(p.point)}{why}</li>"
        )
    ask = (
        " The checker can't tell: after reading the key points, say whether you knew it."
        if result.verdict == quiz.UNSURE
        else " Accept it, or override it with 'Knew it' / 'Missed it'."
    )
    return (
        f"<b>Checker: {result.verdict} ({result.score:.0%}; {result.count(quiz.KNEW)} of "
        f"{len(result.points)} key points known).</b>{ask}<ul>{''.join(items)}</ul>"
    )


class Flashcards:
    """Flashcards: topic filter, reveal, "knew it" / "missed it", and a typed-answer check.

    Cards come in Leitner order (missed ones first); with `progress_path`, every mark is saved
    atomically there (pass `quiz.progress_path()` to share progress with `peftlab quiz`).
    """

    def __init__(
        self,
        bank: list[quiz.Question] | None = None,
        progress_path: str | os.PathLike | None = None,
        seed: int | None = 0,
    ) -> None:
        self.bank = bank if bank is not None else quiz.load_bank()
        self.path = Path(progress_path) if progress_path is not None else None
        self.progress, notice = (
            quiz.load_progress(self.path) if self.path else (quiz.Progress(), None)
        )
        self.progress.start_session()
        self.seed = seed
        self.topic = widgets.Dropdown(
            options=[("all topics", None)] + [(t, t) for t in quiz.TOPICS], description="topic"
        )
        self.card = widgets.HTML()
        self.answer = widgets.Textarea(
            placeholder="Say it out loud, or type your answer and press 'Check my answer'",
            layout=widgets.Layout(width="100%", height="90px"),
        )
        self.check_button = widgets.Button(description="Check my answer", icon="check")
        self.accept_button = widgets.Button(description="Accept verdict", disabled=True)
        self.reveal_button = widgets.Button(description="Reveal", icon="eye")
        self.knew_button = widgets.Button(description="Knew it", button_style="success")
        self.missed_button = widgets.Button(description="Missed it", button_style="danger")
        self.feedback = widgets.HTML()
        self.revealed = widgets.HTML()
        self.status = widgets.HTML(f"<i>{_esc(notice)}</i>" if notice else "")
        self.topic.observe(lambda _change: self.deal(), names="value")
        self.check_button.on_click(lambda _b: self.check())
        self.reveal_button.on_click(lambda _b: self.reveal())
        self.accept_button.on_click(lambda _b: self.accept())
        self.knew_button.on_click(lambda _b: self.mark(True))
        self.missed_button.on_click(lambda _b: self.mark(False))
        buttons = [
            self.check_button,
            self.accept_button,
            self.reveal_button,
            self.knew_button,
            self.missed_button,
        ]
        self.widget = widgets.VBox(
            [
                self.topic,
                self.card,
                self.answer,
                widgets.HBox(buttons),
                self.feedback,
                self.revealed,
                self.status,
            ]
        )
        self.deal()

    @property
    def current(self) -> quiz.Question | None:
        return self.deck[self.index] if self.index < len(self.deck) else None

    def deal(self) -> None:
        """Shuffle the deck for the chosen topic in Leitner order and show its first card."""
        pool = quiz.filter_bank(self.bank, self.topic.value)
        self.deck = quiz.choose(
            self.bank, self.progress, len(pool), self.topic.value, seed=self.seed
        )
        self.index = self.known = self.marked = 0
        self._show()

    def check(self) -> quiz.Grade | None:
        """Grade the typed answer per key point; an unsure verdict waits for the learner's own."""
        if self.current is None:
            return None
        self.grade = quiz.grade(self.current, self.answer.value)
        self.feedback.value = check_html(self.grade)
        self.accept_button.disabled = self.grade.verdict == quiz.UNSURE
        self.reveal()
        return self.grade

    def accept(self) -> None:
        """Record the checker's verdict (knew or missed) as the final one."""
        if self.grade is not None and self.grade.verdict != quiz.UNSURE:
            self.mark(self.grade.verdict == quiz.KNEW)

    def reveal(self) -> None:
        if self.current is not None:
            self.revealed.value = answer_html(self.current)

    def mark(self, knew: bool) -> None:
        """Record the final verdict, the learner's own or the accepted checker's (saved if a
        progress path was given), and go on."""
        if self.current is None:
            return
        self.progress.record(self.current.id, knew)
        if self.path is not None:
            quiz.save_progress(self.progress, self.path)
        self.marked += 1
        self.known += int(knew)
        self.index += 1
        self._show()

    def _show(self) -> None:
        self.grade: quiz.Grade | None = None
        self.accept_button.disabled = True
        self.answer.value = ""
        self.feedback.value = self.revealed.value = ""
        q = self.current
        done = f"knew {self.known} of {self.marked} marked"
        if q is None:
            self.card.value = f"<h4>Deck finished: {done}. Pick a topic to deal again.</h4>"
            return
        self.card.value = question_html(q, f"card {self.index + 1} of {len(self.deck)}")
        self.status.value = done


class MockInterview:
    """A timed mock interview: `n` questions across topics, each with a time budget.

    A countdown bar runs in the browser (a Play widget, no kernel threads); the kernel times each
    answer with `clock` when it is submitted and marks answers over budget. The report lists
    score, time and the key points missed.
    """

    def __init__(
        self,
        bank: list[quiz.Question] | None = None,
        n: int = 5,
        seconds_per_question: int = 90,
        seed: int | None = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if seconds_per_question <= 0:
            raise ValueError(
                f"seconds_per_question={seconds_per_question}: must be a positive number of seconds"
            )
        self.bank = bank if bank is not None else quiz.load_bank()
        self.questions = quiz.interview_round(self.bank, n, seed)
        self.seconds = seconds_per_question
        self.clock = clock
        self.rows: list[dict] = []
        self.index = -1
        self.started_at = 0.0
        self.start_button = widgets.Button(description="Start interview", icon="play")
        self.submit_button = widgets.Button(description="Submit answer", disabled=True)
        self.card = widgets.HTML(
            f"<b>{len(self.questions)} questions, {self.seconds} s each.</b> Press start, answer "
            "each one as you would out loud, in writing, then submit."
        )
        self.answer = widgets.Textarea(layout=widgets.Layout(width="100%", height="110px"))
        self.timer = widgets.Play(min=0, max=self.seconds, interval=1000, show_repeat=False)
        self.countdown = widgets.IntProgress(min=0, max=self.seconds, description="time")
        widgets.jslink((self.timer, "value"), (self.countdown, "value"))
        self.report = widgets.HTML()
        self.start_button.on_click(lambda _b: self.start())
        self.submit_button.on_click(lambda _b: self.submit())
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.start_button, self.submit_button, self.countdown]),
                self.card,
                self.answer,
                self.report,
            ]
        )

    @property
    def finished(self) -> bool:
        return self.index >= len(self.questions)

    def start(self) -> None:
        """Begin (or restart) the round at the first question."""
        self.rows, self.index, self.report.value = [], 0, ""
        self.submit_button.disabled = False
        self._ask()

    def submit(self) -> dict | None:
        """Time and check the current answer, then move to the next question or the report."""
        if self.index < 0 or self.finished:
            return None
        q = self.questions[self.index]
        elapsed = self.clock() - self.started_at
        result = quiz.grade(q, self.answer.value)
        row = {
            "id": q.id,
            "question": q.question,
            "verdict": result.verdict,
            "score": result.score,
            "passed": result.verdict == quiz.KNEW,
            "seconds": elapsed,
            "overtime": elapsed > self.seconds,
            "missed": [p.point for p in result.points if p.verdict == quiz.MISSED],
            "unsure": [p.point for p in result.points if p.verdict == quiz.UNSURE],
        }
        self.rows.append(row)
        self.index += 1
        if self.finished:
            self.submit_button.disabled = True
            self.timer.playing = False
            self.card.value = "<b>Interview over.</b>"
            self.answer.value = ""
            self.report.value = report_html(self.rows, self.seconds)
        else:
            self._ask()
        return row

    def _ask(self) -> None:
        q = self.questions[self.index]
        self.card.value = question_html(q, f"question {self.index + 1} of {len(self.questions)}")
        self.answer.value = ""
        self.timer.value = 0
        self.timer.playing = True
        self.started_at = self.clock()


def report_html(rows: list[dict], seconds_per_question: int) -> str:
    """The mock interview's report: per question verdict and score, time (over budget in red),
    and the key points missed or unsure."""
    body = []
    for i, r in enumerate(rows, 1):
        colour = VERDICT_COLOURS[r["verdict"]]
        time_style = f" style='color:{MISSED}'" if r["overtime"] else ""
        missed = "; ".join(_esc(m) for m in r["missed"]) or "none"
        unsure = "; ".join(_esc(m) for m in r["unsure"]) or "none"
        body.append(
            f"<tr><td>{i}</td><td>{_esc(r['question'])}</td>"
            f"<td style='color:{colour}'>{r['verdict']} ({r['score']:.0%})</td>"
            f"<td{time_style}>{r['seconds']:.0f} s</td><td>{missed}</td><td>{unsure}</td></tr>"
        )
    passed = sum(r["passed"] for r in rows)
    over = sum(r["overtime"] for r in rows)
    return (
        f"<b>Knew {passed} of {len(rows)}; {over} over the {seconds_per_question} s budget.</b>"
        "<table><tr><th>#</th><th>question</th><th>verdict</th><th>time</th>"
        f"<th>missed key points</th><th>unsure</th></tr>{''.join(body)}</table>"
    )
