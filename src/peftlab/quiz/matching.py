"""Answer matching: a typed answer covers a key point when it mentions every concept it needs.

Text is split into canonical stems: lowercase, crudely stemmed (`stem_word`) and folded through a
small synonym table, so "quantized the frozen weights" covers a point written as "quantize,
freeze". `check_answer` reports which key points an answer covered and which it missed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

PASS_SCORE = 0.6  # share of key points a typed answer must cover to count as "knew it"

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


def stem_word(word: str) -> str:
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


_SYNONYMS = {stem_word(w): stem_word(group[0]) for group in SYNONYM_GROUPS for w in group}


def normalize(text: str) -> list[str]:
    """Split text into canonical stems (lowercase, stemmed, synonyms folded)."""
    stems = (stem_word(tok) for tok in _TOKEN.findall(text.lower()))
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


def check_answer(question: Any, text: str) -> Check:
    """Compare a typed answer with the key points of `question` (a `quiz.bank.Question`, or
    anything with `key_points`), tolerant of wording."""
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
