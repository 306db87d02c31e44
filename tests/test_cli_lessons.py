"""`peftlab lessons`: up to date, a stale number named and rewritten, a bad number (exit 2).

Only lessons 01 and 03 here: their results take seconds.
"""

import re
import shutil

import pytest

from peftlab import cli, paths

# A one-line region holding a number: <!-- computed: NAME -->...digit...<!-- /computed -->
NUMBER_REGION = re.compile(r"<!-- computed: (?P<name>[^>]+?) -->(?P<body>[^<\n]*\d[^<\n]*)<!--")


@pytest.fixture(autouse=True)
def only_lessons_command(monkeypatch):
    """Build the parser from this command alone, so other commands' state cannot break it."""
    monkeypatch.setattr(cli, "COMMANDS", {"lessons": "lessons"})


@pytest.fixture
def course_copy(tmp_path, monkeypatch):
    """A copy of the checkout's lessons/ and notebooks/ that PEFTLAB_ROOT points at."""
    root = paths.course_root()
    for folder in ("lessons", "notebooks"):
        shutil.copytree(root / folder, tmp_path / folder, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.setenv("PEFTLAB_ROOT", str(tmp_path))
    return tmp_path


def test_a_current_lesson_is_up_to_date(capsys):
    assert cli.main(["lessons", "01"]) == 0
    assert capsys.readouterr().out == "lesson 01: up to date\n"


def test_a_changed_number_is_stale_until_written(capsys, course_copy):
    lesson = course_copy / "lessons" / "01-peft-basics.md"
    text = lesson.read_text(encoding="utf-8")
    region = NUMBER_REGION.search(text)
    assert region, "lesson 01 quotes no number in a one-line computed region"
    body = region.group("body")
    last = max(i for i, c in enumerate(body) if c.isdigit())
    wrong = body[:last] + str((int(body[last]) + 1) % 10) + body[last + 1 :]
    lesson.write_text(
        text[: region.start("body")] + wrong + text[region.end("body") :], encoding="utf-8"
    )

    assert cli.main(["lessons", "1"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("lesson 01: 1 difference\n")
    assert f"lessons/01-peft-basics.md: {region.group('name')!r} is {wrong!r}" in out

    assert cli.main(["lessons", "01", "--write"]) == 0
    assert capsys.readouterr().out == "lesson 01: rewrote lessons/01-peft-basics.md\n"
    assert lesson.read_text(encoding="utf-8") == text

    assert cli.main(["lessons", "01"]) == 0
    assert capsys.readouterr().out == "lesson 01: up to date\n"


def test_several_lessons_one_line_each(capsys):
    assert cli.main(["lessons", "01", "03"]) == 0
    assert capsys.readouterr().out == "lesson 01: up to date\nlesson 03: up to date\n"


def test_a_lesson_that_does_not_exist_is_one_line_and_exit_2(capsys):
    assert cli.main(["lessons", "99"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("peftlab lessons: error: no lesson '99'")
    assert err.count("\n") == 1


def test_help_says_what_new_writes(capsys):
    """`peftlab lessons new --help` (argparse shows the command's help) explains NN, NAME and
    the files `new` writes, as the scaffold names them."""
    from peftlab.commands import scaffold

    with pytest.raises(SystemExit) as done:
        cli.main(["lessons", "new", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "peftlab lessons new NN NAME" in out and "Adding lesson NN" in out
    for path in scaffold.files("NN", "NAME"):
        assert path in out, path
