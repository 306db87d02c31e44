"""`peftlab.tables.markdown_table`: the one table writer behind every notebook and lesson table."""

import pytest

from peftlab.tables import markdown_table


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
