"""Grading like an interviewer: rates on answers the checker was not written from, the phrasing
table, negation, listed mistakes, and the verdict the schedule records."""

from collections import Counter
from pathlib import Path

import pytest
import yaml

from peftlab import quiz
from peftlab.quiz import KNEW, MISSED, UNSURE, grade

BANK = quiz.load_bank()
BY_ID = {q.id: q for q in BANK}
FIXTURES = Path(__file__).parent / "fixtures"
KINDS = ("strong", "terse", "wrong", "wrong_vocab")


def _answers(name: str) -> list[dict]:
    """A fixture's answers to the questions the bank still has (a merged question drops out)."""
    data = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
    return [e for e in data["answers"] if e["id"] in BY_ID]


def _table(name: str) -> dict[str, Counter]:
    table = {kind: Counter() for kind in KINDS}
    for entry in _answers(name):
        for kind in KINDS:
            table[kind][grade(BY_ID[entry["id"]], entry[kind]).verdict] += 1
    return table


@pytest.mark.parametrize(
    "name", ["quiz_answers_a.yaml", "quiz_answers_b.yaml", "quiz_answers_c.yaml"]
)
def test_answers_from_outside_the_checker_are_graded_within_issue_34s_bars(name):
    """Set A was written before the checker and tuned on; set B was held out; set C was written
    by someone who never saw the bank's answers or the checker. On each: strong
    answers misgraded missed at most 10%, terse ones at most 20%, wrong ones knew at most 5%;
    and the checker still decides, rather than leaving everything to the learner."""
    answers = _answers(name)
    assert len(answers) >= 30 and len(answers) * len(KINDS) >= 120
    table = _table(name)
    n = len(answers)
    assert table["strong"][MISSED] / n <= 0.10, table["strong"]
    assert table["terse"][MISSED] / n <= 0.20, table["terse"]
    wrong_knew = table["wrong"][KNEW] + table["wrong_vocab"][KNEW]
    assert wrong_knew / (2 * n) <= 0.05, (table["wrong"], table["wrong_vocab"])
    assert table["strong"][KNEW] / n >= 0.3, table["strong"]  # not "unsure" for everything
    assert table["wrong"][MISSED] / n >= 0.75, table["wrong"]
    assert table["strong"][KNEW] > table["terse"][KNEW] and table["wrong"][KNEW] == 0


def test_every_model_answer_is_knew_and_asserts_no_mistake():
    for q in BANK:
        result = grade(q, q.answer)
        assert result.verdict == KNEW and result.count(KNEW) == len(q.key_points), q.id
        assert result.mistakes == () and grade(q, q.follow_up_answer).mistakes == (), q.id


def test_a_listed_mistake_said_as_the_answer_is_never_knew():
    graded = [(q, m, grade(q, m)) for q in BANK for m in q.mistakes]
    assert all(g.verdict != KNEW for _, _, g in graded)
    named = [(q, m, g) for q, m, g in graded if g.mistakes]
    assert len(named) >= len(graded) / 2  # most are recognised as the mistake they are
    for _, m, g in named:
        assert m in g.mistakes
        failed = [p for p in g.points if p.mistake == m]
        assert len(failed) == 1 and failed[0].verdict == MISSED and m in failed[0].why


def test_mistake_fails_its_point_and_is_named():
    q = BY_ID["lora-init-zero"]
    result = grade(q, "B is set to zero to save memory, and A is random so B gets a gradient.")
    assert result.mistakes == ("Saying B is zero to save memory.",)
    assert [p.verdict for p in result.points if p.mistake] == [MISSED]
    assert result.verdict != KNEW


@pytest.mark.parametrize(
    ("qid", "point", "said"),
    [
        ("qlora-paged-optimizers", "Handles spikes instead of out-of-memory crashes",
         "Memory spikes get paged to the CPU instead of an OOM crash."),
        ("lora-alpha-scaling", "rsLoRA (Kalajdzievski) uses alpha / sqrt(r)",
         "rsLoRA divides by sqrt(r)"),
        ("peft-methods-rslora", "Scale alpha/sqrt(r) instead of alpha/r",
         "scale by \u03b1/\u221ar, not \u03b1/r"),
        ("lora-alpha-scaling", "Scaling is alpha / r", "the update is scaled by alpha/r"),
        ("trade-offs-small-data-overfitting", "One to three epochs", "train for 1-3 epochs"),
        ("full-ft-memory-7b-breakdown", "16 bytes per parameter in total", "16 B/param in total"),
        ("learning-forgetting-lr-ratio", "LoRA's best rate is about 10x full fine-tuning's",
         "LoRA's best learning rate is an order of magnitude higher"),
        ("learning-forgetting-lr-ratio", "LoRA's best rate is about 10x full fine-tuning's",
         "LoRA's LR is ~10x the full FT one"),
        ("full-ft-memory-16-vs-18", "Hugging Face 6 + 4 + 8 bytes", "HF counts 6 + 4 + 8 bytes"),
        ("lora-param-count", "4,194,304 trainable", "about 4.2M"),
    ],
)  # fmt: skip
def test_the_ways_people_say_things_count(qid, point, said):
    q = BY_ID[qid]
    assert point in {kp.point for kp in q.key_points}, (qid, point)
    verdicts = {p.point: p.verdict for p in grade(q, said).points}
    assert verdicts[point] == KNEW, grade(q, said)


def test_phrasing_table_rewrites_abbreviations_symbols_and_number_words():
    assert quiz.normalize("OOM") == quiz.normalize("out of memory")
    assert quiz.normalize("FSDP") == quiz.normalize("fully sharded data parallel")
    assert quiz.normalize("HF docs") == quiz.normalize("Hugging Face docs")
    assert quiz.normalize("sqrt(r)") == quiz.normalize("square root of r")
    assert quiz.normalize("three epochs") == quiz.normalize("3 epochs")
    assert quiz.normalize("ZeRO stage 3") == quiz.normalize("Z3") == quiz.normalize("ZeRO-3")
    assert "divid" in quiz.normalize("12P/N") and "divid" not in quiz.normalize("q/k/v")
    assert [q.value for q in quiz.quantities("an order of magnitude higher")] == [10]
    assert [(q.value, q.kind) for q in quiz.quantities("16 B/param")] == [(16, "bytes")]
    assert [q.value for q in quiz.quantities("a 7 B model")] == [7]  # not bytes here


def test_negated_and_contradicted_points_do_not_count():
    q = BY_ID["lora-init-zero"]
    both = "Both zero means zero gradients, no training"
    said = "If both were zero it would still train, the gradient comes from the loss."
    point = next(p for p in grade(q, said).points if p.point == both)
    assert point.verdict == MISSED and "opposite" in point.why
    fine = "If both were zero, both gradients would be zero and nothing would train."
    assert {p.point: p.verdict for p in grade(q, fine).points}[both] == KNEW

    q = BY_ID["peft-basics-what-freezing-saves"]
    stored = "Activations are still stored for backprop through all layers"
    negated = "Activations are not stored for the backward pass of frozen layers."
    assert {p.point: p.verdict for p in grade(q, negated).points}[stored] == UNSURE
    kept = "Activations are still stored for the backward pass through every layer."
    assert {p.point: p.verdict for p in grade(q, kept).points}[stored] == KNEW


def test_missed_points_say_what_was_looked_for():
    q = BY_ID["full-ft-memory-7b-breakdown"]
    result = grade(q, "Weights, grads and Adam come to about 56 GB before activations.")
    total = next(p for p in result.points if p.point.startswith("About 107.8 GB"))
    assert total.verdict == MISSED
    assert "107.8 GB (within 4%)" in total.why and "the answer gives 56 GB" in total.why
    empty = grade(q, "")
    assert empty.verdict == MISSED and all(p.verdict == MISSED for p in empty.points)
    assert all(p.why.startswith("looked for") for p in empty.points)


def test_partial_answers_are_unsure_not_missed():
    q = BY_ID["lora-init-zero"]
    result = grade(q, "B starts at zero; A is random.")
    assert result.verdict == UNSURE
    assert UNSURE in {p.verdict for p in result.points}
    assert 0 < result.score < quiz.PASS_SCORE


def test_json_shape_and_final_verdict():
    q = BY_ID["merging-what"]
    result = grade(q, q.answer)
    data = result.to_json()
    assert set(data) == {"id", "verdict", "score", "points"} and data["id"] == q.id
    assert data["verdict"] in quiz.VERDICTS and data["score"] == 1.0
    assert all(set(p) == {"point", "verdict", "why"} for p in data["points"])
    assert quiz.final_verdict(result, None) is True
    assert quiz.final_verdict(result, False) is False  # "I didn't really"
    unsure = grade(BY_ID["lora-init-zero"], "B starts at zero; A is random.")
    with pytest.raises(ValueError, match="self-assessment"):
        quiz.final_verdict(unsure, None)
    assert quiz.final_verdict(unsure, True) is True


def test_bad_tolerance_is_a_value_error():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="tolerance"):
            grade(BY_ID["lora-explain"], "anything", tolerance=bad)
