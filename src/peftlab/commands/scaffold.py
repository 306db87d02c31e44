"""`peftlab lessons new NN NAME`: the files of a new lesson, already passing the course's checks.

Writes the lesson's markdown, its notebook, its module and its test, and adds its row to the
README's lessons table. The lesson computes one small thing (LoRA's trainable share of one
matrix) and quotes it in a computed region, so the prose, rendering, notebook and layout tests
pass before its author writes a word; docs/ARCHITECTURE.md ("Adding lesson NN") lists the rest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
README_ROW = re.compile(r"^\| `\d\d_[^`]+` \| `\d\d-[^`]+\.md` \|.*$", re.M)


def files(number: str, name: str) -> dict[str, str]:
    """Each new file's path relative to the checkout, and its text."""
    snake = name.replace("-", "_")
    title = name.replace("-", " ").capitalize()
    lesson, notebook = f"{number}-{name}.md", f"{number}_{snake}.ipynb"
    module = f"lesson{number}_{snake}"
    return {
        f"lessons/{lesson}": LESSON_MD.format(number=number, title=title, notebook=notebook),
        f"notebooks/{notebook}": _notebook(number, title, lesson, module),
        f"src/peftlab/lessons/{module}.py": MODULE.format(
            number=number, title=title, lesson=lesson, notebook=notebook
        ),
        f"tests/test_lesson_{number}.py": TEST.format(number=number, module=module),
    }


def scaffold(root: Path, number: str, name: str) -> list[Path]:
    """Write lesson `number` called `name` into the checkout at `root`; the files written or
    changed. ValueError, with nothing written, for a bad number or name or a lesson that exists."""
    if not re.fullmatch(r"\d\d", number):
        raise ValueError(f"lesson number {number!r}: give two digits, e.g. 12")
    if not NAME.fullmatch(name):
        raise ValueError(
            f"lesson name {name!r}: use lower-case words joined by '-', e.g. reward-models"
        )
    taken = [p.name for p in (root / "lessons").glob(f"{number}-*.md")]
    taken += [p.name for p in (root / "src" / "peftlab" / "lessons").glob(f"lesson{number}_*.py")]
    if taken:
        raise ValueError(f"lesson {number} exists ({', '.join(taken)}): choose another number")
    new = files(number, name)
    readme_path = root / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    rows = list(README_ROW.finditer(readme))
    if not rows:
        raise ValueError(f"{readme_path} has no lessons table to add lesson {number}'s row to")
    notebook = next(p for p in new if p.startswith("notebooks/")).removeprefix("notebooks/")
    lesson = next(p for p in new if p.startswith("lessons/")).removeprefix("lessons/")
    row = f"| `{notebook.removesuffix('.ipynb')}` | `{lesson}` | what you compute, in one line |"
    end = rows[-1].end()
    written = []
    for relative, text in new.items():
        path = root / relative
        path.write_text(text, encoding="utf-8")
        written.append(path)
    readme_path.write_text(readme[:end] + "\n" + row + readme[end:], encoding="utf-8")
    return [*written, readme_path]


def _notebook(number: str, title: str, lesson: str, module: str) -> str:
    def cell(kind: str, source: str, tags: tuple[str, ...] = ()) -> dict:
        found = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {}}
        found["source"] = source.splitlines(keepends=True)
        if kind == "code":
            found |= {"execution_count": None, "outputs": []}
        return found

    cells = [
        cell(
            "markdown",
            f"# {number} · {title}\n\nWhat you will learn, and how long it runs (seconds on a "
            f"laptop CPU). The lesson is `lessons/{lesson}`; every number it quotes is computed "
            f"by `peftlab.lessons.{module}`, which this notebook calls.",
        ),
        cell("code", "from peftlab.notebook import setup\n\nsetup()", ("nbval-ignore-output",)),
        cell("markdown", "## 1. LoRA's trainable share of one matrix"),
        cell(
            "code",
            f"from peftlab.lessons import {module} as lesson\n\n"
            "res = lesson.results()\nlesson.quotes(res)",
        ),
    ]
    for index, found in enumerate(cells):
        found["id"] = f"lesson{number}-{index}"  # nbformat 4.5 cells carry an id
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {
                "display_name": "Python (peftlab)",
                "language": "python",
                "name": "peftlab",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


LESSON_MD = """\
# {number} · {title}

What this lesson teaches, in a paragraph; its notebook is `notebooks/{notebook}`.

## 1. LoRA's trainable share of one matrix

LoRA of rank <!-- computed: rank -->8<!-- /computed --> on one weight of
shape <!-- computed: shape -->4096 x 4096<!-- /computed --> trains
exactly <!-- computed: lora params -->65,536<!-- /computed --> parameters, that is
only <!-- computed: lora share -->0.39%<!-- /computed --> of the matrix. (A region sits inside its
sentence: a line that starts with a marker would end the paragraph when rendered.)

## Interview answer

What you would say in an interview, in 30-90 seconds.

## TL;DR

- One line per idea the lesson proves.
"""

MODULE = '''\
"""Lesson {number}, {title} (notebook {number}, lessons/{lesson}).

What the lesson computes, in a sentence or two. `results()` and `quotes()` come first; an
expensive result goes through `lessons.cache.cached`, so the notebook and the test share it.
"""

from __future__ import annotations

from typing import Any

LESSON = "{lesson}"
NOTEBOOK = "{notebook}"
TRAINS = False  # True when results() trains a model: its tests are then marked slow
TOLERANCE: dict[str, Any] = {{}}  # only figures whose last digits depend on the CPU's kernels
SHAPE = (4096, 4096)  # (out_features, in_features) of one weight
RANK = 8


def results() -> dict[str, Any]:
    """Everything the lesson computes, in one call."""
    d, k = SHAPE
    return {{"rank": RANK, "shape": SHAPE, "lora_params": RANK * (d + k), "full_params": d * k}}


def quotes(res: dict[str, Any]) -> dict[str, str]:
    """Every number the lesson's prose quotes, by region name."""
    return {{
        "rank": f"{{res['rank']}}",
        "shape": "{{}} x {{}}".format(*res["shape"]),
        "lora params": f"{{res['lora_params']:,}}",
        "lora share": f"{{res['lora_params'] / res['full_params']:.2%}}",
    }}
'''

TEST = '''\
"""What lesson {number} concludes still holds (its prose: tests/test_lesson_prose.py)."""

from peftlab.lessons import {module} as lesson


def test_the_adapter_trains_under_one_percent_of_the_matrix():
    res = lesson.results()
    assert 0 < res["lora_params"] < 0.01 * res["full_params"]
'''
