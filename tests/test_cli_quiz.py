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


def test_typed_answers_are_checked_and_saved(data_dir, monkeypatch, capsys):
    expected = _first_session_order(3, seed=7, topic="qlora")
    good, bad = expected[0], expected[1:]
    _stdin(monkeypatch, [good.answer, "", "no idea"])
    assert main(["quiz", "--topic", "qlora", "--n", "3", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out.count("Q: ") == 3
    assert f"Covered {len(good.key_points)} of {len(good.key_points)} key points" in out
    assert "Covered 0 of" in out and "Model answer:" in out
    assert all(q.follow_up_answer.split()[0] in out for q in expected)
    assert "Knew 1 of 3" in out and "come back first" in out
    cards = _cards(data_dir)
    assert cards[good.id]["box"] == 2
    assert all(cards[q.id]["box"] == 1 for q in bad)

    _stdin(monkeypatch, ["", "", ""])
    assert main(["quiz", "--topic", "qlora", "--n", "2", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    asked = [line for line in out.splitlines() if line.startswith("Q: ")]
    assert {a.removeprefix("Q: ") for a in asked} == {q.question for q in bad}  # missed first


def test_a_rounded_answer_passes_a_wrong_figure_does_not(data_dir, monkeypatch, capsys):
    q = next(x for x in BANK if x.id == "qlora-70b-one-gpu")
    rounded = q.answer.replace("1,103.6 GB", "1,104 GB").replace("37.4 GB", "37 GB")
    wrong = q.answer.replace("1,103.6 GB", "1,404 GB").replace("37.4 GB", "38.6 GB")
    assert rounded != q.answer and wrong != q.answer
    filters = ["--topic", "qlora", "--difficulty", "hard", "--n", "4", "--seed", "0"]
    order = _first_session_order(4, seed=0, topic="qlora", difficulty="hard")
    answers = [rounded if x.id == q.id else "" for x in order]
    _stdin(monkeypatch, answers)
    assert main(["quiz", *filters]) == 0
    out = capsys.readouterr().out
    n = len(q.key_points)
    assert f"Covered {n} of {n} key points" in out
    (data_dir / quiz.PROGRESS_FILE).unlink()
    _stdin(monkeypatch, [wrong if x.id == q.id else "" for x in order])
    assert main(["quiz", *filters]) == 0
    out = capsys.readouterr().out
    assert f"Covered {n - 2} of {n} key points" in out


def test_flashcard_mode(data_dir, monkeypatch, capsys):
    q1, q2 = _first_session_order(2, seed=3, topic="merging")
    _stdin(monkeypatch, ["", "maybe", "y", "", "n"])
    assert main(["quiz", "--topic", "merging", "--n", "2", "--seed", "3", "--reveal"]) == 0
    out = capsys.readouterr().out
    assert "Please answer y or n." in out and "Key points:" in out
    assert "Knew 1 of 2" in out
    cards = _cards(data_dir)
    assert cards[q1.id]["box"] == 2 and cards[q2.id]["box"] == 1


def test_eof_saves_and_exits_cleanly(data_dir, monkeypatch, capsys):
    (first,) = _first_session_order(1, seed=0)
    _stdin(monkeypatch, [first.answer])
    assert main(["quiz", "--n", "4", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "Stopped after 1 question(s); progress saved" in out
    assert list(_cards(data_dir)) == [first.id]


def test_ctrl_c_saves_and_exits_cleanly(data_dir, monkeypatch, capsys):
    replies = iter(["", "y"])

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


def test_quit_command(data_dir, monkeypatch, capsys):
    _stdin(monkeypatch, [":q", "never read"])
    assert main(["quiz", "--n", "3"]) == 0
    assert "Knew 0 of 0" in capsys.readouterr().out


def test_progress_table(data_dir, monkeypatch, capsys):
    q = _first_session_order(1, seed=1, topic="lora")[0]
    _stdin(monkeypatch, [q.answer])
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
    _stdin(monkeypatch, [""])
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


def test_without_a_checkout_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """Installed non-editable and run outside a clone: no lessons, a one-line error, exit 2."""
    monkeypatch.delenv("PEFTLAB_ROOT", raising=False)
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "site-packages" / "peftlab")
    monkeypatch.chdir(tmp_path)
    assert main(["quiz", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("peftlab quiz: error: ") and "lessons/ folder was not found" in err
    assert "PEFTLAB_ROOT" in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()
