"""Answer matching: a typed answer covers a key point when it mentions every concept it needs.

Text is split into canonical stems: rewritten through the phrasing table (`quiz.phrasing`:
"OOM", "sqrt(r)", "16P/N", "three"), crudely stemmed (`stem_word`) and folded through synonyms,
so "quantized the frozen weights" covers a point written as "quantize, freeze". `analyse` also
keeps each word's sentence and clause and whether a negation covers it, for `quiz.grading`.
The stemmer and `STOPWORDS` are the grader's, not the reply rubric's (`rubric.stem`): the
grader folds derivations and drops only function words, the rubric keeps derivations apart and
drops every word that names no problem; one shared stemmer would change the rubric's faithful
check, and so scores the lessons teach (`rubric`'s docstring has the count).

A concept that is a number ("0.126953125", "302 MB", "16 bytes", "65b") is matched the way a
person grades, by value (`Quantity`, `quantities`): "0.127", "~300 MB", "0.3 GB", "4.2 million"
and "6,738,415,616" all count when they are within `NUMBER_TOLERANCE` of the bank's figure (a
question may set its own `tolerance`), or are the figure correctly rounded to the two or more
significant digits written. Units are converted, never ignored: a concept with a unit needs the
same kind of unit in the answer ("302 GB", "302 MiB" and a bare "302" miss "302 MB").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from peftlab.quiz.phrasing import NEGATIONS, NUMBER_WORDS, SYNONYM_GROUPS, rewrite

PASS_SCORE = 0.6  # share of key points a typed answer must cover to count as "knew it"

# How far a typed number may be from the bank's and still count, relative to the bank's. 4%
# takes every sensible rounding of a figure to two significant digits ("112 GB" for 111.5,
# "0.13 bits" for 0.12695, "~300 MB" for 302) and stays below the 4.9% between MiB and MB and the
# 7.4% between GiB and GB, so a figure given in the wrong one of those units does not pass. A
# question whose figures are rougher sets `tolerance:` in its bank entry.
NUMBER_TOLERANCE = 0.04

# Units a number may carry: unit -> (what it measures, factor to the base unit). Bits and bytes
# are one quantity (8 bits = 1 byte), so "16-bit" and "2 bytes" agree and "0.5 bits" and "0.5
# bytes" do not.
UNITS: dict[str, tuple[str, float]] = {
    "bit": ("bytes", 1 / 8),
    "bits": ("bytes", 1 / 8),
    "byte": ("bytes", 1.0),
    "bytes": ("bytes", 1.0),
    "kb": ("bytes", 1e3),
    "mb": ("bytes", 1e6),
    "gb": ("bytes", 1e9),
    "tb": ("bytes", 1e12),
    "kib": ("bytes", 2.0**10),
    "mib": ("bytes", 2.0**20),
    "gib": ("bytes", 2.0**30),
    "tib": ("bytes", 2.0**40),
    "kilobyte": ("bytes", 1e3),
    "kilobytes": ("bytes", 1e3),
    "megabyte": ("bytes", 1e6),
    "megabytes": ("bytes", 1e6),
    "gigabyte": ("bytes", 1e9),
    "gigabytes": ("bytes", 1e9),
    "terabyte": ("bytes", 1e12),
    "terabytes": ("bytes", 1e12),
    "mebibyte": ("bytes", 2.0**20),
    "mebibytes": ("bytes", 2.0**20),
    "gibibyte": ("bytes", 2.0**30),
    "gibibytes": ("bytes", 2.0**30),
    "%": ("percent", 1.0),
    "percent": ("percent", 1.0),
    "per cent": ("percent", 1.0),
}
# Plain multipliers: "4.2 million", "65B", "160k" (the one-letter forms only written attached).
SCALES: dict[str, float] = {
    "thousand": 1e3,
    "million": 1e6,
    "billion": 1e9,
    "trillion": 1e12,
    "k": 1e3,
    "m": 1e6,
    "b": 1e9,
}

STOPWORDS = frozenset(
    "a an the of to in on for and or is are be it its this that with as by at from into we you "
    "they them their our your i not no do does so but if then than".split()
)

_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[a-z][a-z0-9]*")
_NUMBER_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b")
_WORD_UNITS = sorted(
    (u for u in [*UNITS, *SCALES] if len(u) > 1 or u == "%"), key=len, reverse=True
)
_QUANTITY = re.compile(
    r"(?<![\w.])(?P<num>\d{1,3}(?:[,_]\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?P<exp>e[-+]?\d+)?"
    r"(?:(?P<letter>[kmb])(?![a-z0-9])"
    r"|\s*-?\s*(?P<unit>" + "|".join(re.escape(u) for u in _WORD_UNITS) + r")(?![a-z0-9]))?"
)
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


@functools.lru_cache(maxsize=65536)
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
# Where a clause ends: negation reaches no further ("not X, but Y" says Y).
_PIECE = re.compile(r"\d[\d,]*(?:\.\d+)?|[a-z][a-z0-9]*|[.;:!?](?=\s|$)|[,()]")
_SENTENCE_END = frozenset(".;:!?")
_CLAUSE_WORDS = frozenset("but because whereas although though while which since so".split())
NEGATION_REACH = 3  # a negation word covers this many words after it, within its clause


def normalize(text: str) -> list[str]:
    """Split text into canonical stems (phrasings rewritten, stemmed, synonyms folded)."""
    stems = (stem_word(tok) for tok in _TOKEN.findall(rewrite(text)))
    return [_SYNONYMS.get(s, s) for s in stems]


@dataclass(frozen=True)
class Quantity:
    """A number as written in a text, with the unit or multiplier after it.

    `written` is the number as typed (300 in "~300 MB"), `factor` turns it into the base unit
    (1e6 for MB), `kind` is what the unit measures (None for a plain or scaled number), `scaled`
    whether a unit or multiplier followed, and `half_step` half the value of the last significant
    digit written, in the written unit (None when fewer than two significant digits were written:
    "100" or "0.1" says nothing about precision).
    """

    written: float
    factor: float = 1.0
    kind: str | None = None
    scaled: bool = False
    half_step: float | None = None
    unit: str = ""  # as written ("GB", "m"), for messages

    def __str__(self) -> str:
        unit = self.unit.upper().replace("IB", "iB") if self.unit[-1:] == "b" else self.unit
        unit = {"K": "k", "m": "M", "BIT": "bit", "BITS": "bits", "BYTE": "byte"}.get(unit, unit)
        sep = "" if len(unit) <= 1 and unit != "%" else " "
        return f"{self.written:,.10g}{sep if unit else ''}{unit}"

    @property
    def value(self) -> float:
        """The number in the base unit (bytes, percent, or a plain count)."""
        return self.written * self.factor

    def matches(self, other: Quantity, tolerance: float = NUMBER_TOLERANCE) -> bool:
        """Whether `other`, found in an answer, states this bank figure (`self`)."""
        if self.kind is not None:  # a unit: the answer must give one of the same kind
            return other.kind == self.kind and other._near(self.value, tolerance, other.factor)
        if self.scaled:  # "65b": a number of that size, without a unit
            return other.kind is None and other._near(self.value, tolerance, other.factor)
        # A plain figure ("80", "0.126953125"): as written, whatever unit follows it, or by
        # value when only a multiplier follows ("4.2 million" for "4,194,304").
        return other._near(self.written, tolerance, 1.0) or (
            other.kind is None and other._near(self.written, tolerance, other.factor)
        )

    def _near(self, target: float, tolerance: float, factor: float) -> bool:
        gap = abs(self.written * factor - target)
        if gap <= tolerance * abs(target) * (1 + 1e-12):
            return True
        return self.half_step is not None and gap <= self.half_step * factor * (1 + 1e-9)


def _quantity(match: re.Match) -> Quantity:
    digits = match["num"].replace(",", "").replace("_", "")
    exponent = int(match["exp"][1:]) if match["exp"] else 0
    written = float(digits) * 10.0**exponent
    unit = match["unit"] or match["letter"]
    kind, factor = None, 1.0
    if unit in UNITS:
        kind, factor = UNITS[unit]
    elif unit in SCALES:
        factor = SCALES[unit]
    whole, _, frac = digits.partition(".")
    significant = (whole + frac).lstrip("0")
    last_place = -len(frac)
    if not frac:
        stripped = significant.rstrip("0")
        last_place = len(significant) - len(stripped)
        significant = stripped
    half_step = 0.5 * 10.0 ** (last_place + exponent) if len(significant) >= 2 else None
    return Quantity(written, factor, kind, unit is not None, half_step, unit or "")


def quantities(text: str) -> list[Quantity]:
    """Every number in `text`, with the unit or multiplier written after it."""
    text = _NUMBER_WORD.sub(lambda m: str(NUMBER_WORDS[m.group(1)]), rewrite(text))
    return [_quantity(m) for m in _QUANTITY.finditer(text)]


def as_quantity(text: str) -> Quantity | None:
    """`text` as one number with an optional unit ("302 MB", "16-bit", "1e-4"), else None."""
    match = _QUANTITY.fullmatch(text.strip().lower())
    return _quantity(match) if match else None


@dataclass(frozen=True)
class Text:
    """A text as the grader reads it: canonical stems, each with its sentence and clause and
    whether a negation covers it, and the numbers it states."""

    stems: tuple[str, ...]
    sentences: tuple[int, ...]
    clauses: tuple[int, ...]
    negated: tuple[bool, ...]
    numbers: tuple[Quantity, ...]
    cues: tuple[bool, ...] = ()  # whether each word is itself a negation ("not", "never")


@functools.lru_cache(maxsize=4096)  # a bank's texts are read again for every answer they meet
def analyse(text: str) -> Text:
    """Read `text` into a `Text` (see there)."""
    stems: list[str] = []
    sentences: list[int] = []
    clauses: list[int] = []
    negated: list[bool] = []
    cues: list[bool] = []
    sentence = clause = 0
    cue_at = -99  # index of the last negation word in this clause
    for piece in _PIECE.findall(rewrite(text)):
        if piece in _SENTENCE_END or piece in ",()" or piece in _CLAUSE_WORDS:
            sentence += piece in _SENTENCE_END
            clause += 1
            cue_at = -99
            continue
        if piece in NEGATIONS:
            cue_at = len(stems)
        stem = stem_word(piece)
        stems.append(_SYNONYMS.get(stem, stem))
        sentences.append(sentence)
        clauses.append(clause)
        negated.append(0 < len(stems) - 1 - cue_at <= NEGATION_REACH)
        cues.append(piece in NEGATIONS)
    return Text(
        tuple(stems),
        tuple(sentences),
        tuple(clauses),
        tuple(negated),
        tuple(quantities(text)),
        tuple(cues),
    )


def positions(stems: tuple[str, ...] | list[str], phrase: list[str]) -> list[int]:
    """Where `phrase` (a stem sequence) starts in `stems`."""
    n = len(phrase)
    if n == 0:
        return []
    first, whole = phrase[0], tuple(phrase)
    return [i for i in range(len(stems) - n + 1)
            if stems[i] == first and tuple(stems[i : i + n]) == whole]  # fmt: skip


# Words that name a range of numbers: "a few hundred examples" and "500 examples" both count.
_MAGNITUDES = {"hundred": (1e2, 1e3), "thousand": (1e3, 1e6), "million": (1e6, 1e9)}


@dataclass(frozen=True)
class KeyPoint:
    """One thing a good answer says; covered when every concept in `needs` is mentioned."""

    point: str
    needs: tuple[str, ...]

    def concepts(self) -> list[list[list[str] | Quantity]]:
        """Each concept as its alternatives: a number (`Quantity`) or a stem sequence."""
        return _concepts(self.needs)

    def missing(self, text: str, tolerance: float = NUMBER_TOLERANCE) -> list[str]:
        """The concepts (as written in the bank) that the answer `text` does not mention."""
        answer = analyse(text)
        return [
            raw
            for raw, alts in zip(self.needs, self.concepts(), strict=True)
            if not any(mentions(answer, alt, tolerance) for alt in alts)
        ]


@functools.cache
def _concepts(needs: tuple[str, ...]) -> list[list[list[str] | Quantity]]:
    return [[as_quantity(alt) or normalize(alt) for alt in concept.split("|")] for concept in needs]


def mentions(answer: Text, concept: list[str] | Quantity, tolerance: float) -> list[int]:
    """Where the answer states `concept`: stem positions (-1 for a number, which has none)."""
    if isinstance(concept, Quantity):
        return [-1] if any(concept.matches(q, tolerance) for q in answer.numbers) else []
    found = positions(answer.stems, concept)
    if not found and len(concept) == 1 and concept[0] in _MAGNITUDES:
        lo, hi = _MAGNITUDES[concept[0]]
        if any(q.kind is None and lo <= q.value < hi for q in answer.numbers):
            return [-1]
    return found
