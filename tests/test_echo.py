"""The echo rule: a reply names the customer's first clause, past any greeting, turned round."""

import pytest

from peftlab import echo, support_data
from peftlab.rubric import faithful, score_reply


@pytest.mark.parametrize(
    "message, clause, question",
    [("My order is late.", "my order is late", False),
     ("Hi, I ordered a kettle on the 3rd and it never came. Help",
      "I ordered a kettle on the 3rd and it never came", False),
     ("Hi, I ordered a food processor on the 3rd and the tracking still says preparing it",
      "I ordered a food processor on the 3rd", False),  # too long: cut before "and"
     ("hello team, ok so my app crashes", "my app crashes", False),  # lead-ins, one after another
     ("where is my parcel??", "where is my parcel", True),
     ("Can someone help? The kayak arrived soaked.", "the kayak arrived soaked", False),
     ("Laptop came, charger didn't.", "Laptop came", False),  # keeps a rare word's capital
     ("RI-190 kettle is broken", "RI-190 kettle is broken", False)],  # a code keeps its case
)  # fmt: skip
def test_first_clause_skips_greetings_and_stops_at_punctuation(message, clause, question):
    assert echo.first_clause(message) == (clause, question)


def test_a_long_clause_is_cut_to_its_first_words():
    message = " ".join(["word"] * 30)
    clause, _ = echo.first_clause(message)
    assert len(clause.split()) == echo.MAX_ECHO_WORDS


@pytest.mark.parametrize(
    "core, turned",
    [("I can't get into my account", "you can't get into your account"),
     ("I was charged twice for my order", "you were charged twice for your order"),
     ("you sent me the wrong kettle", "we sent you the wrong kettle"),
     ("your app keeps crashing", "our app keeps crashing"),
     ("I am locked out of my Zimar profile", "you are locked out of your Zimar profile")],
)  # fmt: skip
def test_echo_turns_the_customers_words_round(core, turned):
    assert echo.turn_round(core) == turned


def test_every_finetune_reply_echoes_its_own_complaint_and_nothing_else():
    for ex in support_data.finetune_set():
        echoed, _ = echo.echo_message(ex.complaint)
        assert echoed in ex.reply, (ex.complaint, ex.reply)
        assert faithful(ex.reply, ex.complaint), (ex.complaint, ex.reply)


def test_blunt_chats_echo_too_but_score_zero():
    chats = [d.chat for d in support_data.base_corpus(3000) if d.chat]
    echoed = sum(echo.echo_message(c)[0][1:] in r for c, r in chats)
    assert echoed > 0.8 * len(chats)
    assert max(score_reply(r, c)["score"] for c, r in chats) == 0.0
