"""Quiz engine: honest answer checking, Leitner scheduling, progress that survives corruption."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from statistics import mean

import pytest

from peftlab import quiz
from peftlab.quiz import (
    BOX_INTERVAL_SESSIONS,
    Progress,
    check_answer,
    choose,
    load_bank,
    load_progress,
    normalize,
    save_progress,
    stem_word,
)

BANK = load_bank()
BY_ID = {q.id: q for q in BANK}
OFF_TOPIC = (
    "Preheat the oven to two hundred degrees, whisk the eggs with sugar until pale, fold in the "
    "flour gently and bake the sponge for twenty five minutes before letting it cool on a rack."
)


@pytest.mark.parametrize("text", ["", "   ", OFF_TOPIC, "I don't know."])
def test_empty_or_off_topic_answers_cover_nothing(text):
    for q in BANK:
        result = check_answer(q, text)
        assert result.covered == [], (q.id, [kp.point for kp in result.covered])
        assert not result.passed and result.score == 0.0


def test_other_questions_answers_rarely_pass():
    """A model answer to a different topic's question must not count as knowing this one."""
    scores = [
        check_answer(q, other.answer).score
        for q in BANK
        for other in BANK
        if other.topic != q.topic
    ]
    assert mean(scores) < 0.1
    assert sum(s >= quiz.PASS_SCORE for s in scores) / len(scores) < 0.01


def test_repeating_the_question_does_not_pass():
    assert all(not check_answer(q, q.question).passed for q in BANK)


def test_stems_and_synonyms_make_wording_irrelevant():
    forms = ("quantized", "quantizing", "quantization", "quantizes")
    assert len({stem_word(w) for w in forms}) == 1
    assert stem_word("merging") == stem_word("merged") == stem_word("merge")
    assert stem_word("stopping") == stem_word("stop") and stem_word("copied") == stem_word("copies")
    assert normalize("frozen weights") == normalize("freeze weight") == normalize("fixed weights")
    assert normalize("matrices") == normalize("matrix")
    assert normalize("6,738,415,616 params") == ["6738415616", stem_word("parameter")]
    assert normalize("quantised") == normalize("quantized")


def test_paraphrase_covers_points_in_other_words():
    q = BY_ID["lora-explain"]
    paraphrase = (
        "You keep the original matrix fixed and train a low rank update made of two thin "
        "matrices; B is initialised to zeros so you start from the pretrained model. The "
        "output is scaled by alpha over r in the forward computation. Afterwards the update can "
        "be merged, so inference is as fast as before."
    )
    result = check_answer(q, paraphrase)
    assert result.missed == [], result.missing_concepts
    assert result.passed


def test_partial_answer_names_what_is_missing():
    q = BY_ID["qlora-double-quant"]
    partial = "Each block of 64 weights has an fp32 absmax, which costs 0.5 bits per parameter."
    result = check_answer(q, partial)
    covered = {kp.point for kp in result.covered}
    assert covered == {"One fp32 absmax per block of 64 = 0.5 bits per parameter"}
    assert not result.passed
    missed = result.missing_concepts["Quantize constants to 8-bit, second-level blocks of 256"]
    assert "256" in missed


def test_key_point_needs_every_concept():
    q = BY_ID["full-ft-memory-7b-breakdown"]
    point = "16 bytes per parameter in total"
    with_all = check_answer(q, "In total it is 16 bytes per parameter.")
    without_unit = check_answer(q, "In total it is 16 per parameter.")
    assert point in {kp.point for kp in with_all.covered}
    assert point not in {kp.point for kp in without_unit.covered}


def _progress_after(records: dict[str, list[bool]]) -> Progress:
    p = Progress()
    for session_answers in zip(*records.values(), strict=True):
        p.start_session()
        for qid, knew in zip(records, session_answers, strict=True):
            p.record(qid, knew)
    return p


def test_leitner_boxes_move_up_and_drop_to_one():
    p = _progress_after({"lora-explain": [True, True, False], "qlora-nf4": [True, True, True]})
    assert p.cards["lora-explain"].box == 1
    assert p.cards["qlora-nf4"].box == 4
    assert p.cards["qlora-nf4"].seen == 3 and p.cards["qlora-nf4"].correct == 3
    p.start_session()
    assert p.is_due("lora-explain")
    assert not p.is_due("qlora-nf4")
    for _ in range(BOX_INTERVAL_SESSIONS[4] - 1):
        p.start_session()
    assert p.is_due("qlora-nf4")


def test_missed_questions_come_back_first():
    lora = [q for q in BANK if q.topic == "lora"]
    p = Progress()
    p.start_session()
    for q in lora[:4]:
        p.record(q.id, knew=q.id != lora[2].id)
    p.start_session()
    picked = choose(BANK, p, n=3, topic="lora", seed=1)
    assert picked[0].id == lora[2].id
    assert all(q.id not in {x.id for x in lora[:4]} for q in picked[1:])  # then unseen ones
    everything = choose(BANK, p, n=len(lora), topic="lora", seed=1)
    known = {lora[0].id, lora[1].id, lora[3].id}
    assert {q.id for q in everything[-3:]} == known  # known cards wait for their box interval


def test_choose_filters_and_validates():
    p = Progress()
    hard_qlora = choose(BANK, p, n=50, topic="qlora", difficulty="hard")
    assert hard_qlora and all(q.topic == "qlora" and q.difficulty == "hard" for q in hard_qlora)
    assert len(choose(BANK, p, n=5)) == 5
    assert choose(BANK, p, n=5, seed=3) == choose(BANK, p, n=5, seed=3)
    with pytest.raises(ValueError, match=r"topic='lorax'.*peft-basics"):
        choose(BANK, p, n=1, topic="lorax")
    with pytest.raises(ValueError, match=r"difficulty='impossible'"):
        choose(BANK, p, n=1, difficulty="impossible")
    with pytest.raises(ValueError, match=r"n=0"):
        choose(BANK, p, n=0)


def test_progress_round_trip_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))
    path = quiz.progress_path()
    assert path.parent == tmp_path
    p = _progress_after({"lora-explain": [True, False], "merging-what": [True, True]})
    assert save_progress(p) == path
    loaded, message = load_progress()
    assert message is None
    assert loaded == p
    assert json.loads(path.read_text())["version"] == 1
    assert [f.name for f in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_missing_progress_is_a_fresh_start(tmp_path):
    p, message = load_progress(tmp_path / "nothing.json")
    assert p == Progress() and message is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"version": 1, "session": "three", "cards": {}}',
        '{"version": 1, "session": 2, "cards": {"lora-explain": {"box": 9, "seen": 1, '
        '"correct": 1, "last_session": 1}}}',
        "[]",
        "\xff\xfe binary",
    ],
)
def test_corrupt_progress_is_renamed_aside_not_lost(tmp_path, content):
    path = tmp_path / "quiz-progress.json"
    path.write_bytes(content.encode("latin-1"))
    p, message = load_progress(path)
    assert p == Progress()
    assert not path.exists()
    kept = list(tmp_path.glob("quiz-progress.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == content.encode("latin-1")
    assert str(path) in message and str(kept[0]) in message and "started fresh" in message
    save_progress(p, path)
    path.write_text("again broken")
    load_progress(path)
    assert len(list(tmp_path.glob("quiz-progress.json.corrupt-*"))) == 2  # never overwritten


def test_summary_counts_boxes_and_due():
    p = _progress_after({"lora-explain": [True], "lora-init-zero": [False]})
    p.start_session()
    rows = {r["topic"]: r for r in quiz.summary(BANK, p)}
    lora = rows["lora"]
    assert lora["questions"] == sum(q.topic == "lora" for q in BANK)
    assert lora["seen"] == 2 and lora["known"] == 1
    assert lora["boxes"][1] == 1 and lora["boxes"][2] == 1
    assert lora["due"] == lora["questions"] - 1  # box-2 card waits two sessions
    assert rows["qlora"]["seen"] == 0


def test_interview_round_visits_topics_in_turn():
    n_topics = len({q.topic for q in BANK})
    n = n_topics + 2
    picked = quiz.interview_round(BANK, n=n, seed=4)
    topics = [q.topic for q in picked]
    assert len(set(topics[:n_topics])) == n_topics  # every topic once before any repeats
    assert len({q.id for q in picked}) == n
    assert quiz.interview_round(BANK, n=n, seed=4) == picked
    first_pass = picked[:n_topics]
    assert sum(q.difficulty == "easy" for q in first_pass) == 0  # medium/hard first
    assert len(quiz.interview_round(BANK, n=500)) == len(BANK)
    with pytest.raises(ValueError, match="n=-1"):
        quiz.interview_round(BANK, n=-1)


def test_simulated_learner_climbs_the_boxes():
    always = dict.fromkeys(quiz.DIFFICULTIES, 1)
    quick = quiz.simulate_learner(BANK, sessions=4, n=10, attempts_to_learn=always)
    # Box 2 waits 2 sessions: session 2 brings 10 new cards, sessions 3 and 4 promote both tens.
    assert [h["unseen"] for h in quick] == [len(BANK) - 10, len(BANK) - 20, *[len(BANK) - 20] * 2]
    assert [h["3"] for h in quick] == [0, 0, 10, 20]
    assert all(h["1"] == 0 for h in quick)
    never = dict.fromkeys(quiz.DIFFICULTIES, 99)
    stuck = quiz.simulate_learner(BANK, sessions=4, n=10, attempts_to_learn=never)
    assert [h["1"] for h in stuck] == [10, 10, 10, 10]  # missed cards come back, nothing new
    assert stuck[-1]["unseen"] == len(BANK) - 10
    mixed = quiz.simulate_learner(BANK, 8, 10, {"easy": 1, "medium": 2, "hard": 3})
    assert sum(mixed[-1][b] for b in "2345") > sum(mixed[1][b] for b in "2345")
    assert all(sum(h.values()) == len(BANK) for h in mixed)


def test_the_quiz_needs_no_checkout(tmp_path):
    """With no checkout in sight, the package imports, the bank it ships loads, and what needs
    the lessons' files says how to point at them (tests/test_installed.py does this installed)."""
    code = (
        "from pathlib import Path\n"
        "from peftlab import paths\n"
        "paths.MARKER = Path('no-checkout-has-this.md')\n"
        "from peftlab import quiz\n"
        "from peftlab.lessons import lesson06_interview as lesson\n"
        "import peftlab.commands.quiz\n"
        "assert len(quiz.load_bank()) >= 50\n"
        "assert lesson.results()['topics']\n"
        "try:\n"
        "    paths.lessons_dir()\n"
        "except FileNotFoundError as exc:\n"
        "    assert 'PEFTLAB_ROOT' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a checkout was found')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PEFTLAB_ROOT"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


# A person grades numbers by value: a sensible rounding counts, a close but wrong figure, a wrong
# order of magnitude or a wrong unit does not. (question, key point, rounded, wrong answers)
ROUNDING = [
    (
        "qlora-double-quant",
        "Overhead falls to 0.126953125 bits per parameter",
        ["about 0.127 bits per parameter", "roughly 0.13 bits per parameter"],
        ["about 0.25 bits per parameter", "about 0.1 bits per parameter"],
    ),
    (
        "qlora-double-quant",
        "Saves 0.373046875 bits per parameter, ~302 MB for 7B",
        [
            "it saves 0.373 bits, ~300 MB",
            "saves 0.37 bits a weight, about 0.3 GB",
            "0.373, 288 MiB",
            "0.373 bits, 0.3 gigabytes",
        ],
        ["it saves 0.373 bits, 3,000 MB", "it saves 0.373 bits, 302 GB", "0.373, 302 MiB"],
    ),
    (
        "full-ft-memory-three-methods",
        "Without checkpointing about 111.0, 16.3 and 8.6 GB",
        ["111 GB, 16 GB and 8.6 GB", "0.111 TB, 16.3 GB, 8.57 GB"],
        ["150 GB, 16.3 GB and 8.6 GB", "111 GB, 16.3 GB and 86 GB", "111 GB, 17 GB, 8.6 GB"],
    ),
    (
        "full-ft-memory-7b-breakdown",
        "About 107.8 GB for Llama-2-7B before activations",
        ["about 108 GB before activations", "roughly 110 GB before the activations"],
        ["about 100 GB before activations", "about 1,078 GB before activations"],
    ),
    (
        "full-ft-memory-7b-breakdown",
        "16 bytes per parameter in total",
        ["16 bytes per parameter", "128 bits per parameter", "sixteen bytes per parameter"],
        ["18 bytes per parameter", "16 bits per parameter", "16 GB per parameter"],
    ),
    (
        "lora-param-count",
        "4,194,304 trainable",
        ["4.2 million trainable", "4,194,304 trainable", "4.19M trainable"],
        ["42 million trainable", "4.9 million trainable", "4.2 billion trainable"],
    ),
    (
        "lora-param-count",
        "About 0.062% of peft's total, 6,742,609,920, which includes the adapter",
        ["0.06% as peft prints it", "0.0622 percent by peft's count"],
        ["0.6% as peft prints it", "0.05% as peft prints it"],
    ),
    (
        "qlora-70b-one-gpu",
        "Plain LoRA still holds the bf16 base, about 138 GB",
        ["about 140 GB in bf16", "0.138 TB of bf16 weights"],
        ["about 128 GB in bf16", "about 138 GiB in bf16", "about 13.8 GB in bf16"],
    ),
    (
        "qlora-70b-one-gpu",
        "All-linear r64 needs 52.4 GB with peft's defaults, 47.2 GB with the paper's recipe",
        ["52 GB with the defaults, 47 GB with the paper's recipe"],
        ["55 GB with the defaults, 47 GB with the recipe", "52 GB, 45 GB with the recipe"],
    ),
    (
        "qlora-7b-memory",
        "Adapters r=64 all-linear, 159,907,840 params, 640 MB in fp32 (320 MB in bf16)",
        ["160 million parameters, 0.64 GB", "159.9M parameters, about 320 MB"],
        ["160 million parameters, 960 MB", "16 million parameters, 640 MB"],
    ),
    (
        "trade-offs-serving-many",
        "674 GB for 50 copies vs 13.5 GB + 419 MB (bf16 adapters; 839 MB in fp32)",
        ["about 670 GB against about 420 MB", "0.67 TB versus 0.84 GB"],
        ["about 674 GB against about 4.19 GB", "about 67 GB against about 419 MB"],
    ),
    (
        "lora-target-modules-gqa",
        "3,407,872 trainable for r=8 on q,v",
        ["3.4 million trainable", "3,407,872 trainable"],
        ["4.2 million trainable", "34 million trainable"],
    ),
    (
        "trade-offs-target-modules",
        "4,194,304 vs 19,988,480 for Llama-2-7B at r=8",
        ["4.19 million against 20 million", "4,194,304 and 19,988,480"],
        ["4.19 million against 40 million", "4.19 million against 2.0 million"],
    ),
    (
        "peft-basics-what-is-peft",
        "Trainable share is tiny (0.062% for LoRA r=8 on q,v of Llama-2-7B)",
        ["a share of 0.06 percent", "4.2M trainable, a tiny share"],
        ["a share of 0.6 percent", "42M trainable, a tiny share"],
    ),
    (
        "learning-forgetting-lr-ratio",
        "Full FT around 1e-5; LoRA around 1e-4 to 3e-4",
        ["full fine-tuning 0.00001, LoRA 0.0001", "1e-05 versus 1e-04"],
        ["full fine-tuning 1e-3, LoRA 1e-4", "full fine-tuning 1e-5, LoRA 1e-2"],
    ),
]


def _covers(qid: str, point: str, text: str) -> bool:
    q = BY_ID[qid]
    assert point in {kp.point for kp in q.key_points}, (qid, point)
    return point in {kp.point for kp in check_answer(q, text).covered}


@pytest.mark.parametrize(
    ("qid", "point", "rounded", "wrong"), ROUNDING, ids=[r[0] for r in ROUNDING]
)
def test_numbers_count_when_rounded_not_when_wrong(qid, point, rounded, wrong):
    for text in rounded:
        assert _covers(qid, point, text), text
    for text in wrong:
        assert not _covers(qid, point, text), text


def test_rounding_cases_cover_ten_questions():
    assert len({r[0] for r in ROUNDING}) >= 10


_NUMBER_IN_TEXT = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:e[-+]?\d+)?"
)


def _renumber(text: str, change) -> str:
    def sub(m: re.Match) -> str:
        value = change(float(m.group(0).replace(",", "")))
        return f"{value:,.0f}" if value >= 100 else f"{value:.4g}"

    return _NUMBER_IN_TEXT.sub(sub, text)


def _two_digits(x: float) -> float:
    return float(f"{x:.2g}") if x else x


def _numeric(kp) -> bool:
    return any(all(isinstance(a, quiz.Quantity) for a in alts) for alts in kp.concepts())


WITH_NUMBERS = [q for q in BANK if any(_numeric(kp) for kp in q.key_points)]


@pytest.mark.parametrize("q", WITH_NUMBERS, ids=[q.id for q in WITH_NUMBERS])
def test_every_model_answer_still_passes_rounded_and_fails_inflated(q):
    """Every figure of a model answer rounded to two significant digits still covers every key
    point; every figure inflated by a quarter misses every key point that needs a number."""
    rounded = check_answer(q, _renumber(q.answer, _two_digits))
    assert not rounded.missed, rounded.missing_concepts
    inflated = check_answer(q, _renumber(q.answer, lambda x: x * 1.25))
    numeric = {kp.point for kp in q.key_points if _numeric(kp)}
    assert not numeric & {kp.point for kp in inflated.covered}, inflated.covered


def test_tolerance_is_stated_once_and_overridable():
    assert quiz.NUMBER_TOLERANCE == quiz.matching.NUMBER_TOLERANCE
    q = BY_ID["qlora-double-quant"]
    point = "Saves 0.373046875 bits per parameter, ~302 MB for 7B"
    text = "saves 0.373 bits per parameter, about 330 MB"  # 9% high
    assert point not in {kp.point for kp in check_answer(q, text).covered}
    assert point in {kp.point for kp in check_answer(q, text, tolerance=0.1).covered}
    loose = dataclasses.replace(q, tolerance=0.1)
    assert point in {kp.point for kp in check_answer(loose, text).covered}
    for bad in (-0.1, 1.0, 5):
        with pytest.raises(ValueError, match="tolerance"):
            check_answer(q, text, tolerance=bad)


def test_quantities_read_units_multipliers_and_separators():
    found = quiz.quantities("~300 MB, 0.3 GB, 4.2 million, 65B, 6,738,415,616, 1e-4, 12%, 16-bit")
    assert [round(f.value, 12) for f in found] == [3e8, 3e8, 4.2e6, 65e9, 6738415616, 1e-4, 12, 2]
    assert [f.kind for f in found] == ["bytes", "bytes", None, None, None, None, "percent", "bytes"]
    assert quiz.quantities("fp32 bf16 q_proj Llama") == []


def test_every_follow_up_has_an_answer():
    for q in BANK:
        lo, hi = quiz.FOLLOW_UP_WORDS
        assert lo <= len(q.follow_up_answer.split()) <= hi, q.id
        assert q.follow_up_answer != q.answer
