"""The interview question bank: `quiz/questions/<topic>.yaml`, loaded and validated.

Each file is a `Topic` (title, one-line TL;DR, questions); each `Question` has a model answer of
30-90 s spoken, 3-6 key points (each naming the concepts an answer must mention), common mistakes,
a follow-up question with its answer, and the lesson it comes from. A number in a key point is
matched within `quiz.NUMBER_TOLERANCE` of the bank's figure; a question whose figures are rougher
states its own `tolerance` (a share of the figure, e.g. 0.1). Loading checks all of it, and
errors name the file and the question. The bank ships inside the package (package data), so
`peftlab quiz` works from an installed wheel; which lesson a question points to is checked
against the checkout's `lessons/` when there is one (`tests/test_question_bank.py` always has one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from peftlab import paths
from peftlab.quiz.matching import STOPWORDS, KeyPoint, normalize

TOPICS: tuple[str, ...] = (
    "peft-basics",
    "full-ft-memory",
    "lora",
    "qlora",
    "merging",
    "before-after-demo",
    "trade-offs",
    "peft-methods",
    "learning-forgetting",
    "past-one-machine",
    "real-model",
    "preferences-rewards",
)
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
CHEAT_SHEET = "06-interview-cheatsheet.md"  # laid out from the bank: no question points to it
ANSWER_WORDS = (75, 230)  # 30-90 s spoken at roughly 150 words per minute
KEY_POINTS = (3, 6)
FOLLOW_UP_WORDS = (15, 120)  # the answer to a follow-up: a few sentences


@dataclass(frozen=True)
class Question:
    """One interview question with its model answer and what a good answer must cover."""

    id: str
    topic: str
    difficulty: str
    question: str
    answer: str
    key_points: tuple[KeyPoint, ...]
    mistakes: tuple[str, ...]
    follow_up: str
    follow_up_answer: str
    lesson: str
    numbers: tuple[dict[str, Any], ...] = ()
    tolerance: float | None = None  # None: quiz.NUMBER_TOLERANCE


@dataclass(frozen=True)
class Topic:
    """A bank file: its questions plus the one-line summary used in the cheat sheet's TL;DR."""

    name: str
    title: str
    tldr: str
    questions: tuple[Question, ...]
    numbers: tuple[dict[str, Any], ...] = ()


def default_bank_dir() -> Path:
    """`peftlab/quiz/questions/`, the bank the package ships."""
    return paths.question_bank_dir()


def _need(cond: bool, where: str, problem: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {problem}")


def _text(value: Any, where: str, name: str) -> str:
    _need(isinstance(value, str) and value.strip() != "", where, f"'{name}' must be non-empty text")
    return " ".join(value.split())


def _numbers(raw: Any, where: str) -> tuple[dict[str, Any], ...]:
    """Numeric claims {claim, value, shown}: tests recompute `value` and find `shown` in text."""
    _need(isinstance(raw, list), where, "'numbers' must be a list")
    for num in raw:
        _need(
            isinstance(num, dict)
            and set(num) == {"claim", "value", "shown"}
            and isinstance(num["value"], int | float),
            where,
            f"number {num!r} needs exactly claim, numeric value and shown",
        )
    return tuple(raw)


def lesson_files() -> tuple[str, ...] | None:
    """The lessons a question may point to: every `lessons/NN-*.md` of the checkout but the
    cheat sheet (a new lesson counts as soon as its file exists); None with no checkout (an
    installed package), where a pointer is only required to look like one."""
    try:
        folder = paths.lessons_dir()
    except FileNotFoundError:
        return None
    found = sorted(folder.glob("[0-9][0-9]-*.md"))
    return tuple(f"lessons/{p.name}" for p in found if p.name != CHEAT_SHEET)


def _question(raw: Any, where: str, topic: str, default_lesson: str | None) -> Question:
    _need(isinstance(raw, dict), where, "each question must be a mapping")
    known = {
        "id",
        "difficulty",
        "question",
        "answer",
        "key_points",
        "mistakes",
        "follow_up",
        "follow_up_answer",
        "lesson",
        "numbers",
        "tolerance",
    }
    unknown = sorted(set(raw) - known)
    _need(not unknown, where, f"unknown field(s) {unknown}; valid: {sorted(known)}")
    qid = _text(raw.get("id"), where, "id")
    where = f"{where.rsplit(':', 1)[0]}: question {qid!r}"
    _need(qid.startswith(f"{topic}-"), where, f"id must start with '{topic}-'")
    difficulty = raw.get("difficulty")
    _need(difficulty in DIFFICULTIES, where, f"difficulty={difficulty!r}; use {DIFFICULTIES}")
    answer = _text(raw.get("answer"), where, "answer")
    words = len(answer.split())
    lo, hi = ANSWER_WORDS
    _need(lo <= words <= hi, where, f"answer has {words} words; keep it {lo}-{hi} (30-90 s)")
    kps = raw.get("key_points")
    _need(isinstance(kps, list), where, "'key_points' must be a list")
    lo, hi = KEY_POINTS
    _need(lo <= len(kps) <= hi, where, f"{len(kps)} key points; give {lo}-{hi}")
    key_points = []
    for kp in kps:
        _need(isinstance(kp, dict) and set(kp) == {"point", "needs"}, where, f"key point {kp!r}")
        needs = kp["needs"]
        _need(
            isinstance(needs, list) and len(needs) >= 2 and all(isinstance(c, str) for c in needs),
            where,
            f"key point {kp['point']!r}: 'needs' must list at least 2 concept words",
        )
        for concept in needs:
            for alt in concept.split("|"):
                _need(
                    bool(normalize(alt)) and alt.strip().lower() not in STOPWORDS,
                    where,
                    f"key point {kp['point']!r}: concept {alt!r} is empty or a stopword",
                )
        key_points.append(KeyPoint(_text(kp["point"], where, "point"), tuple(needs)))
    mistakes = raw.get("mistakes")
    _need(
        isinstance(mistakes, list) and len(mistakes) >= 1,
        where,
        "'mistakes' must list at least one common mistake",
    )
    lesson = raw.get("lesson", default_lesson)
    lessons = lesson_files()
    if lessons is None:
        pointer = isinstance(lesson, str) and re.fullmatch(r"lessons/\d\d-[\w-]+\.md", lesson)
        _need(bool(pointer), where, f"lesson={lesson!r}; name a file such as lessons/02-lora.md")
    else:
        _need(lesson in lessons, where, f"lesson={lesson!r}; use one of {lessons}")
    numbers = _numbers(raw.get("numbers", []), where)
    follow_up_answer = _text(raw.get("follow_up_answer"), where, "follow_up_answer")
    words = len(follow_up_answer.split())
    lo, hi = FOLLOW_UP_WORDS
    _need(lo <= words <= hi, where, f"follow_up_answer has {words} words; keep it {lo}-{hi}")
    tolerance = raw.get("tolerance")
    _need(
        tolerance is None
        or (
            isinstance(tolerance, int | float)
            and not isinstance(tolerance, bool)
            and 0 < tolerance < 1
        ),
        where,
        f"tolerance={tolerance!r}: give a share of the bank's figure between 0 and 1, e.g. 0.1",
    )
    return Question(
        id=qid,
        topic=topic,
        difficulty=difficulty,
        question=_text(raw.get("question"), where, "question"),
        answer=answer,
        key_points=tuple(key_points),
        mistakes=tuple(_text(m, where, "mistakes") for m in mistakes),
        follow_up=_text(raw.get("follow_up"), where, "follow_up"),
        follow_up_answer=follow_up_answer,
        lesson=lesson,
        numbers=tuple(numbers),
        tolerance=None if tolerance is None else float(tolerance),
    )


# libyaml's safe loader where PyYAML was built with it (its wheels are): the same documents,
# parsed about ten times faster than by the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_topic(path: str | os.PathLike) -> Topic:
    """Read and validate one bank file; errors name the file and the question."""
    path = Path(path)
    where = str(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML ({exc})") from None
    _need(isinstance(data, dict), where, "expected a mapping with topic, title, tldr, questions")
    topic = data.get("topic")
    _need(topic == path.stem, where, f"topic={topic!r} must equal the file name {path.stem!r}")
    questions = data.get("questions")
    _need(isinstance(questions, list) and questions, where, "'questions' must be a non-empty list")
    parsed = tuple(
        _question(q, f"{where}: question #{i + 1}", topic, data.get("lesson"))
        for i, q in enumerate(questions)
    )
    return Topic(
        name=topic,
        title=_text(data.get("title"), where, "title"),
        tldr=_text(data.get("tldr"), where, "tldr"),
        questions=parsed,
        numbers=_numbers(data.get("numbers", []), where),
    )


def load_topics(folder: str | os.PathLike | None = None) -> list[Topic]:
    """All bank files in TOPICS order (unknown file names are an error, not ignored)."""
    folder = Path(folder) if folder is not None else default_bank_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no question bank (*.yaml) in {folder}")
    unknown = [f.name for f in files if f.stem not in TOPICS]
    _need(not unknown, str(folder), f"unknown topic file(s) {unknown}; topics are {TOPICS}")
    topics = sorted((load_topic(f) for f in files), key=lambda t: TOPICS.index(t.name))
    seen: dict[str, str] = {}
    for t in topics:
        for q in t.questions:
            _need(q.id not in seen, f"{folder}/{t.name}.yaml", f"duplicate question id {q.id!r}")
            seen[q.id] = t.name
    return topics


def load_bank(folder: str | os.PathLike | None = None) -> list[Question]:
    """Every question of the bank, in topic order."""
    return [q for t in load_topics(folder) for q in t.questions]
