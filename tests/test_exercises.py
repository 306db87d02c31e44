"""The notebooks' exercises: each ships as a stub that fails its checker, with a collapsed
solution (a markdown <details> block holding the code) that passes it; and the checkers name the
usual mistakes."""

import json
import re

import pytest
import torch

from peftlab import exercises, memory, nf4, paths

NOTEBOOKS = ("01_full_ft_vs_peft.ipynb", "03_qlora.ipynb")
SOLUTION = re.compile(r"<details>.*?```python\n(?P<code>.*?)```.*?</details>", re.S)


def _exercises(notebook: str) -> list[tuple[str, str]]:
    """(stub cell, solution code) for every code cell that calls a checker."""
    cells = json.loads((paths.notebooks_dir() / notebook).read_text(encoding="utf-8"))["cells"]
    found = []
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "exercises.check_" not in source:
            continue
        after = "".join(cells[index + 1]["source"]) if index + 1 < len(cells) else ""
        match = SOLUTION.search(after)
        assert match, f"{notebook}: the exercise in cell {index} has no <details> solution after it"
        found.append((source, match.group("code")))
    return found


class Recorder:
    """Stands in for `peftlab.exercises` and records each checker's verdict."""

    def __init__(self):
        self.verdicts = []

    def __getattr__(self, name):
        check = getattr(exercises, name)

        def recorded(*args):
            self.verdicts.append(check(*args))
            return self.verdicts[-1]

        return recorded


def _verdicts(code: str) -> list[bool]:
    recorder = Recorder()
    exec(code, {"exercises": recorder, "torch": torch, "nf4": nf4, "memory": memory})
    return recorder.verdicts


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_exercise_is_a_failing_stub_with_a_passing_hidden_solution(notebook, capsys):
    found = _exercises(notebook)
    assert found, f"{notebook} has no exercise"
    for stub, solution in found:
        assert _verdicts(stub) == [False], stub  # the notebook runs on: no exception
        assert "Not written yet" in capsys.readouterr().out
        assert _verdicts(solution) == [True], solution
        assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("answer", "verdict", "hint"),
    [
        (32 * 2 * 16 * (4096 + 1024), True, "Correct: 5,242,880"),
        (32 * 2 * 16 * (4096 + 4096), False, "not square under grouped-query attention"),
        (2 * 16 * (4096 + 1024), False, "one layer only"),
        (32 * 16 * (4096 + 1024), False, "count both"),
        (32 * 2 * 16 * 1024, False, "r * (d_in + d_out)"),
        (12345, False, "the right count"),
        (None, False, "Not written yet"),
        ("5242880", False, "whole number"),
        (5242880.5, False, "whole number"),
    ],
)
def test_gqa_lora_checker(answer, verdict, hint, capsys):
    assert exercises.check_gqa_lora_params(answer) is verdict
    assert hint in capsys.readouterr().out


def test_gqa_lora_checker_agrees_with_peft():
    from peft import LoraConfig

    config = LoraConfig(r=exercises.GQA_RANK, target_modules=list(exercises.GQA_TARGETS))
    assert memory.peft_trainable(exercises.GQA_MODEL, config) == 32 * 2 * 16 * (4096 + 1024)
