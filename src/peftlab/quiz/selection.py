"""Which questions to ask: filters, Leitner order, a mock interview round, and progress counts.

`choose` asks due cards from the lowest box first, then unseen ones, then the rest;
`interview_round` walks across topics like an interviewer; `simulate_learner` runs the boxes for
a learner who needs k attempts per difficulty, to show how the schedule behaves.
"""

from __future__ import annotations

import random
from typing import Any

from peftlab.quiz.bank import DIFFICULTIES, TOPICS, Question
from peftlab.quiz.progress import BOX_INTERVAL_SESSIONS, BOXES, Progress


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
