"""One module per lesson: what lesson NN computes, draws and quotes.

Every lesson module has the same shape (copy lesson05's to start lesson 07):

- `LESSON`, `NOTEBOOK`: its markdown in `lessons/` and its notebook in `notebooks/`;
- `results(...)`: everything the lesson computes, in one call. Expensive results (a training
  run) go through `lessons.cache.cached`, so the notebook and the lesson test share one run;
- `quotes(results)`: every number and table its lesson and notebook prose quote, by the name of
  the region that holds it (`lessons.prose` explains the regions);
- `TOLERANCE`: the few quotes whose last digits depend on the CPU's kernels, and by how much:
  a number for a one-number region, `{column: tolerance}` for a table (`lessons.prose`);
- `TRAINS`: whether `results()` trains a model (its tests are then marked `slow`);
- functions that draw its figures and format its tables from `results`.

Lesson modules import the core modules (`memory`, `lora`, `nf4`, `merging`, `finetune`, ...),
never `widgets`, `cli` or `commands`. `peftlab lessons` checks (or, with `--write`, rewrites) the
regions of every lesson from its module.

The README quotes lessons too, in regions named after the lesson and its quote
(`<!-- computed: lesson 11: measures -->`): each lesson's check and rewrite covers its own
README regions, so the front door is checked by the same mechanism as the lessons.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from peftlab import paths
from peftlab.lessons import prose

INTERFACE = ("LESSON", "NOTEBOOK", "TOLERANCE", "TRAINS", "results", "quotes")
# Every module named lessonNN_<name> in this package, in lesson order: a new one counts at once.
MODULES = tuple(
    sorted(
        m.name for m in pkgutil.iter_modules(__path__) if re.fullmatch(r"lesson\d\d_\w+", m.name)
    )
)


def module(name: str) -> ModuleType:
    """A lesson module by its name in MODULES or its number ("4", "04")."""
    number = name.zfill(2) if name.isdigit() else None
    found = [m for m in MODULES if m == name or (number and m.startswith(f"lesson{number}_"))]
    if len(found) != 1:
        raise ValueError(f"no lesson {name!r}: choose a number 01-{len(MODULES):02d} or {MODULES}")
    return importlib.import_module(f"peftlab.lessons.{found[0]}")


README = "README.md"


def readme_prefix(lesson: ModuleType) -> str:
    """How the README names a region quoting `lesson`: "lesson 11: " before the quote's name."""
    return f"lesson {lesson.LESSON[:2]}: "


_MARKER = re.compile(r"<!-- computed: (?P<name>[^>]+?) -->")
_ANY_LESSON = re.compile(r"lesson \d\d: ")


def _own(name: str) -> bool:
    """A region a lesson's check is about: its own (another lesson's README regions keep their
    prefix, and are left alone)."""
    return not _ANY_LESSON.match(name)


def _readme_as_lesson(text: str, lesson: ModuleType) -> str:
    """The README with the lesson's regions under the names its quotes use."""
    prefix = readme_prefix(lesson)
    return _MARKER.sub(lambda m: m.group().replace(prefix, "", 1), text)


def _lesson_as_readme(text: str, lesson: ModuleType) -> str:
    prefix = readme_prefix(lesson)
    return _MARKER.sub(
        lambda m: m.group() if not _own(m["name"]) else f"<!-- computed: {prefix}{m['name']} -->",
        text,
    )


def readme_lessons() -> list[str]:
    """The lesson numbers the README quotes; ValueError for a region that names no lesson."""
    names = prose.regions(prose.read(paths.course_root() / README))
    numbers = {m.removeprefix("lesson")[:2] for m in MODULES}
    found = []
    for name in names:
        match = re.fullmatch(r"lesson (\d\d): .+", name)
        if not match or match[1] not in numbers:
            raise ValueError(
                f"README region {name!r}: name a lesson and its quote, e.g. 'lesson 11: measures'"
            )
        found.append(match[1])
    return sorted(set(found))


def documents(lesson: ModuleType) -> dict[str, Path]:
    """The files whose prose the lesson's regions live in: its markdown and its notebook."""
    return {
        f"lessons/{lesson.LESSON}": paths.lessons_dir() / lesson.LESSON,
        f"notebooks/{lesson.NOTEBOOK}": paths.notebooks_dir() / lesson.NOTEBOOK,
    }


def differences(lesson: ModuleType, results: Any) -> list[str]:
    """Where the lesson's committed prose, and the README's regions quoting it, differ from
    what its module computes now. A quote only the README holds counts as held."""
    texts = {name: prose.read(path) for name, path in documents(lesson).items()}
    readme = paths.course_root() / README
    if readme.is_file():  # (a copy of lessons/ and notebooks/ alone has none: the CLI's tests)
        texts[README] = _readme_as_lesson(prose.read(readme), lesson)
    return prose.differences(texts, lesson.quotes(results), lesson.TOLERANCE, only=_own)


def write(lesson: ModuleType, results: Any) -> list[Path]:
    """Rewrite the lesson's regions (and its README regions) from its module; the files that
    changed. Every file is rendered before any is written, so an error leaves them all as they
    were. A notebook whose regions changed must be re-executed for its outputs to follow."""
    from peftlab.atomic import atomic_write_text

    quotes = lesson.quotes(results)
    new = {
        path: prose.rendered(path, quotes, lesson.TOLERANCE) for path in documents(lesson).values()
    }
    readme = paths.course_root() / README
    if readme.is_file():
        text = _readme_as_lesson(readme.read_text(encoding="utf-8"), lesson)
        text = prose.render(text, quotes, lesson.TOLERANCE, only=_own)
        new[readme] = _lesson_as_readme(text, lesson)
    changed = [path for path, text in new.items() if text != path.read_text(encoding="utf-8")]
    for path in changed:
        atomic_write_text(path, new[path])
    return changed
