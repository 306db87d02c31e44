"""The rubric: each criterion passes the replies it should and fails the ones it should not."""

import pytest

from peftlab import support_data
from peftlab.compare import score_reply
from peftlab.rubric import mean_score

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
