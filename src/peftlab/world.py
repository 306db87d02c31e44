"""What customers write to support about, and how they write it: the grammar of the course's world.

`support_data` builds the corpus, the fine-tune set and the held-out complaints from this.
A complaint is a *core* (one issue of one subject: "I can't get into my account", "my blue
kettle is leaking", "the installer never showed up"), dressed the way real messages come:
a greeting of the customer's own or none, a second sentence, an order number, a question,
a sign-off, lowercase, a typo, no full stop (`dress`).

A reply acknowledges a message by its first clause, past any greeting, turned round (the echo
rule, `peftlab.echo`), so the words it names are the customer's own.

Subjects and problems come from long word lists and, often, from made-up words (`pseudo_word`,
`brand`, the `ODD` issue: "my zorbel keeps quiluming"), so a model trained on this world cannot
get by on a memorized list: it has to copy the customer's words into its reply.
"""

import random
from dataclasses import dataclass
from pathlib import Path

# --- the seed world: the products and colours the course began with (its held-out set and lesson
# examples are still made of them) ---------------------------------------------------------
SEED_GOODS = (
    "kettle", "lamp", "backpack", "jacket", "blender", "toaster", "mug", "scarf", "umbrella",
    "chair", "desk", "pillow", "blanket", "teapot", "skillet", "helmet", "wallet", "watch",
    "speaker", "keyboard", "charger", "camera", "tripod", "notebook", "stapler", "kite", "puzzle",
    "vase", "mirror", "rug", "clock", "heater", "bicycle", "sofa", "printer", "drill", "tablet",
    "jug", "bowl", "shelf",
)  # fmt: skip
SEED_DESCRIPTORS = (
    "red", "blue", "green", "black", "white", "yellow", "grey", "pink", "orange", "purple",
    "silver", "golden", "wooden", "steel", "leather", "glass", "cotton", "bamboo", "ceramic",
    "copper", "striped", "spotted", "tiny", "large", "folding", "electric", "vintage", "plain",
)  # fmt: skip

# --- subjects ------------------------------------------------------------------------------
# Things a customer can buy (the support set's products; `support_data` keeps its held-out nouns
# out of this list).
GOODS = (
    "phone", "phone case", "laptop", "laptop bag", "monitor", "mouse", "headphones", "earbuds",
    "router", "smartwatch", "television", "remote", "game console", "controller", "hard drive",
    "memory card", "power bank", "cable", "projector", "e-reader", "printer cartridge", "fridge",
    "freezer", "dishwasher", "washer", "dryer", "oven", "microwave", "coffee machine",
    "food processor", "air fryer", "rice cooker", "vacuum cleaner", "iron", "fan", "dehumidifier",
    "mattress", "bed frame", "crib", "wardrobe", "bookcase", "dining table", "office chair",
    "curtains", "duvet", "towels", "frying pan", "knife set", "cutlery", "dinner plates",
    "wine glasses", "saucepan", "baking tray", "lunch box", "water bottle", "coat", "dress",
    "jeans", "shirt", "sweater", "hoodie", "trainers", "hiking boots", "sneakers", "socks",
    "gloves", "sunglasses", "necklace", "ring", "earrings", "handbag", "suitcase", "perfume",
    "shampoo", "face cream", "razor", "hair dryer", "toothbrush", "vitamins", "dog food",
    "cat litter", "bird cage", "fish tank", "lawn mower", "garden hose", "paint", "wallpaper",
    "light bulbs", "door lock", "smoke alarm", "ladder", "screwdriver set", "tiles", "car seat",
    "stroller", "baby monitor", "toy car", "doll", "board game", "lego set", "book", "textbook",
    "calendar", "guitar", "piano stool", "yoga mat", "dumbbells", "treadmill", "tennis racket",
    "football", "scooter", "skateboard", "fishing rod", "sleeping bag", "coffee beans", "tea",
    "chocolates", "birthday cake", "flowers", "wine", "cheese", "groceries",
) + SEED_GOODS  # fmt: skip
DESCRIPTORS = SEED_DESCRIPTORS + (
    "new", "second", "cheap", "expensive", "small", "big", "wireless", "smart", "kids",
)  # fmt: skip
_SYLLABLES = (
    "ka", "lo", "ve", "zi", "mar", "tor", "qui", "bel", "nox", "ra", "dus", "fen", "gal", "hy",
    "jo", "kel", "lum", "mi", "nor", "pa", "rix", "sol", "ta", "ul", "vor", "wen", "xa", "yo",
    "zen", "bri", "cor", "dra", "el", "fo", "gri", "ha", "is", "ju", "ko", "lan",
)  # fmt: skip


def pseudo_word(rng: random.Random) -> str:
    """A made-up lowercase word ("zorbel", "quilum"): what a customer names that no list holds."""
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))


def brand(rng: random.Random) -> str:
    """A made-up brand name ("Kelnox", "Zimar"): a word no list holds, for the model to copy."""
    name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
    return name.capitalize()


def product(rng: random.Random, nouns: tuple[str, ...] = GOODS) -> str:
    """A product as customers name it: "kettle", "blue kettle", "Kelnox kettle", "KX-40 kettle"."""
    noun = rng.choice(nouns)
    form = rng.random()
    if form < 0.15:
        return pseudo_word(rng)
    if form < 0.4:
        return noun
    if form < 0.65:
        return f"{rng.choice(DESCRIPTORS)} {noun}"
    if form < 0.9:
        return f"{brand(rng)} {noun}"
    code = f"{brand(rng)[:2].upper()}-{rng.randint(2, 99) * 10}"
    return f"{code} {noun}"


def order_number(rng: random.Random) -> str:
    """An order reference as customers type it: "#48213", "order 7731", "A-2290"."""
    n = rng.randint(1000, 99999)
    return rng.choice((f"#{n}", f"order {n}", f"order #{n}", f"A-{n}", f"ref {n}"))


# --- issues: what goes wrong, as the customer says it --------------------------------------
@dataclass(frozen=True)
class Issue:
    """One kind of problem: its key, what it can happen to (`subjects`, or "goods" for a
    product), how customers say it (frames with `{s}` for the subject, in the customer's
    person: "I can't get into my {s}") and the reasons a blunt agent gives."""

    key: str
    subjects: tuple[str, ...]
    frames: tuple[str, ...]
    reasons: tuple[str, ...]


GOODS_SUBJECT = ("goods",)
DELIVERIES = ("order", "parcel", "package", "delivery", "shipment")
ISSUES = (
    # damaged, wrong or missing goods
    Issue("broken", GOODS_SUBJECT, ("my {s} arrived broken", "the {s} came smashed",
          "my {s} is broken", "the {s} broke the first time I used it"),
          ("rough handling", "the box was dropped")),
    Issue("torn", GOODS_SUBJECT, ("my {s} is torn", "the {s} arrived with a rip in it"),
          ("a weak seam", "rough handling")),
    Issue("stained", GOODS_SUBJECT, ("my {s} came with a stain on it", "the {s} is dirty"),
          ("the packing was thin",)),
    Issue("wrong-item", GOODS_SUBJECT, ("you sent me the wrong {s}",
          "I got someone else's {s}", "the {s} in the box is not what I ordered"),
          ("a stock mix-up", "a packing error")),
    Issue("not-as-described", GOODS_SUBJECT, ("the {s} looks nothing like the photo",
          "my {s} is much smaller than the picture"), ("the photos are only examples",)),
    Issue("expired", GOODS_SUBJECT, ("my {s} was already out of date", "the {s} has expired"),
          ("old stock",)),
    Issue("wont-charge", GOODS_SUBJECT, ("my {s} won't charge", "the {s} will not hold a charge",
          "the battery of my {s} dies after an hour"), ("normal wear", "a bad cable")),
    Issue("faulty", GOODS_SUBJECT, ("my {s} keeps switching off",
          "my {s} gives off a burning smell",
          "my {s} does not work properly"), ("misuse", "normal wear")),
    # deliveries
    Issue("delivery-late", DELIVERIES, ("my {s} is late", "my {s} still has not arrived",
          "I am still waiting for my {s}", "where has my {s} got to", "my {s} was due last week"),
          ("shipping delays", "the courier is busy", "high demand")),
    Issue("delivery-lost", DELIVERIES, ("the courier lost my {s}", "my {s} got lost",
          "my {s} never came"), ("the courier", "a wrong address")),
    Issue("wrong-address", DELIVERIES, ("my {s} went to the wrong address",
          "the driver gave my {s} to a neighbour"), ("the address on the form",)),
    Issue("marked-delivered", DELIVERIES, ("my {s} says delivered but I never got it",
          "the tracking says my {s} was delivered but it is not here"),
          ("the driver's scanner",)),
    Issue("tracking", DELIVERIES, ("the tracking for my {s} has not changed in days",
          "I can't track my {s}"), ("the courier's system",)),
    Issue("left-outside", DELIVERIES, ("the driver left my {s} outside in the rain",
          "my {s} was thrown over the fence"), ("the driver",)),
    # returns and refunds
    Issue("refund-missing", ("refund", "money back", "refund for the return"),
          ("I never got my {s}", "I am still waiting for my {s}", "my {s} has not come through",
           "when will I see my {s}"), ("refunds are slow", "the bank is slow")),
    Issue("return-label", ("return label", "returns form", "return code"),
          ("the {s} does not work", "I can't print the {s}", "I never got the {s}"),
          ("the returns system",)),
    Issue("return-refused", ("return", "exchange"), ("you refused my {s}",
          "my {s} was rejected"), ("the returns policy",)),
    # billing
    Issue("charged-twice", ("order", "subscription", "card", "payment"),
          ("I got charged twice for my {s}", "you took the money for my {s} twice",
           "there are two payments for my {s}"), ("a payment glitch", "the bank")),
    Issue("wrong-amount", ("order", "bill", "delivery", "card"),
          ("I was charged too much for my {s}", "there is an extra fee on my {s}",
           "the price of my {s} is wrong"), ("the fees in the terms",)),
    Issue("payment-failed", ("payment", "card", "order"),
          ("my {s} was declined but the money left my account",
          "my {s} failed twice"), ("the bank",)),
    # accounts
    Issue("login", ("account", "profile", "online account"), ("I can't get into my {s}",
          "I am locked out of my {s}", "my {s} will not accept my password"),
          ("a wrong password",)),
    Issue("password-reset", ("password", "account"), ("the reset email for my {s} never comes",
          "I can't reset my {s}"), ("the spam folder",)),
    Issue("hacked", ("account", "email address", "profile"), ("someone got into my {s}",
          "my {s} was hacked"), ("a weak password",)),
    Issue("account-details", ("email address", "phone number", "address"),
          ("I can't change my {s}", "the {s} on my account is wrong"), ("the settings page",)),
    # apps and websites
    Issue("crash", ("app", "website", "checkout", "basket", "site"), ("your {s} keeps crashing",
          "the {s} crashes every time I open it", "the {s} freezes when I pay"),
          ("an old phone", "the browser")),
    Issue("wont-load", ("app", "website", "checkout page", "order page", "site"),
          ("your {s} won't load", "the {s} shows an error", "the {s} is down again"),
          ("the internet connection", "maintenance")),
    Issue("no-email", ("confirmation email", "receipt email", "newsletter"),
          ("I never got the {s}", "the {s} never arrives", "I keep getting the {s} twice"),
          ("the spam folder",)),
    # subscriptions
    Issue("cannot-cancel", ("subscription", "membership", "plan", "free trial"),
          ("I can't cancel my {s}", "there is no way to cancel my {s}"),
          ("the terms of the plan",)),
    Issue("auto-renewed", ("subscription", "membership", "plan", "free trial"),
          ("my {s} renewed without asking me", "you charged me after my {s} ended",
           "I cancelled my {s} but you still charge me"), ("the renewal terms",)),
    Issue("price-rise", ("subscription", "membership", "plan"), ("the price of my {s} went up",
          "my {s} costs more this month"), ("rising costs",)),
    # appointments and technicians
    Issue("no-show", ("technician", "installer", "engineer", "plumber", "electrician"),
          ("the {s} never showed up", "the {s} did not come",
           "I waited all day and the {s} never came"),
          ("the schedule", "traffic")),
    Issue("bad-visit", ("technician", "installer", "engineer", "plumber", "electrician"),
          ("the {s} left a mess", "the {s} did not fix anything", "the {s} was rude to me"),
          ("a busy day",)),
    Issue("booking", ("appointment", "booking", "visit", "fitting"),
          ("my {s} was cancelled at the last minute",
          "I can't move my {s}", "nobody confirmed my {s}"), ("the schedule",)),
    # coupons and gift cards
    Issue("code-fails", ("coupon", "promo code", "discount code", "voucher", "gift card"),
          ("my {s} does not work", "the {s} says it has expired", "the {s} was not applied"),
          ("the small print",)),
    Issue("balance", ("gift card", "store credit", "voucher"), ("the balance on my {s} is gone",
          "my {s} shows zero"), ("the expiry date",)),
    # invoices
    Issue("invoice", ("invoice", "receipt", "bill", "statement"), ("my {s} has the wrong address",
          "I never got an {s}", "the {s} shows the wrong amount", "I can't download my {s}"),
          ("the accounts team",)),
)  # fmt: skip


# Problems no list can hold: made-up words ({w}) in the customer's own phrase, so a reply can only
# name the problem by copying it.
ODD = Issue("odd", GOODS_SUBJECT, (
    "my {s} is {w}", "the {s} keeps {w}ing", "my {s} came without the {w}",
    "the {w} on my {s} fell off", "my {s} smells of {w}", "the {s} {w}s when I use it",
    "my {s} arrived {w}ed", "the {s} has a {w} in it", "my {s} is all {w}",
    "I can't {w} my {s}", "the {w} of my {s} is {w2}",
), ("misuse", "normal wear", "the factory"))  # fmt: skip
ODD_SHARE = 0.15
# Everyday words for cores no grammar made ("my kettle drips onto the carpet every night"): a
# reply that echoes one cannot have learned it, only copied it.
EVERYDAY = tuple("""
    drips onto carpet every night wobbles table leg loose screws missing handle snapped off lid
    won't close door sticks button stuck screen flickers cold water hot noise grinding rattling
    buzzing beeping light blinking red green orange smell burnt plastic rubber paint peeling
    colour faded fabric thread hole zip broke strap buckle sole heel lace wheel spins flat tyre
    seat belt foam stain mould damp wet soaked muddy dusty sticky greasy bent dented
    chipped cracked scratched crushed squashed torn ripped ruined useless half empty full wrong
    size small tiny huge heavy light short long tight loose shiny dull sharp blunt battery
    charger cable plug socket switch remote signal wifi bluetooth update password code link
    email text message call chat agent manager refund credit voucher points balance fee price
    cost charge bill invoice receipt statement account login profile settings page button form
    menu screen basket cart checkout payment card bank transfer delivery courier driver van
    depot warehouse parcel box bag envelope label sticker tape bubble wrap instructions manual
    guide warranty guarantee repair engineer visit slot window morning afternoon evening
    weekend holiday birthday wedding gift present party school office kitchen garden garage
    bathroom bedroom hallway stairs porch doorstep neighbour friend sister brother kids dog cat
    baby toddler twins glue tape hammer nails bolts shelf bracket frame glass mirror lamp bulb
    flicker hum leak drip overflow freeze melt burn shrink stretch fade peel crack split snap
    bend slip slide tip fall drop smash shatter jam block clog stall crash freeze lag reset
    delete vanish disappear double triple twice again never always still already yet late
    early slow fast wrong missing extra broken""".split())  # fmt: skip
# Common English words of every kind (`assets/common-words.txt`): a salad drawn from them can
# open with any word and say anything, as customers do, so only copying can echo it.
COMMON = tuple(
    line.strip()
    for line in (Path(__file__).parent / "assets" / "common-words.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and not line.startswith("#")
)
SALAD_SHARE = 0.45
_SALAD_FRAMES = ("my {s} {x}", "the {s} {x}", "{s} {x}", "I {x} my {s}", "my {s} and the {x}",
                 "you {x} my {s}", "the {x} on my {s}", "{x}", "{x}", "{x} {s}")  # fmt: skip


def salad(rng: random.Random, n: tuple[int, int] = (2, 8)) -> str:
    """A run of common, everyday and made-up words: a problem no grammar says, to be copied."""
    words = []
    for _ in range(rng.randint(*n)):
        kind = rng.random()
        words.append(pseudo_word(rng) if kind < 0.2 else
                     rng.choice(EVERYDAY) if kind < 0.5 else rng.choice(COMMON))  # fmt: skip
    return " ".join(words)


def subject(issue: Issue, rng: random.Random, goods: tuple[str, ...] = GOODS) -> str:
    """A subject for `issue`: a product drawn from `goods`, or one of the issue's own."""
    if issue.subjects == GOODS_SUBJECT:
        return product(rng, goods)
    s = rng.choice(issue.subjects)
    if s in DELIVERIES and rng.random() < 0.3:
        return f"{s} {order_number(rng)}"
    if rng.random() < 0.15:
        return f"{brand(rng)} {s}"
    return s


# --- how the core is dressed ---------------------------------------------------------------
OPENERS = (
    "hi", "hi,", "Hi there,", "hello", "Hello,", "Hello support,", "Dear support,", "Hi team,",
    "Good evening,", "Good morning.", "To whom it may concern,", "hey", "Hey guys,", "ok so",
    "Help!", "Quick one:", "Urgent:", "Excuse me,", "Hello again.", "yo",
)  # fmt: skip
CONTEXTS = (
    "I ordered on {day}.", "I've been a customer for {n} years.", "Order {order}.",
    "I placed an order {ago}.", "This is my {nth} email about this.", "Re {order}.",
    "I bought it {ago}.", "It was a present for my {who}.", "I paid by card {ago}.",
)  # fmt: skip
ENDINGS = (
    "What are you going to do about it?", "Kindly sort it out.", "Fix it.", "Can you help?",
    "I want my money back.", "Really disappointed.", "Unbelievable.", "Any news?",
    "I need it by {day}.", "Call me back.", "Who do I talk to?", "This is a joke.",
    "I will never order again.", "Thanks in advance.", "Not impressed at all.",
    "What should I do?", "Is anyone reading these?", "I'd like an answer please.",
    "My {who} is furious.", "Third time this year.", "Sort it out please.", "Awful service.",
    "It's been {n} days.", "I have the receipt.", "Photos attached.",
)  # fmt: skip
SIGNOFFS = ("Thanks, {name}", "{name}", "Regards, {name}", "- {name}", "thx", "Cheers",
            "Best, {name}", "Kind regards, {name} {surname}")  # fmt: skip
WHO = ("wife", "husband", "son", "daughter", "mum", "dad", "boss", "friend", "neighbour")
AGO = ("last week", "two weeks ago", "on Monday", "a month ago", "yesterday", "three days ago",
       "in March", "over a week ago")  # fmt: skip
NTH = ("second", "third", "fourth", "fifth")
SURNAMES = ("Smith", "Jones", "Patel", "Garcia", "Novak", "Kim", "Okafor", "Silva", "Muller")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NAMES = ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jin", "Kai", "Lena",
         "Milo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tess", "Uma", "Vik", "Wren",
         "Yara", "Zane")  # fmt: skip


def _fill(text: str, rng: random.Random) -> str:
    return text.format(
        day=rng.choice(DAYS), n=rng.randint(2, 12), order=order_number(rng), ago=rng.choice(AGO),
        nth=rng.choice(NTH), who=rng.choice(WHO), name=rng.choice(NAMES),
        surname=rng.choice(SURNAMES),
    )  # fmt: skip


def _typo(text: str, rng: random.Random, keep: str = "") -> str:
    """One slip of the keyboard in a longer word (not one of `keep`'s): two letters swapped, or
    one dropped."""
    words = text.split(" ")
    kept = set(keep.lower().split())
    long = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha() and w.lower() not in kept]
    if not long:
        return text
    i = rng.choice(long)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.5 else w[:j] + w[j + 1 :]
    return " ".join(words)


def _sentence(core: str, rng: random.Random) -> str:
    """The core as its own sentence: a statement, a shout, or a question."""
    core = core[0].upper() + core[1:]
    mark = rng.random()
    if core.lower().startswith(("where", "why", "how")):
        return core + rng.choice(("?", "??", "?!"))
    if mark < 0.6:
        return core + "."
    if mark < 0.8:
        return core + rng.choice(("!", "!!", "!!!"))
    return core + rng.choice((", why?", ". Why??", ", what now?", ". Help?"))


def dress(core: str, rng: random.Random) -> str:
    """A complaint around `core` as a customer might send it (every part optional but the core;
    a typo never in the core's words, so a reply can repeat them as the customer wrote them)."""
    parts = []
    if rng.random() < 0.35:
        parts.append(rng.choice(OPENERS))
    parts.append(_sentence(core, rng))
    if rng.random() < 0.25:  # after the core, so the message opens with what went wrong
        parts.append(_fill(rng.choice(CONTEXTS), rng))
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        parts.append(_fill(rng.choice(ENDINGS), rng))
    if rng.random() < 0.12:
        parts.append(_fill(rng.choice(SIGNOFFS), rng))
    text = " ".join(parts)
    style = rng.random()
    if style < 0.2:
        text = text.lower()
    if rng.random() < 0.15:
        text = text.rstrip(".!")
    if rng.random() < 0.12:
        text = _typo(text, rng, keep=core)
    return text


@dataclass(frozen=True)
class Core:
    """One issue of one subject: the customer's words and the reply's."""

    issue: Issue
    subject: str
    says: str


def core(rng: random.Random, issues: tuple[Issue, ...] = ISSUES,
         goods: tuple[str, ...] = GOODS) -> Core:  # fmt: skip
    """A random core: an issue, a subject for it and one of its frames filled in."""
    kind = rng.random()
    if kind < SALAD_SHARE:
        s, frame = product(rng, goods), rng.choice(_SALAD_FRAMES)
        x = salad(rng)
        return Core(ODD, s if "{s}" in frame else x, frame.format(s=s, x=x))
    issue = ODD if kind < SALAD_SHARE + ODD_SHARE else rng.choice(issues)
    s = subject(issue, rng, goods)
    frame = rng.choice(issue.frames)
    if issue is not ODD and rng.random() < EDIT_SHARE:
        frame = edited(frame, rng)
    return Core(issue, s, frame.format(s=s, w=pseudo_word(rng), w2=pseudo_word(rng)))


# Of the cores told in an issue's own frame, the share with a word of the frame changed or one
# added ("my {s} is late" -> "my {s} item late", "my {s} climb late"): the frame's next
# word is then no longer a safe guess, and a reply that echoes the message has to copy it.
EDIT_SHARE = 0.5


def edited(frame: str, rng: random.Random) -> str:
    """`frame` with one or two of its own words replaced by, or joined by, a common or everyday
    word (never the `{s}` placeholder)."""
    words = frame.split()
    for _ in range(rng.choice((1, 1, 2))):
        word = rng.choice(EVERYDAY if rng.random() < 0.5 else COMMON)
        spots = [i for i, w in enumerate(words) if "{" not in w]
        if spots and rng.random() < 0.6:
            words[rng.choice(spots)] = word
        else:
            words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)
