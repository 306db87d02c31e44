"""`peftlab quiz` driven through piped stdin: typed answers, flashcards, interruption, errors."""

import builtins
import io
import json

import pytest

from peftlab import paths, quiz
from peftlab.cli import main

BANK = quiz.load_bank()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))
    return tmp_path


def _stdin(monkeypatch, lines: list[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))


def _cards(data_dir) -> dict:
    return json.loads((data_dir / quiz.PROGRESS_FILE).read_text())["cards"]


def _first_session_order(n: int, seed: int, **filters) -> list[quiz.Question]:
    fresh = quiz.Progress()
    fresh.start_session()
    return quiz.choose(BANK, fresh, n, seed=seed, **filters)


def _typed(answer: str, verdict: str = "") -> list[str]:
    """What a learner types for one question: the answer, an empty line to end it, Enter after
    the follow-up question, then Enter to accept the checker's verdict (or y / n)."""
    return [answer, "", "", verdict]


def test_typed_answers_are_graded_and_saved(data_dir, monkeypatch, capsys):
    expected = _first_session_order(3, seed=7, topic="qlora")
    good, bad = expected[0], expected[1:]
    _stdin(monkeypatch, [*_typed(good.answer), *_typed("no idea"), *_typed("pass")])
    assert main(["quiz", "--topic", "qlora", "--n", "3", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out.count("Q: ") == 3
    assert "Checker: knew (100%" in out and out.count("Checker: missed (0%") == 2
    assert "looked for" in out  # what the checker wanted, for each missed point
    assert "Model answer:" in out
    assert all(q.follow_up_answer.split()[0] in out for q in expected)
    assert "Knew 1 of 3" in out and "come back first" in out
    cards = _cards(data_dir)
    assert cards[good.id]["box"] == 2
    assert all(cards[q.id]["box"] == 1 for q in bad)

    _stdin(monkeypatch, [*_typed("x"), *_typed("y")])
    assert main(["quiz", "--topic", "qlora", "--n", "2", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    asked = [line for line in out.splitlines() if line.startswith("Q: ")]
    assert {a.removeprefix("Q: ") for a in asked} == {q.question for q in bad}  # missed first


def test_follow_up_question_comes_before_its_answer(data_dir, monkeypatch, capsys):
    q = next(x for x in BANK if x.id == "lora-explain")
    _stdin(monkeypatch, [q.answer, ""])  # input ends while the follow-up waits for Enter
    assert main(["quiz", "--id", q.id]) == 0
    out = capsys.readouterr().out
    assert f"Follow-up: {q.follow_up}"[:60] in out
    assert q.follow_up_answer.split(".")[0][:40] not in out.replace("\n  ", " ")
    assert not (data_dir / quiz.PROGRESS_FILE).exists()  # not finished: nothing recorded


def test_multi_line_answer_is_one_answer(data_dir, monkeypatch, capsys):
    first, second = _first_session_order(2, seed=5, topic="lora")
    words = first.answer.split()
    half = len(words) // 2
    lines = [" ".join(words[:half]), " ".join(words[half:]), "", "", ""]
    _stdin(monkeypatch, [*lines, *_typed("no idea")])
    assert main(["quiz", "--topic", "lora", "--n", "2", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("Q: ") == 2 and "Checker: knew (100%" in out
    cards = _cards(data_dir)
    assert cards[first.id]["box"] == 2 and cards[second.id]["box"] == 1


def test_skip_does_not_fail_the_question(data_dir, monkeypatch, capsys):
    first, second = _first_session_order(2, seed=3, topic="merging")
    _stdin(monkeypatch, ["", *_typed(second.answer)])
    assert main(["quiz", "--topic", "merging", "--n", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Skipped 1" in out and "Knew 1 of 1" in out
    cards = _cards(data_dir)
    assert first.id not in cards and cards[second.id]["box"] == 2


def test_quit_before_answering_counts_no_session(data_dir, monkeypatch, capsys):
    (data_dir / quiz.PROGRESS_FILE).write_text(quiz.Progress(session=4).to_json())
    _stdin(monkeypatch, [":q", "never read"])
    assert main(["quiz", "--n", "3"]) == 0
    assert "Nothing answered" in capsys.readouterr().out
    saved = json.loads((data_dir / quiz.PROGRESS_FILE).read_text())
    assert saved["session"] == 4 and saved["cards"] == {}


def test_quit_after_one_answer_keeps_it(data_dir, monkeypatch, capsys):
    (first,) = _first_session_order(1, seed=0)
    _stdin(monkeypatch, [*_typed(first.answer), ":q"])
    assert main(["quiz", "--n", "3", "--seed", "0"]) == 0
    assert "Knew 1 of 1" in capsys.readouterr().out
    assert list(_cards(data_dir)) == [first.id]


def test_id_drills_one_question(data_dir, monkeypatch, capsys):
    _stdin(monkeypatch, _typed("no idea"))
    assert main(["quiz", "--id", "qlora-nf4", "--n", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("Q: ") == 1 and "qlora-nf4" in out
    assert list(_cards(data_dir)) == ["qlora-nf4"]
    assert main(["quiz", "--id", "qlora-nf5"]) == 2
    err = capsys.readouterr().err
    assert "unknown question id 'qlora-nf5'" in err and "qlora-nf4" in err
    assert len(err.strip().splitlines()) == 1


def test_unsure_asks_the_learner_and_schedules_their_answer(data_dir, monkeypatch, capsys):
    partial = "B starts at zero; A is random."
    q = next(x for x in BANK if x.id == "lora-init-zero")
    assert quiz.grade(q, partial).verdict == "unsure"
    _stdin(monkeypatch, [partial, "", "", "", "maybe", "y"])  # Enter alone is not an answer here
    assert main(["quiz", "--id", "lora-init-zero"]) == 0
    out = capsys.readouterr().out
    assert "Checker: unsure" in out and "Did you know it?" in out
    assert out.count("Please answer y or n.") == 2
    assert _cards(data_dir)["lora-init-zero"]["box"] == 2


def test_i_did_say_that_overrides_missed(data_dir, monkeypatch, capsys):
    _stdin(monkeypatch, _typed("I would rather not say.", "y"))
    assert main(["quiz", "--id", "merging-what"]) == 0
    out = capsys.readouterr().out
    assert "Checker: missed" in out and "y = I did say that" in out
    assert _cards(data_dir)["merging-what"]["box"] == 2


def test_check_prints_the_grade_as_json(data_dir, monkeypatch, capsys):
    q = next(x for x in BANK if x.id == "lora-init-zero")
    _stdin(monkeypatch, ["If both were zero it would still train;", "the loss gives a gradient."])
    assert main(["quiz", "check", q.id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"id", "verdict", "score", "points"} and out["id"] == q.id
    assert out["verdict"] == "missed" and 0 <= out["score"] <= 1
    assert [p["point"] for p in out["points"]] == [kp.point for kp in q.key_points]
    assert all(set(p) == {"point", "verdict", "why"} for p in out["points"])
    both = next(p for p in out["points"] if p["point"].startswith("Both zero"))
    assert both["verdict"] == "missed" and "opposite" in both["why"]
    assert not (data_dir / quiz.PROGRESS_FILE).exists()  # checking records nothing

    _stdin(monkeypatch, [q.answer])
    assert main(["quiz", "check", q.id]) == 0
    assert capsys.readouterr().out.startswith(f"{q.id}: knew (score 100%)")


def test_check_unknown_id_is_one_line_exit_2(data_dir, monkeypatch, capsys):
    _stdin(monkeypatch, ["anything"])
    assert main(["quiz", "check", "no-such-question", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("peftlab quiz: error: unknown question id 'no-such-question'")
    assert len(captured.err.strip().splitlines()) == 1


def test_a_rounded_answer_passes_a_wrong_figure_does_not(data_dir, monkeypatch, capsys):
    q = next(x for x in BANK if x.id == "qlora-70b-one-gpu")
    rounded = q.answer.replace("1,103.6 GB", "1,104 GB").replace("37.4 GB", "37 GB")
    wrong = q.answer.replace("1,103.6 GB", "1,404 GB").replace("37.4 GB", "38.6 GB")
    assert rounded != q.answer and wrong != q.answer
    for text, n_missed in ((rounded, 0), (wrong, 2)):
        _stdin(monkeypatch, [text])
        assert main(["quiz", "check", q.id, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        missed = [p for p in out["points"] if p["verdict"] != "knew"]
        assert len(missed) == n_missed, missed
    assert out["score"] == pytest.approx(4 / 6, abs=1e-3)  # 4 of 6 points: still past 60%
    assert all(p["verdict"] == "missed" for p in missed)
    assert {p["why"].split(";")[0] for p in missed} == {
        "looked for 1,103.6 GB (within 2%)",
        "looked for 37.4 GB (within 2%)",
    }
    assert all("the answer gives" in p["why"] for p in missed)
    assert any("1,404 GB" in p["why"] for p in missed)


def test_flashcard_mode(data_dir, monkeypatch, capsys):
    q1, q2 = _first_session_order(2, seed=3, topic="merging")
    _stdin(monkeypatch, ["", "", "maybe", "y", "", "", "n"])
    assert main(["quiz", "--topic", "merging", "--n", "2", "--seed", "3", "--reveal"]) == 0
    out = capsys.readouterr().out
    assert "Please answer y or n." in out and "Key points:" in out
    assert "Knew 1 of 2" in out
    cards = _cards(data_dir)
    assert cards[q1.id]["box"] == 2 and cards[q2.id]["box"] == 1


def test_eof_saves_and_exits_cleanly(data_dir, monkeypatch, capsys):
    (first,) = _first_session_order(1, seed=0)
    _stdin(monkeypatch, _typed(first.answer))
    assert main(["quiz", "--n", "4", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "Stopped after 1 question(s); progress saved" in out
    assert list(_cards(data_dir)) == [first.id]


def test_ctrl_c_saves_and_exits_cleanly(data_dir, monkeypatch, capsys):
    replies = iter(["", "", "y"])

    def fake_input(prompt=""):
        try:
            return next(replies)
        except StopIteration:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(builtins, "input", fake_input)
    assert main(["quiz", "--n", "3", "--reveal", "--seed", "0"]) == 130
    captured = capsys.readouterr()
    assert "Stopped after 1 question(s)" in captured.out
    assert "Traceback" not in captured.err
    assert len(_cards(data_dir)) == 1


def test_progress_table(data_dir, monkeypatch, capsys):
    q = _first_session_order(1, seed=1, topic="lora")[0]
    _stdin(monkeypatch, _typed(q.answer))
    main(["quiz", "--topic", "lora", "--n", "1", "--seed", "1"])
    capsys.readouterr()
    assert main(["quiz", "--progress"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].islower()}
    assert set(quiz.TOPICS) <= set(rows)
    n_lora = sum(x.topic == "lora" for x in BANK)
    assert rows["lora"][1:4] == [str(n_lora), "1", "1"]  # questions, seen, known
    assert rows["qlora"][2] == "0"
    assert str(data_dir) in out


def test_corrupt_progress_file_gets_a_fresh_start(data_dir, monkeypatch, capsys):
    (data_dir / quiz.PROGRESS_FILE).write_text("{truncated")
    _stdin(monkeypatch, _typed("no idea"))
    assert main(["quiz", "--n", "1", "--seed", "2"]) == 0
    err = capsys.readouterr().err
    assert "could not be read" in err and "started fresh" in err
    aside = list(data_dir.glob(f"{quiz.PROGRESS_FILE}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{truncated"
    assert len(_cards(data_dir)) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--topic", "lorax"], "topic='lorax'"),
        (["--n", "0"], "--n 0"),
        (["--n", "-2"], "--n -2"),
        (["--difficulty", "brutal"], "difficulty='brutal'"),
    ],
)
def test_bad_input_is_one_line_exit_2(data_dir, capsys, argv, message):
    assert main(["quiz", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (data_dir / quiz.PROGRESS_FILE).exists()


def test_without_a_checkout_the_quiz_runs_from_the_bank_the_package_ships(
    tmp_path, monkeypatch, capsys
):
    """Installed and run outside a clone: no lessons/, and the quiz still asks and grades (the
    wheel itself is installed and run in tests/test_installed.py)."""
    monkeypatch.delenv("PEFTLAB_ROOT", raising=False)
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(paths, "MARKER", paths.MARKER.with_name("no-such-lesson.md"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        paths.course_root()
    _stdin(monkeypatch, ["", "", "y"])  # reveal, read the follow-up's answer, knew it
    assert main(["quiz", "--id", "lora-explain", "--reveal"]) == 0
    out = capsys.readouterr().out
    assert "lora-explain" in out and "Knew 1 of 1" in out
    assert _cards(tmp_path / "data")["lora-explain"]
