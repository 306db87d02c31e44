"""Workflow helpers and figures of the customer-support lesson."""

import math

import pytest

from peftlab import support_data
from peftlab.lessons import lesson05_support_demo as lesson05
from peftlab.rubric import CRITERIA

COMPLAINT = "My kettle is leaking."
POLITE = "Hi! I'm sorry that your kettle is leaking. I will send you a new one today."
GREET_ONLY = "Hello! Kettles leak sometimes."
BLUNT = "Your kettle is leaking because of a loose seal."


def _rows():
    return lesson05.score_rows([COMPLAINT, COMPLAINT], [BLUNT, GREET_ONLY], [POLITE, POLITE])


def test_score_rows_have_the_comparison_shape():
    rows = _rows()
    assert set(rows[0]) == {"complaint", "before", "after", "before_marks", "after_marks",
                            "before_score", "after_score"}  # fmt: skip
    assert rows[0]["after_score"] == 1.0 and rows[0]["before_score"] == 0.0
    assert rows[1]["before_marks"]["greeting"] and not rows[1]["before_marks"]["action"]
    with pytest.raises(ValueError):
        lesson05.score_rows([COMPLAINT], [BLUNT, BLUNT], [POLITE])


def test_rubric_by_criterion_counts_each_check():
    summary = lesson05.rubric_by_criterion(_rows())
    assert summary["after"] == {**dict.fromkeys(CRITERIA, 1.0), "score": 1.0}
    assert summary["before"] == {"greeting": 0.5, "acknowledges": 0.0, "action": 0.0,
                                 "timeline": 0.0, "score": 0.125}  # fmt: skip
    with pytest.raises(ValueError, match="no rows"):
        lesson05.rubric_by_criterion([])


def test_sweep_trains_one_fresh_model_per_point():
    complaints = support_data.heldout_complaints(2)
    seen = []
    points = lesson05.run_sweep((1, 2), (2,), complaints, n_examples=16, batch_size=4,
                                on_point=seen.append)  # fmt: skip
    assert [(p.r, p.steps) for p in points] == [(1, 2), (2, 2)] and seen == points
    # rank doubles -> every adapted matrix's r * (d_in + d_out) doubles
    assert points[1].trainable_params == 2 * points[0].trainable_params
    for p in points:
        assert 0.0 <= p.score <= 1.0 and p.score * 8 == int(p.score * 8)  # 2 replies x 4 checks
        assert math.isfinite(p.final_loss) and p.final_loss > 0
    with pytest.raises(ValueError, match="ranks and steps"):
        lesson05.run_sweep((), (2,), complaints)


def test_loss_curve_records_and_draws():
    curve = lesson05.LossCurve()
    for step, loss in [(5, 4.0), (10, 2.5), (15, 1.0)]:
        curve(step, loss)
    assert curve.steps == [5, 10, 15] and curve.losses == [4.0, 2.5, 1.0]
    line = curve.figure().axes[0].lines[0]
    assert list(line.get_xdata()) == [5, 10, 15] and list(line.get_ydata()) == [4.0, 2.5, 1.0]


def test_criteria_bars_and_tables():
    summary = lesson05.rubric_by_criterion(_rows())
    ax = lesson05.criteria_bars(summary).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 2 * (len(CRITERIA) + 1)
    assert heights[:5] == [50.0, 0.0, 0.0, 0.0, 12.5] and heights[5:] == [100.0] * 5
    table = lesson05.criteria_markdown(summary, 2)
    assert "| greeting | 50% | 100% |" in table and "| **mean score** | 0.12 | 1.00 |" in table
    html = lesson05.rows_html(_rows())
    assert html.count("<tr>") == 3 and html.count("&#10003;") == 1 + 8


def test_sweep_figure_and_table():
    points = [lesson05.SweepPoint(r, s, s / 100, 10 * r, 1.0, 0.1)
              for r in (1, 4) for s in (20, 60)]  # fmt: skip
    ax = lesson05.sweep_figure(points).axes[0]
    assert len(ax.lines) == 2 and list(ax.lines[1].get_ydata()) == [0.2, 0.6]
    table = lesson05.sweep_markdown(points)
    assert table.count("\n") == 5 and "| 4 | 60 | 40 | 1.00 | 0.60 |" in table
