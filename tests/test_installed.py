"""`pip install` of the package, no checkout: the quiz, the memory calculator and the CLI work;
what needs the lessons' files says so in one line.

The wheel is built from the checkout's `pyproject.toml` and `src/` (nothing from the network),
installed without dependencies into a fresh virtual environment that reuses this one's through
a `.pth` file, and run from a folder outside the checkout with no `PEFTLAB_ROOT`.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from peftlab.cli import main

pytestmark = pytest.mark.slow  # builds and installs the package (about 30 s)

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "LoRA freezes the pretrained weight W and trains a low-rank update B A, B starting at 0.\n"


def _build_wheel(folder: Path) -> Path:
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    pip = [sys.executable, "-m", "pip"]
    wheel = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*wheel, "-w", str(folder / "dist"), str(source)], check=True)
    (found,) = (folder / "dist").glob("peftlab-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(run, away): `run(*args, stdin=...)` runs the installed `peftlab` in `away`, a folder
    outside the checkout, with no PEFTLAB_ROOT and a data folder of its own."""
    folder = tmp_path_factory.mktemp("installed")
    wheel = _build_wheel(folder)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # This environment's packages (torch, transformers, ...), after the new one's own: its
    # editable peftlab is a .pth file there, which a path added this way does not run.
    Path(site, "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    subprocess.run([*install, "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    away = folder / "away"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEFTLAB_")}
    env |= {"PEFTLAB_DATA_DIR": str(folder / "data"), "OMP_NUM_THREADS": "1"}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [venv / "bin" / "peftlab", *args],
            input=stdin, cwd=away, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    where = subprocess.run(
        [python, "-c", "import peftlab; print(peftlab.__file__)"],
        cwd=away, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), f"the test imported {where}, not the installed wheel"
    return run, folder


def test_the_installed_quiz_grades_an_answer_from_the_bank_it_ships(installed):
    run, _ = installed
    done = run("quiz", "check", "lora-explain", "--json", stdin=ANSWER)
    assert done.returncode == 0, done.stderr
    graded = json.loads(done.stdout)
    assert graded["id"] == "lora-explain" and graded["verdict"] in {"knew", "unsure", "missed"}
    assert any(p["verdict"] == "knew" for p in graded["points"])  # the answer covers some


def test_the_installed_quiz_runs_a_session_from_piped_input(installed):
    """Flashcard mode read from standard input: reveal, read the follow-up's answer, knew it."""
    run, folder = installed
    done = run("quiz", "--id", "lora-explain", "--reveal", stdin="\n\ny\n")
    assert done.returncode == 0, done.stderr
    assert "Knew 1 of 1" in done.stdout
    progress = json.loads((folder / "data" / "quiz-progress.json").read_text())
    assert "lora-explain" in progress["cards"]


def test_the_installed_memory_calculator_prints_what_the_checkouts_prints(installed, capsys):
    run, _ = installed
    done = run("memory", "--method", "qlora", "--rank", "16")
    assert done.returncode == 0, done.stderr
    assert main(["memory", "--method", "qlora", "--rank", "16"]) == 0
    assert done.stdout == capsys.readouterr().out


@pytest.mark.parametrize("command", [["lessons", "01"], ["html", "--out", "site"]])
def test_what_needs_the_lessons_files_says_so_in_one_line(installed, command):
    run, _ = installed
    done = run(*command)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"peftlab {command[0]}: error: "), done.stderr
    assert "PEFTLAB_ROOT" in lines[0] and "clone of peft-lab" in lines[0]
