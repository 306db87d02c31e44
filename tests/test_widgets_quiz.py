"""Callbacks of the interview-drill widgets, pressed the way a learner would press them."""

import json

import pytest

from peftlab import quiz
from peftlab.widgets.quiz import Flashcards, MockInterview

BANK = quiz.load_bank()


def _text(html: str) -> str:
    return html.replace("&#x27;", "'").replace("&amp;", "&")


def test_flashcards_topic_filter_and_reveal():
    deck = Flashcards(BANK, seed=0)
    assert deck.current is not None and len(deck.deck) == len(BANK)
    deck.topic.value = "qlora"
    assert {q.topic for q in deck.deck} == {"qlora"}
    assert len(deck.deck) == sum(q.topic == "qlora" for q in BANK)
    q = deck.current
    assert q.question in _text(deck.card.value) and "card 1 of" in deck.card.value
    assert deck.revealed.value == ""
    deck.reveal_button.click()
    assert q.answer in _text(deck.revealed.value)
    assert all(kp.point in _text(deck.revealed.value) for kp in q.key_points)
    assert q.follow_up_answer in _text(deck.revealed.value)


def test_typed_check_grades_each_point_and_accepting_records_it(tmp_path):
    deck = Flashcards(BANK, progress_path=tmp_path / "p.json", seed=0)
    deck.topic.value = "lora"
    q = deck.current
    assert deck.accept_button.disabled  # nothing checked yet
    deck.answer.value = q.answer
    deck.check_button.click()
    assert deck.feedback.value.count("&#10003;") == len(q.key_points)
    assert "&#10007;" not in deck.feedback.value and "Checker: knew" in deck.feedback.value
    assert q.answer in _text(deck.revealed.value)  # checking also reveals the model answer

    deck.answer.value = "No idea, sorry."
    deck.check_button.click()
    assert deck.feedback.value.count("&#10007;") == len(q.key_points)
    assert "#cf222e" in deck.feedback.value and "Checker: missed" in deck.feedback.value
    assert "looked for" in _text(deck.feedback.value)  # what the checker wanted, per point
    assert not deck.accept_button.disabled
    deck.accept_button.click()  # the checker's missed becomes the final verdict
    assert deck.progress.cards[q.id].box == 1 and deck.current != q


def test_unsure_waits_for_the_learner_whose_word_is_recorded(tmp_path):
    path = tmp_path / "p.json"
    deck = Flashcards(BANK, progress_path=path, seed=0)
    q = next(x for x in BANK if x.id == "lora-init-zero")
    deck.deck, deck.index = [q], 0
    deck.answer.value = "B starts at zero; A is random."  # part of it, in few words
    grade = deck.check()
    assert grade.verdict == quiz.UNSURE
    assert deck.accept_button.disabled and "can't tell" in _text(deck.feedback.value)
    assert "?" in deck.feedback.value and "#9a6700" in deck.feedback.value
    deck.accept_button.click()  # disabled: nothing recorded
    assert q.id not in deck.progress.cards
    deck.knew_button.click()  # the learner's self-assessment is what the schedule uses
    assert json.loads(path.read_text())["cards"][q.id]["box"] == 2


def test_knew_and_missed_move_boxes_and_save(tmp_path):
    path = tmp_path / "progress.json"
    deck = Flashcards(BANK, progress_path=path, seed=1)
    deck.topic.value = "merging"
    first, second = deck.deck[0], deck.deck[1]
    deck.knew_button.click()
    assert deck.current == second
    deck.missed_button.click()
    saved = json.loads(path.read_text())["cards"]
    assert saved[first.id]["box"] == 2 and saved[second.id]["box"] == 1
    assert "knew 1 of 2" in deck.status.value

    again = Flashcards(BANK, progress_path=path, seed=1)
    again.topic.value = "merging"
    assert again.current == second  # the missed card comes back first


def test_deck_runs_out_cleanly():
    small = [q for q in BANK if q.topic == "before-after-demo"][:2]
    deck = Flashcards(small, seed=0)
    deck.missed_button.click()
    deck.knew_button.click()
    assert deck.current is None and "Deck finished" in deck.card.value
    deck.knew_button.click()  # no card: nothing happens
    deck.check_button.click()
    assert deck.marked == 2 and deck.known == 1


def test_mock_interview_times_and_scores():
    now = [100.0]
    mock = MockInterview(BANK, n=3, seconds_per_question=90, seed=2, clock=lambda: now[0])
    assert len({q.topic for q in mock.questions}) == 3  # one topic at a time
    assert mock.submit_button.disabled
    mock.start_button.click()
    assert mock.timer.playing and not mock.submit_button.disabled
    q1, q2, q3 = mock.questions
    assert q1.question in _text(mock.card.value)

    mock.answer.value = q1.answer
    now[0] += 40
    mock.submit_button.click()
    assert q2.question in _text(mock.card.value) and mock.answer.value == ""
    now[0] += 120
    mock.submit_button.click()  # empty answer, over time
    mock.answer.value = q3.answer
    now[0] += 75
    mock.submit_button.click()

    assert mock.finished and mock.submit_button.disabled and not mock.timer.playing
    r1, r2, r3 = mock.rows
    assert r1["passed"] and r1["seconds"] == 40 and not r1["overtime"]
    assert not r2["passed"] and r2["overtime"] and r2["missed"] == [k.point for k in q2.key_points]
    assert r2["verdict"] == quiz.MISSED and r1["verdict"] == quiz.KNEW
    assert r3["passed"] and r3["seconds"] == 75
    assert "Knew 2 of 3; 1 over the 90 s budget." in mock.report.value

    mock.start_button.click()  # a new round starts clean
    assert mock.rows == [] and mock.report.value == "" and mock.index == 0


def test_mock_interview_rejects_bad_settings():
    with pytest.raises(ValueError, match="seconds_per_question=0"):
        MockInterview(BANK, seconds_per_question=0)
    with pytest.raises(ValueError, match="n=0"):
        MockInterview(BANK, n=0)


def test_notebook_06_states_the_bank_rules_it_uses():
    """The notebook's prose quotes the bank's limits; keep them in step with peftlab.quiz."""
    from pathlib import Path

    nb = json.loads(
        (Path(__file__).resolve().parents[1] / "notebooks" / "06_interview_drill.ipynb").read_text()
    )
    prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    lo, hi = quiz.KEY_POINTS
    assert f"{lo}–{hi} **key points**" in prose
    assert "30–90 seconds" in prose and quiz.ANSWER_WORDS == (75, 230)  # ~150 spoken words/min
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    silent = [c for c in code if not c["outputs"]]
    assert code and all("parameters" in c["metadata"].get("tags", []) for c in silent)
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
