"""The echo rule: a reply acknowledges a message by its first clause, turned round.

Past any greeting or lead-in (`LEAD_INS`), up to the first punctuation (`first_clause`), with
I -> you, my -> your, your -> our (`turn_round`): "Hi, my kettle is leaking!" -> "your kettle is
leaking" (`echo_message`). The rule needs no knowledge of what the message is about, so a model
that learns it can answer a complaint about anything: the words it names are the customer's own.
`support_data` writes the fine-tune set's replies with it; `world` holds what the messages are
made of.
"""

import re

# --- the words turned round: the customer's side becomes the agent's --------------------------
_FLIP = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
    "i'm": "you're", "i've": "you've", "i'd": "you'd", "i'll": "you'll", "am": "are",
    "you": "we", "your": "our", "yours": "ours", "you're": "we're", "we": "you", "our": "your",
}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|[^A-Za-z]+")


def turn_round(core: str) -> str:
    """The customer's words from the agent's side: I -> you, my -> your, your -> our, and "was"
    after I -> "were" ("I was charged twice for my order" -> "you were charged twice for your
    order"). Brand and product words are copied as they are."""
    out: list[str] = []
    prev = ""
    for tok in _TOKEN.findall(core):
        low = tok.lower()
        if low in _FLIP:
            new = _FLIP[low]
            if low == "you" and prev in {
                "to",
                "for",
                "with",
                "at",
                "from",
                "sent",
                "gave",
                "told",
                "asked",
                "charged",
                "paid",
                "called",
            }:
                new = "us"
            out.append(new)
        elif low == "was" and prev == "i":
            out.append("were")
        else:
            out.append(tok)
        if tok.strip():
            prev = low if tok[0].isalpha() else prev
    return "".join(out)


# --- what a reply echoes: the message's first clause, past any greeting ----------------------
# What a message may open with before it says anything: greetings, lead-ins, a sigh. Matched at
# the start, lowercase, longest first, as often as they come ("Hi team, ok so ...").
LEAD_INS = tuple(sorted({
    "hi", "hello", "hey", "yo", "dear support", "hi team", "hello support", "hello team",
    "hi there", "hey guys", "hey there", "good morning", "good afternoon", "good evening",
    "to whom it may concern", "excuse me", "hello again", "ok so", "so", "help", "quick one",
    "urgent", "just letting you know", "can someone help?", "please help", "i am upset",
    "this is the second time", "ugh", "seriously", "dear sir or madam", "dear team",
    "quick question",
}, key=len, reverse=True))  # fmt: skip
_BOUNDARY = re.compile(r"[.!?,;:]\s|[.!?,;:]$|\?")
_QUESTION_START = ("where", "why", "how", "when", "what", "who", "can", "could", "is", "are",
                   "do", "does", "did", "will", "would")  # fmt: skip
MAX_ECHO_WORDS = 14
_DANGLING = {"at", "to", "the", "a", "an", "of", "for", "on", "in", "my", "your", "and", "that",
             "with", "but", "or", "from", "by", "is", "was"}  # fmt: skip
_CUT_BEFORE = ("and", "but", "because", "so", "which", "when", "after", "since", "though")
# Sentence openers an echo writes in lowercase ("The kettle leaks" -> "the kettle leaks"): words
# so common that the model reads each thousands of times both with a capital and without. Any
# other first word keeps the customer's capital ("Refund showed up" -> "Refund showed up"): a
# tiny vocabulary splits a rare word differently with and without its capital, and the echo must
# copy its tokens.
_LOWERED = frozenset(
    """the a an this that these those there it its it's there's someone nobody
    why where how when what who which can could is are was were do does did will would have has
    had still just my your our their his her we you they he she""".split()
)


def first_clause(message: str) -> tuple[str, bool]:
    """The clause a reply echoes: the message's first clause once greetings and lead-ins
    (`LEAD_INS`) are skipped, up to the first punctuation, at most `MAX_ECHO_WORDS` words (cut
    before a joining word where one comes late enough), in lowercase only if it opens with a
    common word (`_LOWERED`); and whether it asks a question."""
    text = message.strip()
    while True:
        low = text.lower()
        for lead in LEAD_INS:
            if low.startswith(lead) and (len(low) == len(lead) or not low[len(lead)].isalnum()):
                text = text[len(lead) :].lstrip(" ,.!:;-?")
                break
        else:
            break
    m = _BOUNDARY.search(text)
    clause = text[: m.start()] if m else text
    question = bool(m and text[m.start()] == "?")
    words = clause.split()
    if words and words[0].lower() in _QUESTION_START:
        question = True
    if len(words) > MAX_ECHO_WORDS:
        head = words[:MAX_ECHO_WORDS]
        cut = [i for i, w in enumerate(head) if w.lower() in _CUT_BEFORE and i >= 4]
        words = words[: cut[-1] if cut else MAX_ECHO_WORDS]
    while len(words) > 2 and words[-1].lower() in _DANGLING:
        words.pop()
    clause = " ".join(words).rstrip(" ,.!?;:-")
    if words and words[0].lower() in _LOWERED and words[0][1:].islower():
        clause = clause[0].lower() + clause[1:]
    return clause, question


def echo_message(message: str) -> tuple[str, bool]:
    """`first_clause` of a message turned round for the reply (`turn_round`), and whether it
    asks."""
    clause, question = first_clause(message)
    return turn_round(clause), question
