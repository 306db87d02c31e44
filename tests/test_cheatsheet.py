"""The cheat sheet is generated from the bank and the committed copy is current."""

import subprocess
import sys

from peftlab.quiz import cheatsheet, load_topics

TOPICS = load_topics()


def test_committed_cheatsheet_is_current():
    committed = cheatsheet.default_path().read_text(encoding="utf-8")
    assert committed == cheatsheet.render(), "stale: run python -m peftlab.cheatsheet"


def test_every_question_once_and_tldr_last():
    text = cheatsheet.render(TOPICS)
    for t in TOPICS:
        assert f"\n## {t.title}\n" in text
        for q in t.questions:
            assert text.count(f"**{q.question}**") == 1
            assert all(kp.point in text for kp in q.key_points)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[-2:] == ["## Interview answer", "## TL;DR"]
    tldr = text.split("## TL;DR", 1)[1]
    assert all(t.tldr in tldr for t in TOPICS)


def test_counts_table_follows_the_bank():
    text = cheatsheet.render(TOPICS[:2])
    assert "## LoRA" not in text
    first = TOPICS[0]
    hard = sum(q.difficulty == "hard" for q in first.questions)
    assert f"| {hard} | {len(first.questions)} |" in text.split("\n## ", 1)[0]


def test_cli_writes_and_checks(tmp_path, capsys):
    path = tmp_path / "sheet.md"
    assert cheatsheet.main(["--path", str(path), "--check"]) == 1
    assert cheatsheet.main(["--path", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == cheatsheet.render()
    assert cheatsheet.main(["--path", str(path), "--check"]) == 0
    path.write_text(path.read_text() + "edited by hand\n")
    assert cheatsheet.main(["--path", str(path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_python_m_peftlab_cheatsheet_still_runs(tmp_path):
    """The README and the sheet's own header name `python -m peftlab.cheatsheet`."""
    path = tmp_path / "sheet.md"
    path.write_text(cheatsheet.render(TOPICS), encoding="utf-8")
    argv = [sys.executable, "-m", "peftlab.cheatsheet", "--path", str(path), "--check"]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0 and "up to date" in done.stdout, done.stderr
