"""Interview rehearsal: the question bank, Leitner-box scheduling and a typed-answer self-check.

The bank lives in `lessons/interview/<topic>.yaml`. Each key point names the concepts an answer
must mention to cover it; `check_answer` matches them on word stems and a small synonym table, so
"quantized the frozen weights" covers a point written as "quantize, freeze".
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from peftlab.atomic import atomic_write_text

TOPICS: tuple[str, ...] = (
    "peft-basics",
    "full-ft-memory",
    "lora",
    "qlora",
    "merging",
    "before-after-demo",
    "trade-offs",
)
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
LESSONS: tuple[str, ...] = (
    "lessons/01-peft-basics.md",
    "lessons/02-lora.md",
    "lessons/03-qlora.md",
    "lessons/04-merging.md",
    "lessons/05-customer-support-demo.md",
)
ANSWER_WORDS = (75, 230)  # 30-90 s spoken at roughly 150 words per minute
KEY_POINTS = (3, 6)
PASS_SCORE = 0.6  # share of key points a typed answer must cover to count as "knew it"
BOXES = 5
BOX_INTERVAL_SESSIONS = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}
PROGRESS_FILE = "quiz-progress.json"
PROGRESS_VERSION = 1

# Words that mean the same thing in this field. Each group maps to its first word.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("freeze", "frozen", "fixed", "locked", "untouched"),
    ("memory", "vram", "ram"),
    ("optimizer", "optimiser"),
    ("quantize", "quantise", "quantization", "quantisation"),
    ("gradient", "grad"),
    ("adapter", "adaptor"),
    ("matrix", "matrices"),
    ("merge", "fold", "fuse"),
    ("parameter", "param"),
    ("reduce", "cut", "shrink", "decrease", "drop", "save", "saving"),
    ("large", "big", "huge"),
    ("small", "tiny", "little"),
    ("expensive", "costly"),
    ("cheap", "inexpensive"),
    ("fast", "quick", "speedy"),
    ("mistake", "error"),
    ("initialize", "initialise", "init", "start"),
    ("0", "zero"),
    ("1", "one"),
    ("2", "two"),
    ("4", "four"),
    ("8", "eight"),
    ("12", "twelve"),
    ("16", "sixteen"),
    ("18", "eighteen"),
)
STOPWORDS = frozenset(
    "a an the of to in on for and or is are be it its this that with as by at from into we you "
    "they them their our your i not no do does so but if then than".split()
)

_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[a-z][a-z0-9]*")
_DERIVATIONS = ("ational", "ation", "ism", "ement", "ment", "ness", "ity", "est", "er", "ly", "al")


def _strip_inflection(word: str) -> str:
    if word.endswith(("ies", "ied")) and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "as")) and len(word) > 3:
        return word[:-1]
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and not word.endswith("eed") and len(word) > len(suffix) + 2:
            word = word[: -len(suffix)]
            doubled = len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz"
            return word[:-1] if doubled else word
    return word


def stem(word: str) -> str:
    """Reduce a lowercase word to a crude stem: "quantized", "quantizing", "quantization" agree."""
    if word[0].isdigit():
        return word.replace(",", "")
    word = _strip_inflection(word)
    for _ in range(2):
        for suffix in _DERIVATIONS:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


_SYNONYMS = {stem(w): stem(group[0]) for group in SYNONYM_GROUPS for w in group}


def normalize(text: str) -> list[str]:
    """Split text into canonical stems (lowercase, stemmed, synonyms folded)."""
    stems = (stem(tok) for tok in _TOKEN.findall(text.lower()))
    return [_SYNONYMS.get(s, s) for s in stems]


@dataclass(frozen=True)
class KeyPoint:
    """One thing a good answer says; covered when every concept in `needs` is mentioned."""

    point: str
    needs: tuple[str, ...]

    def concepts(self) -> list[list[list[str]]]:
        """Each concept as its alternatives, each alternative as a stem sequence."""
        return _concept_stems(self.needs)

    def missing(self, stems: list[str]) -> list[str]:
        """The concepts (as written in the bank) that `stems` does not mention."""
        return [
            raw
            for raw, alts in zip(self.needs, self.concepts(), strict=True)
            if not any(_contains(stems, alt) for alt in alts)
        ]


@functools.cache
def _concept_stems(needs: tuple[str, ...]) -> list[list[list[str]]]:
    return [[normalize(alt) for alt in concept.split("|")] for concept in needs]


def _contains(stems: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(stems[i : i + n] == phrase for i in range(len(stems) - n + 1))


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
    lesson: str
    numbers: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Topic:
    """A bank file: its questions plus the one-line summary used in the cheat sheet's TL;DR."""

    name: str
    title: str
    tldr: str
    questions: tuple[Question, ...]
    numbers: tuple[dict[str, Any], ...] = ()


@dataclass
class Check:
    """Which key points a typed answer covered and which it missed."""

    covered: list[KeyPoint]
    missed: list[KeyPoint]
    missing_concepts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        total = len(self.covered) + len(self.missed)
        return len(self.covered) / total if total else 0.0

    @property
    def passed(self) -> bool:
        return self.score >= PASS_SCORE


def check_answer(question: Question, text: str) -> Check:
    """Compare a typed answer with the question's key points, tolerant of wording."""
    stems = normalize(text)
    result = Check(covered=[], missed=[])
    for kp in question.key_points:
        missing = kp.missing(stems)
        if missing:
            result.missed.append(kp)
            result.missing_concepts[kp.point] = missing
        else:
            result.covered.append(kp)
    return result


# ---------------------------------------------------------------- loading and validation


def default_bank_dir() -> Path:
    """`lessons/interview/` of this checkout."""
    return Path(__file__).resolve().parents[2] / "lessons" / "interview"


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
        "lesson",
        "numbers",
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
    _need(lesson in LESSONS, where, f"lesson={lesson!r}; use one of {LESSONS}")
    numbers = _numbers(raw.get("numbers", []), where)
    return Question(
        id=qid,
        topic=topic,
        difficulty=difficulty,
        question=_text(raw.get("question"), where, "question"),
        answer=answer,
        key_points=tuple(key_points),
        mistakes=tuple(_text(m, where, "mistakes") for m in mistakes),
        follow_up=_text(raw.get("follow_up"), where, "follow_up"),
        lesson=lesson,
        numbers=tuple(numbers),
    )


def load_topic(path: str | os.PathLike) -> Topic:
    """Read and validate one bank file; errors name the file and the question."""
    path = Path(path)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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


# ---------------------------------------------------------------- progress (Leitner boxes)


def progress_path() -> Path:
    """Where progress is kept: $PEFTLAB_DATA_DIR, else the user's data folder."""
    root = os.environ.get("PEFTLAB_DATA_DIR") or platformdirs.user_data_dir("peftlab")
    return Path(root) / PROGRESS_FILE


@dataclass
class Card:
    """What we know about one question: its box (1 = missed recently) and its history."""

    box: int = 1
    seen: int = 0
    correct: int = 0
    last_session: int = 0


@dataclass
class Progress:
    """Leitner boxes: a known card moves up a box and waits longer; a missed one drops to box 1."""

    session: int = 0
    cards: dict[str, Card] = field(default_factory=dict)

    def start_session(self) -> None:
        self.session += 1

    def record(self, qid: str, knew: bool) -> None:
        card = self.cards.setdefault(qid, Card())
        card.seen += 1
        card.correct += int(knew)
        card.box = min(card.box + 1, BOXES) if knew else 1
        card.last_session = self.session

    def is_due(self, qid: str) -> bool:
        card = self.cards.get(qid)
        if card is None:
            return True
        return self.session - card.last_session >= BOX_INTERVAL_SESSIONS[card.box]

    def to_json(self) -> str:
        cards = {k: vars(v) for k, v in sorted(self.cards.items())}
        data = {"version": PROGRESS_VERSION, "session": self.session, "cards": cards}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Progress:
        """Parse a progress file; raise ValueError if it is not one we wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != PROGRESS_VERSION:
            raise ValueError("not a version-1 progress file")
        session, raw_cards = data.get("session"), data.get("cards")
        if not isinstance(session, int) or session < 0 or not isinstance(raw_cards, dict):
            raise ValueError("'session' or 'cards' is malformed")
        cards = {}
        for qid, raw in raw_cards.items():
            if not isinstance(raw, dict) or set(raw) != set(vars(Card())):
                raise ValueError(f"card {qid!r} is malformed")
            if not all(isinstance(v, int) for v in raw.values()) or not 1 <= raw["box"] <= BOXES:
                raise ValueError(f"card {qid!r} has bad values")
            cards[qid] = Card(**raw)
        return cls(session=session, cards=cards)


def load_progress(path: str | os.PathLike | None = None) -> tuple[Progress, str | None]:
    """Read progress; a corrupt file is renamed aside (kept) and a fresh start is returned.

    The second value is a message for the user when that happened, else None.
    """
    path = Path(path) if path is not None else progress_path()
    if not path.exists():
        return Progress(), None
    try:
        return Progress.from_json(path.read_text(encoding="utf-8")), None
    except (ValueError, UnicodeDecodeError) as exc:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        i = 1
        while aside.exists():
            aside = path.with_name(f"{path.name}.corrupt-{stamp}-{i}")
            i += 1
        os.replace(path, aside)
        message = (
            f"quiz progress file {path} could not be read ({exc}); "
            f"kept it as {aside} and started fresh"
        )
        return Progress(), message


def save_progress(progress: Progress, path: str | os.PathLike | None = None) -> Path:
    """Write progress atomically (a crash leaves the old file or the new one, never half)."""
    path = Path(path) if path is not None else progress_path()
    atomic_write_text(path, progress.to_json())
    return path


# ---------------------------------------------------------------- choosing questions


def filter_bank(
    bank: list[Question], topic: str | None = None, difficulty: str | None = None
) -> list[Question]:
    """Questions of one topic and/or difficulty; unknown values are a ValueError."""
    if topic is not None and topic not in TOPICS:
        raise ValueError(f"topic={topic!r} is not a quiz topic; choose one of {', '.join(TOPICS)}")
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty={difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    return [
        q
        for q in bank
        if (topic is None or q.topic == topic)
        and (difficulty is None or q.difficulty == difficulty)
    ]


def choose(
    bank: list[Question],
    progress: Progress,
    n: int,
    topic: str | None = None,
    difficulty: str | None = None,
    seed: int | None = None,
) -> list[Question]:
    """Pick up to `n` questions: due cards from the lowest box first, then unseen, then the rest.

    Missed questions sit in box 1 and are due every session, so they come back first.
    """
    if n <= 0:
        raise ValueError(f"n={n}: the number of questions must be a positive integer")
    pool = filter_bank(bank, topic, difficulty)
    rng = random.Random(seed)
    rng.shuffle(pool)
    cards = progress.cards

    def rank(q: Question) -> tuple[int, int, int]:
        card = cards.get(q.id)
        if card is None:
            return (1, 0, 0)
        if progress.is_due(q.id):
            return (0, card.box, card.last_session)
        due_in = card.last_session + BOX_INTERVAL_SESSIONS[card.box] - progress.session
        return (2, due_in, card.box)

    return sorted(pool, key=rank)[:n]


def summary(bank: list[Question], progress: Progress) -> list[dict[str, Any]]:
    """Per topic: questions, seen, known (box >= 2), how many in each box, and due now."""
    rows = []
    for topic in TOPICS:
        qs = [q for q in bank if q.topic == topic]
        if not qs:
            continue
        cards = [progress.cards[q.id] for q in qs if q.id in progress.cards]
        boxes = {b: sum(c.box == b for c in cards) for b in range(1, BOXES + 1)}
        rows.append(
            {
                "topic": topic,
                "questions": len(qs),
                "seen": len(cards),
                "known": sum(c.box >= 2 for c in cards),
                "boxes": boxes,
                "due": sum(progress.is_due(q.id) for q in qs),
            }
        )
    return rows


def interview_round(bank: list[Question], n: int, seed: int | None = None) -> list[Question]:
    """A mock interview: `n` questions, one topic at a time in turn, medium and hard first.

    Interviews move across topics, so the round visits every topic before repeating one.
    """
    if n <= 0:
        raise ValueError(f"n={n}: the number of questions must be a positive integer")
    rng = random.Random(seed)
    per_topic = {}
    for topic in TOPICS:
        qs = [q for q in bank if q.topic == topic]
        rng.shuffle(qs)
        qs.sort(key=lambda q: q.difficulty == "easy")
        if qs:
            per_topic[topic] = qs
    order = list(per_topic)
    rng.shuffle(order)
    picked: list[Question] = []
    while len(picked) < n and any(per_topic.values()):
        for topic in order:
            if per_topic[topic] and len(picked) < n:
                picked.append(per_topic[topic].pop(0))
    return picked


def simulate_learner(
    bank: list[Question],
    sessions: int,
    n: int,
    attempts_to_learn: dict[str, int],
    seed: int = 0,
) -> list[dict[str, int]]:
    """Leitner boxes over `sessions` sessions of `n` questions for a simulated learner.

    The learner gets a question right from its k-th attempt on (k = attempts_to_learn[difficulty]).
    Returns, after each session, the cards in each box ("1".."5") and how many are unseen.
    """
    progress = Progress()
    attempts: dict[str, int] = {}
    history = []
    for _ in range(sessions):
        progress.start_session()
        for q in choose(bank, progress, n, seed=seed):
            attempts[q.id] = attempts.get(q.id, 0) + 1
            progress.record(q.id, attempts[q.id] >= attempts_to_learn[q.difficulty])
        counts = {str(b): 0 for b in range(1, BOXES + 1)}
        for card in progress.cards.values():
            counts[str(card.box)] += 1
        counts["unseen"] = len(bank) - len(progress.cards)
        history.append(counts)
    return history
