"""`peftlab.tables.markdown_table`: the one table writer behind every notebook and lesson table."""

import pytest

from peftlab.tables import (
    markdown_table,
    number,
    parse_table,
    table_differences,
)


def test_table_has_header_rule_and_rows():
    text = markdown_table(["model", "GB"], [["7B", "13.5"], ["70B", "138.0"]], ["---", "---:"])
    assert text.splitlines() == ["| model | GB |", "|---|---:|", "| 7B | 13.5 |", "| 70B | 138.0 |"]


def test_a_pipe_inside_a_cell_is_escaped_so_the_row_keeps_its_cells():
    text = markdown_table(["check", "value"], [["max |logits| change", 12.4]])
    assert text.splitlines()[-1] == "| max \\|logits\\| change | 12.4 |"


def test_default_alignment_is_left():
    assert markdown_table(["a", "b", "c"], []).splitlines()[1] == "|---|---|---|"


def test_alignment_rules_must_match_the_columns():
    with pytest.raises(ValueError, match="2 alignment rules for 3 columns"):
        markdown_table(["a", "b", "c"], [], ["---", "---:"])


ROUTES = markdown_table(
    ["route", "max |error|", "same reply", "MB"],
    [["a", "1.410", "58%", "1.39"], ["b", "0.863", "96%", "4.05"]],
    ["---", "---:", "---:", "---:"],
)
TOLERANCE = {"max |error|": 0.02, "same reply": 5}


def edited(table: str, old: str, new: str) -> str:
    assert old in table
    return table.replace(old, new)


def test_parse_table_unescapes_pipes_and_drops_the_rule():
    assert parse_table(ROUTES)[0] == ["route", "max |error|", "same reply", "MB"]
    assert parse_table(ROUTES)[1:] == [["a", "1.410", "58%", "1.39"], ["b", "0.863", "96%", "4.05"]]


def test_figures_within_their_columns_tolerance_agree():
    lesson = edited(edited(ROUTES, "1.410", "1.396"), "58%", "54%")
    assert table_differences(ROUTES, lesson, TOLERANCE) == []


@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        ("1.410", "1.380", "max |error|"),  # 0.03 > 0.02
        ("58%", "50%", "same reply"),  # 8 points > 5
        ("1.39", "1.38", "MB"),  # no tolerance: exact
        ("| b |", "| c |", "route"),  # words are exact
    ],
)
def test_a_figure_past_its_tolerance_or_any_exact_cell_differs(old, new, column):
    differences = table_differences(ROUTES, edited(ROUTES, old, new), TOLERANCE)
    assert len(differences) == 1 and f"column {column!r}" in differences[0]


def test_a_missing_table_or_a_changed_shape_differs():
    assert table_differences(ROUTES, None, TOLERANCE) == ["table not found"]
    assert table_differences(ROUTES, "", TOLERANCE) == ["table not found"]
    shorter = "\n".join(ROUTES.splitlines()[:-1])
    assert "rows" in table_differences(ROUTES, shorter, TOLERANCE)[0]
    short_row = edited(ROUTES, "| 58% | 1.39 |", "| 58% |")
    assert table_differences(ROUTES, short_row, TOLERANCE) == ["row ['a']: 3 cells, expected 4"]


def test_a_row_of_dashes_is_a_row_and_only_numbers_are_numbers():
    dashes = markdown_table(["a", "b"], [["-", "-"], ["1", "2"]])
    assert parse_table(dashes) == [["a", "b"], ["-", "-"], ["1", "2"]]
    assert [number(t) for t in ("1,234", "46%", "1.6x", "-0.25")] == [1234, 46, 1.6, -0.25]
    assert [number(t) for t in ("nan", "inf", "1_0", "-", "4-bit", "")] == [None] * 6
