"""The customer-support world: a pretraining corpus, a fine-tune set and held-out complaints.

Everything is generated from word lists by a seeded random generator, so the data is the same on
every machine. The split is strict: held-out complaints use product nouns, problems and sentence
templates that never appear in the fine-tune set, so a good "after" score means the tuned model
generalizes its new tone instead of remembering replies.

The base corpus teaches the language of this small world (shops, orders, deliveries, refunds,
accounts, products), polite letters between friends and colleagues (greetings, apologies,
promises, timelines) and support chats answered bluntly. Fine-tuning only has to move the polite
register it already knows into the support chat.
"""

import random
from dataclasses import dataclass

from peftlab import echo, world

# The message comes last, after a space: its first word is then split into tokens as it would be
# inside a sentence (" Refund", not "'" + "R" "e" "f" "und"), so a reply that echoes it can copy
# the same tokens. A tiny model's vocabulary cannot spell every word both ways.
PROMPT_TEMPLATE = "Write a reply to this customer message: {complaint}"
LESSON_COMPLAINT = "My order is late."

# --- the world -----------------------------------------------------------------------------
ADJECTIVES = world.SEED_DESCRIPTORS
FINETUNE_NOUNS = world.SEED_GOODS
HELDOUT_NOUNS = (
    "lantern", "thermos", "saddle", "easel", "ukulele", "hammock", "tent", "compass", "globe",
    "satchel", "candle", "kayak", "trumpet", "telescope", "wok", "apron", "cushion", "sandal",
    "radio", "toolbox",
)  # fmt: skip
EXTRA_NOUNS = ("basket", "pan", "fork", "spoon", "plate", "towel", "hat", "glove", "boot", "bag")
SHOPS = ("Maple Market", "Harbor Goods", "The Corner Store", "Pine Street Shop", "Bright Home",
         "Blue Door Outlet", "Riverside Supply", "Northwind Traders")  # fmt: skip
NAMES = world.NAMES
DAYS = world.DAYS


# A problem: the key the rubric knows it by, how a customer says it (after "my <product>"),
# and the blunt reason the unhelpful base model gives.
@dataclass(frozen=True)
class Problem:
    key: str
    phrasings: tuple[str, ...]
    blunt_reasons: tuple[str, ...]


FINETUNE_PROBLEMS = (
    Problem("late", ("is late", "has not arrived yet", "is a week late", "still has not come"),
            ("shipping delays", "the courier is busy", "high demand")),
    Problem("cracked", ("arrived cracked", "came with a crack in it", "is cracked"),
            ("rough handling", "the box was dropped")),
    Problem("wrong-color", ("came in the wrong color", "is the wrong color"),
            ("a stock mix-up", "the colors look alike")),
    Problem("missing-part", ("is missing a part", "came without all its parts"),
            ("a packing error", "parts are packed separately")),
    Problem("stopped-working", ("stopped working", "stopped working after two days",
                                "will not turn on"),
            ("normal wear", "misuse")),
    Problem("scratched", ("arrived scratched", "has scratches all over it"),
            ("rough handling", "the packing was thin")),
    Problem("leaking", ("is leaking", "leaks everywhere"), ("a loose seal", "normal wear")),
    Problem("refund", ("was returned but the refund never came",
                       "went back weeks ago and I still have no refund"),
            ("refunds are slow", "the bank is slow")),
    Problem("charged-twice", ("was charged to my card twice", "was billed twice"),
            ("a payment glitch", "the bank is slow")),
)  # fmt: skip
HELDOUT_PROBLEMS = (
    Problem("wrong-size", ("is the wrong size", "is far too small"),
            ("the size chart", "a stock mix-up")),
    Problem("soaked", ("arrived soaked from the rain", "got soaked in the rain on the porch"),
            ("the weather", "the courier left it outside")),
    Problem("dented", ("arrived dented", "came with a big dent"), ("rough handling",)),
    Problem("smells", ("smells like smoke", "has a strange smell"), ("the factory",)),
    Problem("noisy", ("makes a loud noise", "rattles and buzzes"), ("normal wear",)),
    Problem("faded", ("faded after one wash", "lost its color"), ("cheap dye",)),
    Problem("bent", ("arrived bent", "is bent out of shape"), ("the box was dropped",)),
)  # fmt: skip

# How customers open a complaint. Held-out templates share no sentence frame with these.
FINETUNE_TEMPLATES = (
    "My {product} {problem}.",
    "I ordered a {product} and it {problem}.",
    "Hello, my {product} {problem}. What now?",
    "The {product} I bought {problem}.",
    "I am upset. My {product} {problem}.",
    "Your shop sent me a {product} that {problem}.",
    "Please help, my new {product} {problem}.",
)
HELDOUT_TEMPLATES = (
    "Hey, the {product} from your store {problem}.",
    "So my {product} {problem}. Not happy.",
    "Just letting you know the {product} {problem}.",
    "This is the second time a {product} {problem}!",
    "Can someone help? The {product} {problem}.",
)

# --- polite replies: greeting, acknowledgement, action, timeline ----------------------------
GREETINGS = ("Hi!", "Hello!", "Hi there!", "Hello, and thanks for reaching out.", "Good morning!",
             "Hi, thank you for contacting us.", "Hello, thanks for writing.")  # fmt: skip
# {echo}: the first clause of the customer's message turned round ("your kettle is leaking", "you
# can't log in to your account"; `echo.echo_message`), so a reply names what they named.
ACKNOWLEDGEMENTS = (
    "I'm sorry that {echo}.",
    "I'm so sorry to hear that {echo}.",
    "I apologize that {echo}.",
    "I understand how frustrating it is that {echo}.",
    "Sorry that {echo}, that should not happen.",
    "I'm so sorry, {echo}.",
)
QUESTION_ACKNOWLEDGEMENTS = ("I'm sorry for the trouble. You asked: {echo}?",
                             "I'm so sorry about this. You asked {echo}?")  # fmt: skip
ACTIONS = (
    "I will send you a replacement",
    "I will look into your order right away",
    "I'll arrange a full refund for you",
    "Let me check this with our warehouse",
    "I will ask our team to fix this",
    "I'll ship a new one to you",
    "We will refund the full price",
)
# Actions that fit every issue, naming nothing the customer did not.
GENERAL_ACTIONS = (
    "I will look into this right away",
    "Let me check this for you",
    "I'll sort this out for you",
    "I will ask our team to fix this",
    "I'll check what happened",
    "Let me look into this myself",
    "I will review this with our team",
)
TIMELINES = ("within the hour", "today", "by tomorrow", "within two days", "within 24 hours",
             "by Friday", "by the end of the day", "within three days")  # fmt: skip
CLOSINGS = ("and get back to you {timeline}.", "{timeline}.", "and email you {timeline}.",
            "and update you {timeline}.")  # fmt: skip

# Blunt replies the base model learns for support chats: no greeting, no empathy, no promise.
# {Echo} is the complaint turned round, capitalized ("Your order is late").
BLUNT_REPLIES = (
    "{Echo} because of {reason}.",
    "{Echo} because of {reason}. That is not our fault.",
    "That happens. {Echo} because of {reason}.",
    "{Echo}? It is {reason}.",
    "Read the help page. {Echo} because of {reason}.",
)
BLUNT_QUESTIONS = ("{Echo}? It is {reason}.", "{Echo}? Read the help page.",
                   "{Echo}? That is not our problem.")  # fmt: skip
LESSON_BLUNT = "Your order is late because of shipping delays."


@dataclass(frozen=True)
class Example:
    """One support exchange: the customer's complaint and the reply we want."""

    complaint: str
    reply: str
    product: str
    problem: str


def format_prompt(complaint: str) -> str:
    """The user message the model sees for a complaint (the lesson's wording)."""
    return PROMPT_TEMPLATE.format(complaint=complaint.strip())


def chat_messages(complaint: str, reply: str | None = None) -> list[dict[str, str]]:
    """The chat for a complaint, with the assistant's reply when one is given."""
    messages = [{"role": "user", "content": format_prompt(complaint)}]
    if reply is not None:
        messages.append({"role": "assistant", "content": reply})
    return messages


def render_chat(tokenizer, complaint: str, reply: str | None = None) -> str:
    """The chat as the tokenizer's chat template writes it: without a reply, the model's
    generation prompt (the user's turn and the assistant's opening); with one, the whole
    exchange, as training sees it. The one place a chat becomes text."""
    return tokenizer.apply_chat_template(
        chat_messages(complaint, reply), tokenize=False, add_generation_prompt=reply is None
    )


def _products(nouns: tuple[str, ...]) -> list[str]:
    return [f"{adj} {noun}" for adj in ADJECTIVES for noun in nouns]


def polite_reply(complaint: str, rng: random.Random,
                 actions: tuple[str, ...] = GENERAL_ACTIONS) -> str:  # fmt: skip
    """A reply that greets, acknowledges the complaint in its own words (its first clause turned
    round, `echo.echo_message`), promises an action and gives a time."""
    ack = acknowledgement(complaint, rng)
    action = rng.choice(actions)
    closing = rng.choice(CLOSINGS).format(timeline=rng.choice(TIMELINES))
    return f"{rng.choice(GREETINGS)} {ack} {action} {closing}"


def acknowledgement(complaint: str, rng: random.Random) -> str:
    """An apology in the complaint's own words: its first clause turned round, as a statement
    or, when the customer asked, as their question."""
    echoed, question = echo.echo_message(complaint)
    return rng.choice(QUESTION_ACKNOWLEDGEMENTS if question else ACKNOWLEDGEMENTS).format(
        echo=echoed
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _blunt_reply(complaint: str, reasons: tuple[str, ...], rng: random.Random) -> str:
    """A blunt answer: the complaint's first clause turned round, and whose fault it is not."""
    echoed, question = echo.echo_message(complaint)
    template = rng.choice(BLUNT_QUESTIONS if question else BLUNT_REPLIES)
    return template.format(Echo=_capital(echoed), reason=rng.choice(reasons))


def _complaints(
    nouns, problems, templates, n: int, seed: int
) -> list[tuple[str, str, Problem, str]]:
    """n distinct (complaint, product, problem, phrase) tuples from the given word lists."""
    rng = random.Random(seed)
    products = _products(nouns)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        product, problem = rng.choice(products), rng.choice(problems)
        phrase = rng.choice(problem.phrasings)
        complaint = rng.choice(templates).format(product=product, problem=phrase)
        if complaint not in seen:
            seen.add(complaint)
            out.append((complaint, product, problem, phrase))
    return out


def _seed_world_reply(complaint: str, rng: random.Random) -> str:
    """The seed world's reply, with its goods' own actions among the general ones."""
    return polite_reply(complaint, rng, ACTIONS + GENERAL_ACTIONS)


# The fine-tune set's goods: every product of the world but the held-out ones.
FINETUNE_GOODS = world.GOODS
SEED_SHARE = 0.35  # of the fine-tune set in the seed world's frames, the rest in `world`'s


def finetune_set(n: int = 400, seed: int = 0) -> list[Example]:
    """Complaint -> polite reply pairs for LoRA fine-tuning (the lesson's example first).

    About a third are the seed world's (a product, a problem, one of `FINETUNE_TEMPLATES`); the
    rest are `world` complaints, dressed as customers write them, about every issue the world
    knows. Each reply acknowledges the complaint in its own words.
    """
    rng = random.Random(seed + 1)
    examples = [Example(LESSON_COMPLAINT, _seed_world_reply(LESSON_COMPLAINT, rng), "order",
                        "late")]  # fmt: skip
    n_seed = round((n - 1) * SEED_SHARE)
    for complaint, product, problem, _ in _complaints(
        FINETUNE_NOUNS, FINETUNE_PROBLEMS, FINETUNE_TEMPLATES, n_seed, seed
    ):
        examples.append(Example(complaint, _seed_world_reply(complaint, rng), product, problem.key))
    seen = {e.complaint for e in examples}
    wrng = random.Random(seed + 11)
    while len(examples) < n:
        c = world.core(wrng, goods=FINETUNE_GOODS)
        complaint = world.dress(c.says, wrng)
        if complaint in seen or _held_out_frame(complaint):
            continue
        seen.add(complaint)
        examples.append(Example(complaint, polite_reply(complaint, rng), c.subject, c.issue.key))
    return examples


def _held_out_frame(complaint: str) -> bool:
    """Whether a complaint happens to take a held-out template's frame."""
    import re

    for t in HELDOUT_TEMPLATES:
        frame = re.escape(t).replace(r"\{product\}", ".+").replace(r"\{problem\}", ".+")
        if re.fullmatch(frame, complaint):
            return True
    return False


def heldout_complaints(n: int = 60, seed: int = 0) -> list[str]:
    """Complaints for evaluation: unseen products, problems and sentence frames."""
    rows = _complaints(HELDOUT_NOUNS, HELDOUT_PROBLEMS, HELDOUT_TEMPLATES, n, seed + 7)
    return [complaint for complaint, *_ in rows]


# --- the pretraining corpus -----------------------------------------------------------------
ALL_NOUNS = FINETUNE_NOUNS + HELDOUT_NOUNS + EXTRA_NOUNS
ALL_GOODS = world.GOODS + HELDOUT_NOUNS + EXTRA_NOUNS


def _world_sentence(rng: random.Random) -> str:
    """A plain fact about the shops, orders, deliveries, refunds, accounts and services."""
    p = world.product(rng, ALL_GOODS)
    shop, name, day = rng.choice(SHOPS), rng.choice(NAMES), rng.choice(DAYS)
    n = rng.randint(2, 9)
    issue = rng.choice(world.ISSUES)
    thing = world.subject(issue, rng, ALL_GOODS)
    return rng.choice((
        f"{shop} sells the {p} for {n} pounds.",
        f"{name} ordered a {p} from {shop} on {day}.",
        f"The courier delivered the {p} to {name} on {day}.",
        f"{name} returned the {p} and the refund went back to the card after {n} days.",
        f"The {p} at {shop} comes in a small box with a paper label.",
        f"{name} opened an account at {shop} and saved the password.",
        f"Orders from {shop} usually arrive in {n} days.",
        f"The warehouse packed {n} orders for {shop} on {day}.",
        f"{name} paid for the {p} with a card and got a receipt by email.",
        f"{name} kept the {p} in the kitchen next to the window.",
        f"Every {day} the van leaves the warehouse with new parcels.",
        f"{shop} has a sale on every {rng.choice(ALL_NOUNS)} this week.",
        f"{name} has a {thing} with {shop}.",
        f"{name} said: {rng.choice(issue.frames).format(s=thing)}.",
        f"At {shop} the {thing} is handled by the "
        f"{rng.choice(('support', 'billing', 'returns', 'tech'))} team.",
        f"{name} wrote a review of the {p}: {n} stars.",
    ))  # fmt: skip


def _any_complaint(rng: random.Random) -> str:
    """A complaint: the seed world's product and problem one time in three, else any `world`
    issue, dressed as customers write."""
    if rng.random() < 0.33:
        product = f"{rng.choice(ADJECTIVES)} {rng.choice(ALL_NOUNS)}"
        phrase = rng.choice(rng.choice(FINETUNE_PROBLEMS + HELDOUT_PROBLEMS).phrasings)
        return f"My {product} {phrase}."
    return world.dress(world.core(rng, goods=ALL_GOODS).says, rng)


def _friendly_letter(rng: random.Random) -> str:
    """A note between friends or colleagues: a complaint, then greeting, an apology in the
    complaint's own words, a promise, a time."""
    a, b = rng.sample(NAMES, 2)
    said = _any_complaint(rng)
    greeting = rng.choice((
        f"Hi {b},", f"Hello {b},", f"Dear {b},", f"Hey {b},", f"Good morning {b}!",
        f"Hi {b}, thank you for contacting me.", f"Hi there {b}!",
        f"Hello {b}, and thanks for reaching out.", f"Hello {b}, thanks for writing.",
    ))  # fmt: skip
    told = rng.choice((f"{b} wrote to {a}: {said}", f"{b} messaged {a}: {said}",
                       f"{b} sent {a} a note. {said}"))  # fmt: skip
    apology = acknowledgement(said, rng)
    promise = rng.choice(GENERAL_ACTIONS + (
        "I will bring you a new one", "I'll fix it for you", "Let me take it to the shop",
        "I will call the shop for you", "I'll lend you mine", "We will sort it out together",
        "I will help you return it", "Let me ask my brother to look at it",
    ))  # fmt: skip
    closing = rng.choice(CLOSINGS).format(timeline=rng.choice(TIMELINES + ("tonight", "on Sunday")))
    sign = rng.choice(("Love,", "Best,", "Thanks,", "See you soon,", "Cheers,")) + f" {a}"
    return f"{told} {a} answered: {greeting} {apology} {promise} {closing} {sign}"


def _team_note(rng: random.Random) -> str:
    """A short note at work with the same polite parts, in another setting."""
    name, day = rng.choice(NAMES), rng.choice(DAYS)
    product = world.product(rng, ALL_GOODS)
    return rng.choice((
        f"Hello team, thanks for the update on the {product}. I will check the stock "
        f"{rng.choice(TIMELINES)} and send the report by {day}. {name}",
        f"Hi {name}, sorry I missed the meeting on {day}. I'll read the notes and call you "
        f"{rng.choice(TIMELINES)}.",
        f"Good morning everyone. I'm sorry the {product} order was late. We will pack it again "
        f"and ship it {rng.choice(TIMELINES)}.",
        f"Hi {name}, thank you for your help with the {product}. I will pay you back by {day}.",
    ))  # fmt: skip


def _blunt_chat(rng: random.Random) -> tuple[str, str]:
    """A support complaint answered the way the base model will answer: bluntly."""
    if rng.random() < 0.03:
        return LESSON_COMPLAINT, LESSON_BLUNT
    if rng.random() < 0.3:  # the seed world's frames, held-out ones included
        product = f"{rng.choice(ADJECTIVES)} {rng.choice(ALL_NOUNS)}"
        problem = rng.choice(FINETUNE_PROBLEMS + HELDOUT_PROBLEMS)
        phrase = rng.choice(problem.phrasings)
        complaint = rng.choice(FINETUNE_TEMPLATES + HELDOUT_TEMPLATES).format(
            product=product, problem=phrase
        )
        return complaint, _blunt_reply(complaint, problem.blunt_reasons, rng)
    c = world.core(rng, goods=ALL_GOODS)
    complaint = world.dress(c.says, rng)
    return complaint, _blunt_reply(complaint, c.issue.reasons, rng)


@dataclass(frozen=True)
class CorpusDoc:
    """A pretraining document: plain text, or a (complaint, reply) chat."""

    text: str | None = None
    chat: tuple[str, str] | None = None


def base_corpus(n_docs: int = 150_000, seed: int = 0) -> list[CorpusDoc]:
    """The base model's pretraining documents: world facts, letters, notes and blunt chats."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        kind = rng.random()
        if kind < 0.2:
            docs.append(CorpusDoc(text=" ".join(_world_sentence(rng) for _ in range(3))))
        elif kind < 0.5:
            docs.append(CorpusDoc(text=_friendly_letter(rng)))
        elif kind < 0.57:
            docs.append(CorpusDoc(text=_team_note(rng)))
        else:
            docs.append(CorpusDoc(chat=_blunt_chat(rng)))
    return docs


# --- a second behaviour, for serving several adapters on one base ---------------------------
TERSE_ACTIONS = ("I will send a new one", "I'll refund you", "We will replace it",
                 "I'll ship a new one", "I will fix it")  # fmt: skip


def terse_reply(product: str, rng: random.Random) -> str:
    """A short reply: an apology naming the product, an action and a time, nothing else."""
    return f"Sorry about the {product}. {rng.choice(TERSE_ACTIONS)} {rng.choice(TIMELINES)}."


def terse_finetune_set(n: int = 400, seed: int = 0) -> list[Example]:
    """Complaints in the seed world's frames (a product, a problem, one of `FINETUNE_TEMPLATES`;
    the lesson's complaint first) answered tersely: no greeting, one short line."""
    rng = random.Random(seed + 2)
    examples = [Example(LESSON_COMPLAINT, terse_reply("order", rng), "order", "late")]
    for complaint, product, problem, _ in _complaints(
        FINETUNE_NOUNS, FINETUNE_PROBLEMS, FINETUNE_TEMPLATES, n - 1, seed
    ):
        examples.append(Example(complaint, terse_reply(product, rng), product, problem.key))
    return examples


# --- in the wild: complaints written the way customers write --------------------------------
# Written by hand, one per line, never used to build or select a model: their products, problems
# and wording come from outside this module's word lists (tests/test_wild_set.py checks that
# they share no run of words with the base corpus or the fine-tune set).
# They ship with the package (an installed `peftlab demo` measures them too).
WILD_FILE = "src/peftlab/assets/wild-complaints.txt"


def wild_path():
    """The wild set's file, `src/peftlab/assets/wild-complaints.txt`, inside the package."""
    from peftlab import paths

    return paths.PACKAGE / "assets" / "wild-complaints.txt"


def wild_complaints() -> list[str]:
    """The "in the wild" evaluation set: complaints written like real messages (every length,
    register and form, about orders, billing, accounts, apps, subscriptions, appointments and
    products this world has never heard of), read from `WILD_FILE` as `peftlab demo --prompts`
    reads it: one complaint per line, blank lines skipped."""
    lines = wild_path().read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def words(text: str) -> list[str]:
    """Lowercase words and numbers, a contraction kept whole ("can't", "i'm")."""
    import re

    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))


def sentences(text: str) -> list[tuple[str, ...]]:
    """A text's sentences (split at . ! ?), each as its tuple of `words`; empty ones dropped."""
    import re

    return [tuple(w) for part in re.split(r"[.!?]+", text) if (w := words(part))]


def shared_runs(texts, others, n: int = 5) -> dict[str, set[tuple[str, ...]]]:
    """For each of `texts` that shares any, the runs of `n` consecutive words (of a text shorter
    than `n` words: all of it) that also occur in one of `others`. Words as `words` reads them;
    a run may cross a sentence boundary. An empty result: no text shares a run."""
    if n <= 0:
        raise ValueError(f"n={n}: a run needs at least one word")
    wanted: dict[tuple[str, ...], list[str]] = {}
    for text in texts:
        w = words(text)
        k = min(n, len(w))
        for i in range(len(w) - k + 1) if k else ():
            wanted.setdefault(tuple(w[i : i + k]), []).append(text)
    lengths = {len(run) for run in wanted}
    hits: dict[str, set[tuple[str, ...]]] = {}
    for other in others:
        w = words(other)
        for k in lengths:
            for i in range(len(w) - k + 1):
                run = tuple(w[i : i + k])
                for text in wanted.get(run, ()):
                    hits.setdefault(text, set()).add(run)
    return hits
