"""The rubric: each criterion passes the replies it should and fails the ones it should not."""

import pytest

from peftlab import support_data, world
from peftlab.rubric import mean_score, score_reply

LATE = "My order is late."
KETTLE = "The green kettle I bought arrived cracked."


@pytest.mark.parametrize(
    "reply",
    ["Hi! Sorry.", "Hello there, sorry.", "Good morning! Sorry.", "Thank you for writing. Sorry.",
     "Dear customer, sorry."],
)  # fmt: skip
def test_greeting_positive(reply):
    assert score_reply(reply, LATE)["greeting"]


@pytest.mark.parametrize("reply", ["Your order is late.", "Sorry. Hi!", "This is not our fault."])
def test_greeting_negative(reply):
    assert not score_reply(reply, LATE)["greeting"]


@pytest.mark.parametrize(
    "reply, complaint",
    [("I'm sorry your order is late.", LATE),
     ("I apologize for the delay with your order.", LATE),
     ("So sorry that the kettle arrived cracked.", KETTLE),
     ("I understand how frustrating a crack in a new kettle is.", KETTLE)],
)  # fmt: skip
def test_acknowledges_positive(reply, complaint):
    assert score_reply(reply, complaint)["acknowledges"]


@pytest.mark.parametrize(
    "reply, complaint",
    [("Your order is late because of shipping delays.", LATE),  # names it, no empathy
     ("I'm sorry about that.", KETTLE),  # empathy, but not this problem
     ("I'm sorry your order is late.", KETTLE),  # another complaint's problem
     ("I'm sorry about your green order.", KETTLE)],  # a colour alone does not name the product
)  # fmt: skip
def test_acknowledges_negative(reply, complaint):
    assert not score_reply(reply, complaint)["acknowledges"]


@pytest.mark.parametrize(
    "reply",
    ["I will send you a new one.", "Let me look into your order right away.",
     "We'll refund the full price.", "I'll ask our team to check it."],
)  # fmt: skip
def test_action_positive(reply):
    assert score_reply(reply, LATE)["action"]


@pytest.mark.parametrize(
    "reply", ["Read the manual.", "That is not our fault.", "It will arrive.", "You will get it."]
)
def test_action_negative(reply):
    assert not score_reply(reply, LATE)["action"]


@pytest.mark.parametrize(
    "reply",
    ["within the hour", "within 24 hours", "by Friday", "today", "by the end of the day",
     "in two days", "tomorrow", "within three business days"],
)  # fmt: skip
def test_timeline_positive(reply):
    assert score_reply(f"It ships {reply}.", LATE)["timeline"]


@pytest.mark.parametrize(
    "reply", ["It ships soon.", "Right away!", "It is a week late.", "It stopped after two days."]
)
def test_timeline_negative(reply):
    assert not score_reply(reply, LATE)["timeline"]


def test_lesson_examples_score_zero_and_one():
    before = "Your order is late because of shipping delays."
    after = ("Hi! I'm sorry about the delay. Let me look into your order right away and get back "
             "to you within the hour.")  # fmt: skip
    assert score_reply(before, LATE)["score"] == 0.0
    assert score_reply(after, LATE)["score"] == 1.0


def test_one_canned_reply_cannot_pass_every_complaint():
    canned = ("Hi! I'm so sorry about your order. I will look into it right away and get back to "
              "you within the hour.")  # fmt: skip
    complaints = support_data.heldout_complaints()
    acknowledged = [score_reply(canned, c)["acknowledges"] for c in complaints]
    assert not any(acknowledged)


def test_score_is_the_mean_of_the_four_marks():
    marks = score_reply("Hi! It ships today.", LATE)
    assert marks["score"] == 0.5
    assert [k for k in marks if k != "score"] == ["greeting", "acknowledges", "action", "timeline"]


def test_mean_score_is_the_mean_of_the_replies_scores():
    kettle = "My kettle is leaking."
    polite = "Hi! I'm sorry that your kettle is leaking. I will send you a new one today."
    blunt = "Your kettle is leaking because of a loose seal."
    assert mean_score([polite, blunt], [kettle, kettle]) == 0.5
    with pytest.raises(ValueError, match="no complaints"):
        mean_score([], [])
    with pytest.raises(ValueError):
        mean_score([polite], [kettle, kettle])  # one reply per complaint


# --- faithful: reported beside the rubric ---------------------------------------------------
from peftlab.rubric import faithful, invented  # noqa: E402

CHARGED = "I was charged twice for the same order."
LOGIN = "I can't log in to my account."
SCREEN = "My package arrived with a cracked screen."


@pytest.mark.parametrize(
    "complaint, reply, names",
    [  # the replies issue 20 measured: another customer's product or problem
     (CHARGED, "Hi there! I'm so sorry to hear that your order is late. I will pack it again and "
               "ship it by Friday.", ["late"]),
     (LOGIN, "Hi there! I'm so sorry to hear that your black scarf came without all its parts.",
      ["black", "scarf", "parts"]),
     (SCREEN, "Hi there! I'm sorry that your blue sofa arrived cracked. I will send a new one "
              "today.", ["blue", "sofa"]),  # passes "acknowledges" on one echoed word
     (KETTLE, "Hi! I'm sorry your red kettle arrived cracked.", ["red"]),  # the wrong colour
     ("The fridge is broken.", "Hi! I'm sorry about your subscription.", ["subscription"]),
     (LATE, "Sorry, your lantern smells like smoke.", ["lantern", "smells", "smoke"]),
    ],
)  # fmt: skip
def test_invented_names_what_the_complaint_does_not(complaint, reply, names):
    assert invented(reply, complaint) == names
    assert not faithful(reply, complaint)


@pytest.mark.parametrize(
    "complaint, reply",
    [(LATE, "Hi! I'm sorry your order is late. I will check it today."),
     (KETTLE, "Hello! I'm so sorry that your green kettle arrived cracked. I'll ship a new one."),
     ("My parcel is delayed.", "Hi! I'm sorry your order is late."),  # a synonym is no invention
     (CHARGED, "Hi! Sorry you were billed twice. I'll refund the second payment today."),
     (LOGIN, "Hi! Sorry you can't log in to your account. I will reset your password today."),
     ("The fridge is broken.", "Hi! Sorry about that. I will send a receipt today."),  # an action
     ("My phone case is the wrong colour.", "Hello! Sorry. I will look into your order today.")],
)  # fmt: skip
def test_faithful_replies_name_only_what_they_were_told(complaint, reply):
    assert invented(reply, complaint) == []
    assert faithful(reply, complaint)


def test_the_finetune_replies_are_faithful_to_their_own_complaints_and_not_to_others():
    train = support_data.finetune_set()
    assert all(faithful(ex.reply, ex.complaint) for ex in train)
    # another complaint's reply names its product or problem, where the world's lists know them
    # (not a made-up word, which only the complaint that said it can name)
    known = {w for name in world.GOODS + support_data.ALL_NOUNS for w in name.split()}
    known |= set(world.DESCRIPTORS)
    plain = [ex for ex in train[1:] if ex.problem != "odd" and set(ex.product.split()) <= known]
    assert len(plain) > 100
    swapped = [faithful(a.reply, b.complaint) for a, b in zip(plain, plain[1:], strict=False)]
    assert sum(swapped) / len(swapped) < 0.1


def test_contractions_and_pleasantries_name_no_problem():
    # "I'm" in the complaint is not the "m" of the reply's "I'm"; "thanks" is not a problem
    reply = "Hi, thanks for writing! I'm so sorry that your blue sofa arrived cracked."
    assert not score_reply(reply, "I'm still waiting, thanks")["acknowledges"]
    assert score_reply(reply, "I'm upset: the sofa arrived cracked, thanks")["acknowledges"]
