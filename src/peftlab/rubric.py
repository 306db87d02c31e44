"""The reply rubric: does a support reply greet, acknowledge this problem, act, and give a time?

Four plain checks a support lead would make, written as word patterns so that a learner can
read them and argue with them. `acknowledges` needs both empathy and a word of this complaint's
own problem or product, so one canned apology cannot pass every complaint.
"""

import re
from collections.abc import Sequence

from peftlab.support_data import ADJECTIVES

CRITERIA = ("greeting", "acknowledges", "action", "timeline")

_GREETING = re.compile(
    r"^\W*(hi|hello|hey|dear|greetings|good (morning|afternoon|evening)|thanks for|thank you)\b",
    re.IGNORECASE,
)
_EMPATHY = re.compile(
    r"\b(sorry|apologi[sz]e|apologies|understand how|frustrating|unfortunate|regret)\b",
    re.IGNORECASE,
)
_ACTION = re.compile(
    r"\b(i will|i'll|we will|we'll|let me|i am going to|i'm going to|i have|i've)\s+"
    r"(\w+\s+){0,3}?"
    r"(send|check|look|refund|replace|arrange|ship|fix|contact|call|email|ask|process|"
    r"escalate|investigate|issue|reset|track|update|sort|bring|review|get|credit|repair|pack)",
    re.IGNORECASE,
)
_NUMBER = r"(\d+|a|an|one|two|three|four|five|six|seven|a few|24|48|72)"
_UNIT = r"(minutes?|hours?|days?|business days?|working days?|weeks?)"
_WEEKDAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_TIMELINE = re.compile(
    rf"\b(within (the|an|one) (hour|day)|within {_NUMBER} {_UNIT}|in {_NUMBER} {_UNIT}|"
    rf"today|tonight|tomorrow|by {_WEEKDAY}|by (tomorrow|tonight|noon)|"
    rf"by (the )?end of (the )?(day|week)|this (morning|afternoon|evening|week)|"
    rf"next {_WEEKDAY}|next week)\b",
    re.IGNORECASE,
)

# Words that say nothing about which problem this is.
_STOPWORDS = frozenset(
    """a an the my your our their this that these those it its i me we you he she they is are was
    were be been being am has have had do does did not no and or but so of to in on at for from
    with by as just what now why how can could would should will please help someone
    hey again hello hi letting know second time happy new bought ordered order orders item items
    product products
    package parcel shop store customer says write reply sent send came come got get arrived
    still yet all after weeks week days day two one far too big""".split()
)
_DESCRIPTORS = frozenset(ADJECTIVES)
# True synonyms, folded onto one word before stemming.
_SYNONYMS = {"delay": "late", "delays": "late", "delayed": "late", "overdue": "late",
             "bill": "charged", "billed": "charged", "noisy": "noise", "loud": "noise"}  # fmt: skip
_SUFFIXES = ("ing", "ed", "es", "s", "e", "y")


def stem(word: str) -> str:
    """A crude stem (cracked, cracks -> crack) with a few synonyms folded together."""
    word = _SYNONYMS.get(word.lower(), word.lower())
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word


def problem_words(complaint: str) -> set[str]:
    """Stems of the words that say what this complaint is about (product, problem)."""
    words = re.findall(r"[a-z]+", complaint.lower())
    return {stem(w) for w in words if w not in _STOPWORDS and w not in _DESCRIPTORS}


def _mentions(problem: set[str], reply_stems: set[str]) -> bool:
    # A complaint with no telling word (e.g. "Not again!") cannot be echoed; empathy suffices.
    return not problem or bool(problem & reply_stems)


def score_reply(reply: str, complaint: str) -> dict[str, float | bool]:
    """Per-criterion booleans for a reply to `complaint`, and their mean as `score`."""
    reply_stems = {stem(w) for w in re.findall(r"[a-z]+", reply.lower())}
    marks = {
        "greeting": bool(_GREETING.search(reply)),
        "acknowledges": bool(_EMPATHY.search(reply))
        and _mentions(problem_words(complaint), reply_stems),
        "action": bool(_ACTION.search(reply)),
        "timeline": bool(_TIMELINE.search(reply)),
    }
    return {**marks, "score": sum(marks.values()) / len(CRITERIA)}


def mean_score(replies: Sequence[str], complaints: Sequence[str]) -> float:
    """Mean rubric score of replies to complaints (1.0: every reply passes all four checks)."""
    if not complaints:
        raise ValueError("no complaints to score: give at least one")
    scores = [score_reply(r, c)["score"] for r, c in zip(replies, complaints, strict=True)]
    return sum(scores) / len(scores)
