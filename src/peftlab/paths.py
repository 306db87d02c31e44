"""Where the course's files are: the package's own data, and the repository's lessons, notebooks.

The package works installed (`pip install peftlab`, no checkout) for everything that needs only
code and the data it ships: the embedded base model, the common words, the interview question
bank (`quiz/questions/`). The lessons and notebooks live in the repository, not in the package:
`course_root()` finds them from the source checkout, the current directory or `$PEFTLAB_ROOT`,
and says what to do when it cannot.
"""

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MARKER = Path("lessons") / "01-peft-basics.md"  # a file only a peft-lab checkout has


def course_root() -> Path:
    """The peft-lab checkout that holds `lessons/` and `notebooks/`.

    Looked for in `$PEFTLAB_ROOT`, then above the package's source (an editable install), then in
    the current directory and its parents. Raises FileNotFoundError naming the fix when none has it.
    """
    if os.environ.get("PEFTLAB_ROOT"):
        named = Path(os.environ["PEFTLAB_ROOT"]).expanduser()
        if not (named / MARKER).is_file():
            raise FileNotFoundError(
                f"PEFTLAB_ROOT={named} is not a peft-lab checkout (it has no {MARKER}): "
                "point it at a clone of peft-lab, or unset it"
            )
        return named
    candidates = [PACKAGE.parents[1]]
    cwd = Path.cwd().resolve()
    candidates += [cwd, *cwd.parents]
    for folder in candidates:
        if (folder / MARKER).is_file():
            return folder
    raise FileNotFoundError(
        "the course's lessons/ folder was not found (the installed package carries the code, not "
        "the lessons): run this from a clone of peft-lab, or set PEFTLAB_ROOT to one"
    )


def lessons_dir() -> Path:
    """The checkout's `lessons/` (FileNotFoundError, as `course_root`, when there is none)."""
    return course_root() / "lessons"


def notebooks_dir() -> Path:
    """The checkout's `notebooks/` (FileNotFoundError, as `course_root`, when there is none)."""
    return course_root() / "notebooks"


def question_bank_dir() -> Path:
    """The interview question bank, `<topic>.yaml` files shipped inside the package."""
    return PACKAGE / "quiz" / "questions"
