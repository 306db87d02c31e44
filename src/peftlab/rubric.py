"""The reply rubric: does a support reply greet, acknowledge this problem, act, and give a time?

Four plain checks a support lead would make, written as word patterns so that a learner can
read them and argue with them. `acknowledges` needs both empathy and a word of this complaint's
own problem or product, so one canned apology cannot pass every complaint.

Beside the rubric, not in it: `faithful`, whether a reply names nothing the complaint did not
(no product, service or problem of the world's word lists that the customer never mentioned).
The rubric scores the form the fine-tune teaches and stays the one fixed before training; a
reply can pass all four checks and still answer another customer's complaint, which only this
second check sees (lesson 05, "In the wild").

Its stemmer (`stem`) and stop words are its own, not the quiz's (`quiz.matching.stem_word`,
`quiz.matching.STOPWORDS`), because they answer another question. Here a stem decides whether a
reply names the complaint's problem, and a stop word is any word that names no problem ("order",
"parcel", "arrived", "thanks"); the quiz folds derivations ("quantized", "quantization") and
drops only function words. One shared stemmer changes what `invented` reports on 32 of 1,647
replies of the support world (the fine-tune set, blunt chats, replies to another complaint:
"renewal" becomes invented where it was not), so the faithful shares lessons 05, 07, 08 and 11
teach would move; the rubric's own stems would make the quiz miss "quantization" for
"quantized".
"""

import re
from collections.abc import Sequence

from peftlab import support_data, world
from peftlab.support_data import ADJECTIVES, words

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
    # contractions and pleasantries, which real messages have and name no problem either
    + """i'm i've i'll i'd it's that's there's what's where's let's you're we're they're don't
    doesn't didn't can't won't isn't wasn't aren't haven't hasn't couldn't wouldn't shouldn't
    thanks thank pls hiya dear sir madam regards cheers kind good morning afternoon evening
    team guys anyone anybody really very also quick question tell""".split()
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
    return {stem(w) for w in _words(complaint) if w not in _STOPWORDS and w not in _DESCRIPTORS}


def _words(text: str) -> list[str]:
    # Letters only (no numbers), a contraction whole: "can't" is not "can" and "t".
    return [w for w in words(text) if w[0].isalpha()]


def _mentions(problem: set[str], reply_stems: set[str]) -> bool:
    # A complaint with no telling word (e.g. "Not again!") cannot be echoed; empathy suffices.
    return not problem or bool(problem & reply_stems)


def score_reply(reply: str, complaint: str) -> dict[str, float | bool]:
    """Per-criterion booleans for a reply to `complaint`, and their mean as `score`."""
    reply_stems = {stem(w) for w in _words(reply)}
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


# --- faithful: the reply names nothing the complaint did not --------------------------------
# Words of the world's problems that name no problem of their own ("stopped working": "working"
# is any machine's; "smells like smoke": "like"), or that a reply uses for an action ("return",
# "reset your password", "contact the courier").
_GENERIC = frozenset(
    """without over everywhere never went ago like strange makes lost turn working wrong card
    shape out return returned already anything arrives comes changed date down due else's every
    first gave getting gone here hold keeps last left minute money month more move much nobody
    nothing off open pay payment payments properly see shows than through took up used waiting
    way when where work accept address box photo picture password reset courier driver charge
    case set game free online number form page code email back gives keep""".split()
)
# Tradespeople a reply can send round as easily as a product: named anywhere.
TRADES = tuple(sorted({s for i in world.ISSUES if i.key == "no-show" for s in i.subjects}))
# Services a reply can pin on the customer as easily as a product ("your subscription"): every
# subject of the world's issues that is not a product, a delivery or a tradesperson. Counted only
# after "your", since a reply may offer one as an action ("I will send a receipt").
SERVICES = tuple(sorted(
    {w for i in world.ISSUES if i.subjects != world.GOODS_SUBJECT for s in i.subjects
     for w in words(s) if w not in TRADES + world.DELIVERIES and w not in _STOPWORDS
     and w not in _GENERIC and w != "refund"}
    | {"app", "website", "account", "receipt", "subscription", "invoice", "coupon", "appointment"}
))  # fmt: skip


def _reply_part_stems() -> set[str]:
    parts = (support_data.GREETINGS + support_data.ACKNOWLEDGEMENTS + support_data.ACTIONS
             + support_data.GENERAL_ACTIONS + support_data.TIMELINES
             + support_data.CLOSINGS)  # fmt: skip
    return {stem(w) for part in parts for w in _words(part)}


def _telling(text: str, polite: set[str]) -> list[str]:
    return [w for w in _words(text)
            if w not in _STOPWORDS and w not in _GENERIC and stem(w) not in polite]  # fmt: skip


def _problem_stems() -> dict[str, str]:
    """stem -> word, for the words the world's problems are told in (every phrasing of
    `support_data`'s problems and every frame of `world`'s issues), less what says nothing about
    which problem it is."""
    polite = _reply_part_stems()
    phrases = [p for problem in support_data.FINETUNE_PROBLEMS + support_data.HELDOUT_PROBLEMS
               for p in problem.phrasings]  # fmt: skip
    phrases += [f.replace("{s}", "") for issue in world.ISSUES for f in issue.frames]
    terms: dict[str, str] = {}
    for phrase in phrases:
        for w in _telling(phrase, polite):
            terms.setdefault(stem(w), w)
    return terms


# Products by their head noun ("machine" of "washing machine") and every one-word product.
PRODUCTS = tuple(dict.fromkeys(
    n.split()[-1] for n in world.GOODS + support_data.HELDOUT_NOUNS + support_data.EXTRA_NOUNS
    if n.split()[-1] not in _GENERIC
))  # fmt: skip
_PRODUCT_STEMS = frozenset(stem(n) for n in PRODUCTS)
_SERVICE_STEMS = frozenset(stem(s) for s in SERVICES if s not in _GENERIC)
_NAMED_STEMS = _PRODUCT_STEMS | set(_problem_stems()) | {stem(t) for t in TRADES}


def invented(reply: str, complaint: str) -> list[str]:
    """The words of `reply` that name a product, service or problem `complaint` does not: a
    product noun of the world's word lists, a word the world's problems are told in ("late",
    "cracked", "leaks"), a colour or material before a product ("blue" in "your blue sofa"), a
    tradesperson ("the technician"), a service (`SERVICES`: "your subscription", "the app"; not
    one offered as an action, "I will send a receipt") or a number of three digits or more (an
    order number). Compared by stem, with the rubric's synonyms ("delayed" is "late").

    Only words the world knows can be caught: a reply that invents something outside its word
    lists passes. In reply order, each word once.
    """
    said = {stem(w) for w in _words(complaint)} | set(words(complaint))
    reply_words = _words(reply)
    found: list[str] = []
    for i, w in enumerate(reply_words):
        if stem(w) in said or w in found:
            continue
        before_product = i + 1 < len(reply_words) and stem(reply_words[i + 1]) in _PRODUCT_STEMS
        offered = bool(set(reply_words[max(0, i - 2) : i]) & {"a", "an", "new"})
        if (
            stem(w) in _NAMED_STEMS
            or (w in _DESCRIPTORS and before_product)
            or (stem(w) in _SERVICE_STEMS and not offered)
        ):
            found.append(w)
    found += [n for n in dict.fromkeys(words(reply)) if n.isdigit() and len(n) >= 3
              and n not in said]  # fmt: skip
    return found


def faithful(reply: str, complaint: str) -> bool:
    """Whether `reply` names no product, service or problem that `complaint` does not
    (`invented` finds none). Reported beside the rubric, not as a fifth criterion."""
    return not invented(reply, complaint)
