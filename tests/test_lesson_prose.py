"""Every lesson module has one shape, and every lesson's prose quotes what its module computes.

The regions (`peftlab.lessons.prose`) hold every computed number and table a lesson or its
notebook quotes; `peftlab lessons --write` rewrites them after a change to the code.
"""

import pytest

from peftlab import lessons, paths, tables
from peftlab.lessons import prose

PARAMS = [  # a lesson whose results train a model is slow (the first time: then it is cached)
    pytest.param(m, marks=pytest.mark.slow) if lessons.module(m).TRAINS else m
    for m in lessons.MODULES
]


@pytest.fixture(scope="session")
def lesson_results():
    """Each lesson's results, computed once per session (expensive ones are cached on disk too,
    so notebook 04 and 05 under nbval reuse them)."""
    computed = {}

    def get(name):
        if name not in computed:
            computed[name] = lessons.module(name).results()
        return computed[name]

    return get


@pytest.mark.parametrize("name", lessons.MODULES)
def test_every_lesson_module_has_the_same_shape(name):
    lesson = lessons.module(name)
    for attribute in lessons.INTERFACE:
        assert hasattr(lesson, attribute), f"{name} has no {attribute}: copy lesson05's shape"
    for path in lessons.documents(lesson).values():
        assert path.is_file(), path
    assert lesson.LESSON[:2] == lesson.NOTEBOOK[:2] == name.removeprefix("lesson")[:2]


@pytest.mark.parametrize("name", PARAMS)
def test_prose_quotes_what_the_code_computes(name, lesson_results):
    lesson = lessons.module(name)
    off = lessons.differences(lesson, lesson_results(name))
    assert not off, f"stale prose; run `peftlab lessons {name[6:8]} --write`:\n" + "\n".join(off)


@pytest.mark.parametrize("name", PARAMS)
def test_every_tolerance_names_a_quote_and_its_columns(name, lesson_results):
    """A misspelt tolerance would silently be exact here and fail only on another CPU."""
    lesson = lessons.module(name)
    quotes = lesson.quotes(lesson_results(name))
    for region, tolerance in lesson.TOLERANCE.items():
        assert region in quotes, f"{name}.TOLERANCE names {region!r}, which it does not quote"
        if isinstance(tolerance, dict):
            header = tables.parse_table(quotes[region])[0]
            assert set(tolerance) <= set(header), (
                f"{region!r}: no columns {set(tolerance) - set(header)}"
            )
        else:  # a tolerance on words would never apply: the region would have to match exactly
            assert prose.figure(quotes[region]) is not None, (region, quotes[region])


@pytest.mark.parametrize("name", lessons.MODULES)
def test_lesson_has_the_required_sections(name):
    text = (paths.lessons_dir() / lessons.module(name).LESSON).read_text(encoding="utf-8")
    for heading in ("## Interview answer", "## TL;DR"):
        assert heading in text, f"{name} has no {heading!r}"


# --- the mechanism itself ------------------------------------------------------------------------
def bump_first_digit(text: str) -> str:
    """`text` with its first digit changed (9 becomes 0): one computed number, off."""
    i = next(i for i, c in enumerate(text) if c.isdigit())
    return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :]


def test_a_changed_number_fails_until_the_text_changes(lesson_results):
    """The real lesson 01 and its real quotes: change one computed number and the committed text
    is stale, naming the region; render the text again and it is current."""
    lesson = lessons.module("01")
    texts = {name: prose.read(path) for name, path in lessons.documents(lesson).items()}
    quotes = lesson.quotes(lesson_results("lesson01_peft_basics"))
    assert prose.differences(texts, quotes) == []
    changed = quotes | {"full total": bump_first_digit(quotes["full total"])}
    off = prose.differences(texts, changed)
    assert off and all("'full total'" in line for line in off), off
    header, rule, body = quotes["methods"].split("\n", 2)
    changed_table = quotes | {"methods": "\n".join([header, rule, bump_first_digit(body)])}
    assert any("'methods'" in line for line in prose.differences(texts, changed_table))
    rewritten = {name: prose.render(text, changed) for name, text in texts.items()}
    assert prose.differences(rewritten, changed) == []


def test_every_quote_needs_a_region_and_every_region_a_quote():
    text = "The model has <!-- computed: n -->7<!-- /computed --> layers."
    assert prose.differences({"doc": text}, {"n": "7"}) == []
    assert prose.differences({"doc": text}, {"n": "7", "m": "8"}) == [
        "computed 'm' is quoted by no region of ['doc']"
    ]
    assert prose.differences({"doc": text}, {}) == ["doc: region 'n' has no computed value"]
    assert prose.differences({"doc": "plain text"}, {"n": "7"})  # nothing quotes n


def test_a_tolerance_accepts_small_moves_only():
    text = (
        "error <!-- computed: e -->1.6x<!-- /computed -->, "
        "<!-- computed: s -->96%<!-- /computed -->"
    )
    tolerance = {"e": 0.1, "s": 5.2}
    assert prose.differences({"doc": text}, {"e": "1.7x", "s": "92%"}, tolerance) == []
    off = prose.differences({"doc": text}, {"e": "1.8x", "s": "90%"}, tolerance)
    assert len(off) == 2 and "1.8x" in off[0] and "90%" in off[1]
    assert prose.differences({"doc": text}, {"e": "1.7x", "s": "96%"})  # exact without one


def test_a_count_moves_within_its_tolerance_against_the_same_total():
    """ "8 of 12" is a figure too (lesson 11): the count may move, the total not."""
    text = "kept <!-- computed: n -->1 of 12<!-- /computed --> replies"
    assert prose.differences({"doc": text}, {"n": "3 of 12"}, {"n": 2}) == []
    assert prose.differences({"doc": text}, {"n": "4 of 12"}, {"n": 2})
    assert prose.differences({"doc": text}, {"n": "1 of 13"}, {"n": 2})  # another total
    assert prose.figure("1,024 of 2,048") == (1024.0, "of 2,048")
    assert prose.figure("bf16") is None


def test_a_table_region_is_compared_cell_by_cell_within_its_columns_tolerance():
    table = "| route | error |\n|---|---|\n| a | 1.439 |"
    text = f"<!-- computed: t -->\n\n{table}\n\n<!-- /computed -->"
    assert (
        prose.differences(
            {"doc": text}, {"t": table.replace("1.439", "1.445")}, {"t": {"error": 0.02}}
        )
        == []
    )
    off = prose.differences(
        {"doc": text}, {"t": table.replace("1.439", "1.5")}, {"t": {"error": 0.02}}
    )
    assert off and "column 'error'" in off[0]


def test_render_writes_blocks_between_blank_lines_and_is_idempotent():
    text = "a <!-- computed: x -->old<!-- /computed --> b\n<!-- computed: t --><!-- /computed -->\n"
    once = prose.render(text, {"x": "new", "t": "| h |\n|---|\n| 1 |\n"})
    table = "<!-- computed: t -->\n\n| h |\n|---|\n| 1 |\n\n<!-- /computed -->"
    assert once == f"a <!-- computed: x -->new<!-- /computed --> b\n{table}\n"
    assert prose.render(once, {"x": "new", "t": "| h |\n|---|\n| 1 |"}) == once


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- computed: a -->1", "has no partner"),
        ("1<!-- /computed -->", "has no partner"),
        (
            "<!-- computed: a --><!-- computed: b -->1<!-- /computed --><!-- /computed -->",
            "not closed",
        ),
    ],
)
def test_broken_regions_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        prose.regions(text)


def test_a_rewrite_keeps_figures_within_their_tolerance_and_fixes_the_rest():
    text = (
        "x <!-- computed: e -->1.6x<!-- /computed --> and <!-- computed: n -->7<!-- /computed -->"
    )
    quotes = {"e": "1.65x", "n": "8"}
    kept = prose.render(text, quotes, {"e": 0.1})
    assert kept == text.replace(">7<", ">8<")
    assert "1.9x" in prose.render(text, {"e": "1.9x", "n": "8"}, {"e": 0.1})


def test_a_region_may_not_span_two_notebook_cells(tmp_path):
    import json

    cells = [
        {"cell_type": "markdown", "source": [s]}
        for s in ("<!-- computed: n -->7", "<!-- /computed -->")
    ]
    notebook = tmp_path / "07_x.ipynb"
    notebook.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    with pytest.raises(ValueError, match="07_x.ipynb, markdown cell 0: .*has no partner"):
        prose.read(notebook)


def test_a_marker_that_starts_a_line_is_reported_and_the_rewrite_mends_it():
    """CommonMark ends a paragraph at a line that starts with `<!--` (tests/test_lesson_rendering
    renders every lesson): the check names such a line, and `render` (what `peftlab lessons
    --write` writes) moves the word before it down, so the sentence reads as one paragraph."""
    text = (
        "The best rate is <!-- computed: a -->1<!-- /computed -->, LoRA's\n"
        "<!-- computed: b -->2<!-- /computed -->: a ratio."
    )
    off = prose.differences({"doc": text}, {"a": "1", "b": "2"})
    assert off == [
        "doc: line 2 starts with a region marker, which ends its paragraph when rendered "
        "(`peftlab lessons --write` mends it)"
    ]
    mended = prose.render(text, {"a": "1", "b": "2"})
    assert mended == (
        "The best rate is <!-- computed: a -->1<!-- /computed -->,\n"
        "LoRA's <!-- computed: b -->2<!-- /computed -->: a ratio."
    )
    assert prose.differences({"doc": mended}, {"a": "1", "b": "2"}) == []


@pytest.mark.parametrize(
    ("text", "mended"),
    [  # a quoted line keeps its quote mark; a word that would open a list joins instead
        (
            "> rises by\n> <!-- computed: a -->1<!-- /computed --> x",
            "> rises\n> by <!-- computed: a -->1<!-- /computed --> x",
        ),
        (
            "costs 3 -\n<!-- computed: a -->1<!-- /computed --> x",
            "costs 3 - <!-- computed: a -->1<!-- /computed --> x",
        ),
        # the line before ends in a region: the lines join
        (
            "is <!-- computed: b -->2<!-- /computed -->\n<!-- computed: a -->1<!-- /computed --> x",
            "is <!-- computed: b -->2<!-- /computed --> <!-- computed: a -->1<!-- /computed --> x",
        ),
        # a region that opens its paragraph: the marker stands alone above it, like a table's
        (
            "Above.\n\n<!-- computed: a -->1 is it.<!-- /computed -->",
            "Above.\n\n<!-- computed: a -->\n\n1 is it.<!-- /computed -->",
        ),
    ],
)
def test_mend_keeps_every_paragraph_whole(text, mended):
    assert prose.mend(text) == mended
    assert prose.regions(mended) == prose.regions(text) and prose.split_lines(mended) == []
