"""Grading a typed answer the way an interviewer would: per key point `knew`, `missed` or `unsure`.

A key point is `knew` when the answer states every concept it needs (through the phrasing
table, `quiz.phrasing`), or states its distinctive figure ("4.2M" for "4,194,304 trainable").
It is `missed` when the checker can tell: nothing of it is there, the answer gives a different
figure of the same kind ("56 GB" where the bank has 107.8 GB), it says the opposite ("would still
train" against "no training"; "not stored" against "stored"), or it asserts one of the
question's listed mistakes (the point the mistake is about fails, and the grade names it).
Anything in between (some concepts there, or only negated ones) is `unsure`, never a confident
`missed`: the learner decides after seeing the key points, and that decision is the one the
Leitner schedule records (`final_verdict`).

The answer as a whole is `knew` when at least `PASS_SCORE` of its points are, and no mistake or
contradiction was found; `missed` when fewer than `UNSURE_FLOOR` of its points are at least
unsure, or it asserts a mistake without `PASS_SCORE` knew; `unsure` otherwise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from peftlab.quiz.matching import (
    NUMBER_TOLERANCE,
    PASS_SCORE,
    STOPWORDS,
    KeyPoint,
    Quantity,
    Text,
    analyse,
    mentions,
    normalize,
)

KNEW, MISSED, UNSURE = "knew", "missed", "unsure"
VERDICTS = (KNEW, MISSED, UNSURE)
UNSURE_FLOOR = 0.5  # below this share of points at least unsure, the answer is missed
MISTAKE_SHARE = 0.7  # share of a mistake's content words one sentence must say to assert it

# A mistake is written "Saying X", "Believing X", ...: X is what an answer would assert. Those
# written "Forgetting X" are omissions, which the key points already catch.
_ASSERTING = frozenset(
    "saying claiming believing thinking assuming calling describing treating confusing "
    "promising accepting quoting putting presenting multiplying dividing counting expecting "
    "reusing reporting using choosing picking comparing".split()
)
_FILLER = frozenset("itself just also even really actually exactly very some".split())


@dataclass(frozen=True)
class PointGrade:
    """One key point's verdict, with what the checker looked for and why it decided."""

    point: str
    verdict: str
    why: str
    missing: tuple[str, ...] = ()
    mistake: str | None = None


@dataclass(frozen=True)
class Grade:
    """An answer's grade: the verdict, a score, and each key point's verdict and reason."""

    id: str
    verdict: str
    score: float
    points: tuple[PointGrade, ...]
    mistakes: tuple[str, ...] = ()

    def count(self, verdict: str) -> int:
        return sum(p.verdict == verdict for p in self.points)

    def to_json(self) -> dict[str, Any]:
        """The shape `peftlab quiz check --json` prints."""
        return {
            "id": self.id,
            "verdict": self.verdict,
            "score": round(self.score, 3),
            "points": [{"point": p.point, "verdict": p.verdict, "why": p.why} for p in self.points],
        }


def final_verdict(grade: Grade, self_assessed: bool | None) -> bool:
    """What the schedule records: the learner's own word where they gave it (after an `unsure`,
    or "I did say that" / "I didn't" over any verdict), else whether the checker said `knew`."""
    if self_assessed is not None:
        return self_assessed
    if grade.verdict == UNSURE:
        raise ValueError("an unsure grade needs the learner's self-assessment (knew or missed)")
    return grade.verdict == KNEW


def _tolerance(question: Any, tolerance: float | None) -> float:
    if tolerance is None:
        tolerance = getattr(question, "tolerance", None)
    if tolerance is None:
        tolerance = NUMBER_TOLERANCE
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance={tolerance!r}: give a share of the bank's figure in [0, 1)")
    return tolerance


def grade(question: Any, text: str, tolerance: float | None = None) -> Grade:
    """Grade a typed answer against `question` (a `quiz.Question`, or anything with
    `key_points`, and optionally `id`, `mistakes` and `tolerance`).

    A number counts within `tolerance` of the bank's, relative to it: the argument if given,
    else the question's own `tolerance`, else `NUMBER_TOLERANCE`.
    """
    tolerance = _tolerance(question, tolerance)
    answer = analyse(text)
    key_points = tuple(question.key_points)
    reference = f"{getattr(question, 'answer', '')}\n{getattr(question, 'follow_up_answer', '')}"
    mistakes, trusted = _calibrate(
        key_points, tuple(getattr(question, "mistakes", ())), reference, tolerance
    )
    figures = _figures(key_points)
    points = [
        _grade_point(kp, answer, tolerance, opposites=i in trusted, figures=figures)
        for i, kp in enumerate(key_points)
    ]
    asserted = [text for text, m in mistakes if _asserts(answer, m)]
    for mistake in asserted:
        i = _point_of(key_points, mistake)
        points[i] = PointGrade(
            points[i].point, MISSED, f"asserts a listed mistake: {mistake}", points[i].missing,
            mistake,
        )  # fmt: skip
    n = len(points)
    knew = sum(p.verdict == KNEW for p in points) / n
    unsure = sum(p.verdict == UNSURE for p in points) / n
    contradicted = any(p.why.startswith("says the opposite") for p in points)
    if asserted or contradicted:
        verdict = UNSURE if knew >= PASS_SCORE else MISSED
    elif knew >= PASS_SCORE:
        verdict = KNEW
    elif knew + unsure >= UNSURE_FLOOR:
        verdict = UNSURE
    else:
        verdict = MISSED
    return Grade(
        getattr(question, "id", ""), verdict, knew + unsure / 2, tuple(points), tuple(asserted)
    )


def _describe(raw: str, concept: list[str] | Quantity, tolerance: float) -> str:
    if isinstance(concept, Quantity):
        return f"{raw} (within {tolerance:.0%})"
    return f'"{raw}"'


def _distinctive(raw: str, q: Quantity) -> bool:
    """A figure that cannot turn up by chance: with a unit or multiplier, in e-notation, or with
    two or more significant digits and not a small whole number ("64", "12" can)."""
    if q.kind is not None or q.scaled or "e" in raw.lower():
        return True
    digits = raw.replace(",", "").replace(".", "").strip("0")
    return len(digits) >= 2 and not (q.written == int(q.written) and q.written < 100)


def _rival(concept: Quantity, found: tuple[Quantity, ...], tolerance: float) -> list[Quantity]:
    """Figures in the answer of the same kind as `concept` that do not match it."""
    if concept.kind is not None:
        same = [q for q in found if q.kind == concept.kind]
    else:
        same = [
            q
            for q in found
            if q.kind is None and 0.1 <= q.value / concept.value <= 10
            if concept.value
        ]
    return [q for q in same if not concept.matches(q, tolerance)]


@functools.lru_cache(maxsize=512)
def _calibrate(
    key_points: tuple[KeyPoint, ...], mistakes: tuple[str, ...], reference: str, tolerance: float
) -> tuple[tuple[tuple[str, _Mistake], ...], frozenset[int]]:
    """What can be trusted for one question, judged on its own model answer (`reference`),
    which is right by construction: the listed mistakes that can be told apart from it (each
    needs words the model answer never uses, and the model answer must not assert it), and the
    key points whose "says the opposite" rules the model answer does not trip."""
    ref = analyse(reference)
    said = set(ref.stems)
    usable = []
    for text in mistakes:
        m = _mistake(text)
        if m is None or len(m.stems) < 2:
            continue
        m = _Mistake(m.stems, m.negated, frozenset(m.stems) - said)
        if m.distinctive and not _asserts(ref, m):
            usable.append((text, m))
    trusted = frozenset(
        i
        for i, kp in enumerate(key_points)
        if _grade_point(kp, ref, tolerance, opposites=True).verdict
        == _grade_point(kp, ref, tolerance, opposites=False).verdict
    )
    return tuple(usable), trusted


def _figures(key_points: tuple[KeyPoint, ...]) -> tuple[Quantity, ...]:
    """Every figure the question's key points ask for."""
    return tuple(
        alt
        for kp in key_points
        for alts in kp.concepts()
        for alt in alts
        if isinstance(alt, Quantity)
    )


def _grade_point(
    kp: KeyPoint,
    answer: Text,
    tolerance: float,
    opposites: bool,
    figures: tuple[Quantity, ...] = (),
) -> PointGrade:
    own = analyse(kp.point)
    point_negates = any(own.cues)
    present, negated_only, missing, rivals = [], [], [], []
    numbers_matched, numbers_total, distinctive_matched = 0, 0, False
    for raw, alts in zip(kp.needs, kp.concepts(), strict=True):
        hits = {alt_i: mentions(answer, alt, tolerance) for alt_i, alt in enumerate(alts)}
        numeric = all(isinstance(a, Quantity) for a in alts)
        numbers_total += numeric
        where = [i for h in hits.values() for i in h]
        if not where:
            missing.append(raw)
            if numeric:
                for alt in alts:
                    if _distinctive(raw, alt):
                        rivals += [
                            q
                            for q in _rival(alt, answer.numbers, tolerance)
                            if not any(f.matches(q, tolerance) for f in figures)
                        ]
            continue
        if numeric:
            numbers_matched += 1
            distinctive_matched |= any(_distinctive(raw, a) for a in alts)
        if all(i >= 0 and answer.negated[i] for i in where) and not point_negates:
            negated_only.append((raw, where))
        else:
            present.append(raw)
    looked_for = ", ".join(
        _describe(raw, alts[0], tolerance)
        for raw, alts in zip(kp.needs, kp.concepts(), strict=True)
        if raw in missing
    )
    # The opposite said: a negated concept in a clause with another of the point's concepts,
    # or a word the point negates ("no training") asserted beside two of its concepts.
    if opposites and negated_only and not point_negates:
        raw, where = negated_only[0]
        if _clause_company(kp, answer, where, tolerance) >= 2:
            return PointGrade(kp.point, MISSED, f'says the opposite: "not {raw}"', tuple(missing))
    if opposites and not point_negates and _only_said_negated(kp, answer, tolerance):
        # "not stored" may deny the point, or a problem the point names ("don't shrink" under
        # rsLoRA): the learner decides.
        return PointGrade(kp.point, UNSURE, "said only in negated clauses", tuple(missing))
    flipped = opposites and _asserts_negated_word(kp, own, answer, tolerance)
    if flipped:
        return PointGrade(
            kp.point, MISSED, f'says the opposite: "{flipped}" where the point says "no {flipped}"'
        )
    if not missing and not negated_only:
        return PointGrade(kp.point, KNEW, "states " + ", ".join(f'"{r}"' for r in kp.needs))
    if numbers_total and numbers_matched == numbers_total and distinctive_matched:
        return PointGrade(kp.point, KNEW, "states the figure", tuple(missing))
    if rivals and numbers_matched == 0:
        target = next(a for alts in kp.concepts() for a in alts if isinstance(a, Quantity))
        rivals.sort(key=lambda q: abs(math.log((abs(q.value) + 1e-300) / (abs(target.value) or 1))))
        given = ", ".join(str(q) for q in dict.fromkeys(rivals[:2]))
        return PointGrade(
            kp.point, MISSED, f"looked for {looked_for}; the answer gives {given}", tuple(missing)
        )
    if not present and not negated_only:
        return PointGrade(kp.point, MISSED, f"looked for {looked_for}", tuple(missing))
    parts = []
    if present:
        parts.append("found " + ", ".join(f'"{r}"' for r in present))
    if missing:
        parts.append(f"not {looked_for}")
    if negated_only:
        parts.append("only negated: " + ", ".join(f'"{r}"' for r, _ in negated_only))
    return PointGrade(kp.point, UNSURE, "; ".join(parts), tuple(missing))


def _only_said_negated(kp: KeyPoint, answer: Text, tolerance: float) -> bool:
    """Whether the clauses holding two or more of the point's concepts all carry a negation
    ("activations are not stored for the backward pass" against "activations are stored")."""
    per_clause: dict[int, int] = {}
    for alts in kp.concepts():
        hits = {
            answer.clauses[i] for alt in alts for i in mentions(answer, alt, tolerance) if i >= 0
        }
        for c in hits:
            per_clause[c] = per_clause.get(c, 0) + 1
    together = [c for c, n in per_clause.items() if n >= 2]
    negated = {answer.clauses[i] for i, cue in enumerate(answer.cues) if cue}
    return bool(together) and all(c in negated for c in together)


def _clause_company(kp: KeyPoint, answer: Text, where: list[int], tolerance: float) -> int:
    """How many of the point's concepts share a clause with the first of the `where` hits."""
    clauses = {answer.clauses[i] for i in where if i >= 0}
    count = 0
    for alts in kp.concepts():
        hits = [i for alt in alts for i in mentions(answer, alt, tolerance) if i >= 0]
        count += any(answer.clauses[i] in clauses for i in hits)
    return count


def _asserts_negated_word(kp: KeyPoint, own: Text, answer: Text, tolerance: float) -> str | None:
    """A word the point negates ("no training": "train") said plainly in a clause that holds
    two or more of the point's concepts ("if both were zero it would still train")."""
    concept_stems = {s for alts in kp.concepts() for a in alts if isinstance(a, list) for s in a}
    words = []
    for i, cue in enumerate(own.cues):
        if cue and i + 1 < len(own.stems):
            nxt = own.stems[i + 1]
            if nxt not in STOPWORDS and nxt not in concept_stems and not nxt[0].isdigit():
                words.append(nxt)
    for word in words:
        for i, stem in enumerate(answer.stems):
            if stem != word or answer.negated[i]:
                continue
            company = 0
            for alts in kp.concepts():
                hits = [j for alt in alts for j in mentions(answer, alt, tolerance) if j >= 0]
                company += any(answer.clauses[j] == answer.clauses[i] for j in hits)
            if company >= 2:
                return word
    return None


@dataclass(frozen=True)
class _Mistake:
    stems: tuple[str, ...]
    negated: bool
    distinctive: frozenset[str] = frozenset()  # its words the model answer never uses


def _mistake(text: str) -> _Mistake | None:
    """The claim a mistake describes, as content stems, or None for an omission."""
    first, _, rest = text.partition(" ")
    if first.lower() not in _ASSERTING:
        return None
    claim = rest.split("(")[0].split(";")[0]
    read = analyse(claim)
    keep = tuple(
        dict.fromkeys(
            s
            for s, cue in zip(read.stems, read.cues, strict=True)
            if not cue and s not in STOPWORDS and s not in _FILLER
        )
    )
    return _Mistake(keep, any(read.cues))


def _asserts(answer: Text, mistake: _Mistake) -> bool:
    """Whether one sentence of the answer says most of the mistake's claim, including one of
    its distinctive words (if it has any), negated as the mistake is."""
    need = max(2, math.ceil(MISTAKE_SHARE * len(mistake.stems)))
    sentence_of = dict(zip(answer.clauses, answer.sentences, strict=True))
    words_of: dict[int, list[int]] = {}  # each clause's word indices (clauses never go back)
    for i, c in enumerate(answer.clauses):
        words_of.setdefault(c, []).append(i)
    for clause, sentence in sentence_of.items():
        idx = [
            i
            for i in words_of[clause] + words_of.get(clause + 1, [])
            if answer.sentences[i] == sentence
        ]
        said = {answer.stems[i] for i in idx}
        hits = [s for s in mistake.stems if s in said]
        if len(hits) < need or (mistake.distinctive and not mistake.distinctive & said):
            continue
        hit_idx = [i for i in idx if answer.stems[i] in hits]
        if any(answer.negated[i] for i in hit_idx) == mistake.negated:
            return True
    return False


def _point_of(key_points: tuple[KeyPoint, ...], mistake_text: str) -> int:
    """The key point a mistake is about: the one sharing most words with it (the first on a tie)."""
    mistake = set(normalize(mistake_text)) - STOPWORDS
    overlap = [
        len(mistake & (set(normalize(kp.point)) | set(normalize(" ".join(kp.needs)))))
        for kp in key_points
    ]
    return overlap.index(max(overlap))


@dataclass
class Check:
    """Which key points a typed answer covered (`knew`) and which it did not (the older view
    of a `Grade`, kept for callers that count covered points)."""

    covered: list[KeyPoint]
    missed: list[KeyPoint]
    missing_concepts: dict[str, list[str]] = field(default_factory=dict)
    grade: Grade | None = None

    @property
    def score(self) -> float:
        total = len(self.covered) + len(self.missed)
        return len(self.covered) / total if total else 0.0

    @property
    def passed(self) -> bool:
        return self.score >= PASS_SCORE


def check_answer(question: Any, text: str, tolerance: float | None = None) -> Check:
    """`grade` seen as covered (`knew`) and not covered key points."""
    result = grade(question, text, tolerance)
    check = Check(covered=[], missed=[], grade=result)
    for kp, pg in zip(question.key_points, result.points, strict=True):
        if pg.verdict == KNEW:
            check.covered.append(kp)
        else:
            check.missed.append(kp)
            check.missing_concepts[kp.point] = list(pg.missing) or list(kp.needs)
    return check
