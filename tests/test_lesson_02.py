"""Lesson 02 beyond its prose (tests/test_lesson_prose.py): the exercise checker, the figures
and tables drawn from the numbers they are given, and the counts the papers publish."""

import pytest
import torch

from peftlab import memory
from peftlab.exercises import check_lora_forward
from peftlab.lessons import lesson02_lora as lesson


def right(x, w0, a, b, alpha, r):
    return x @ w0.T + (alpha / r) * (x @ a.T @ b.T)


@pytest.mark.parametrize(
    ("fn", "verdict"),
    [
        (right, "Correct"),
        (lambda x, w0, a, b, alpha, r: x @ w0.T + alpha * (x @ a.T @ b.T), "instead of alpha / r"),
        (lambda x, w0, a, b, alpha, r: x @ w0.T + x @ a.T @ b.T, "is not scaled"),
        (lambda x, w0, a, b, alpha, r: x @ w0.T + alpha / r**0.5 * (x @ a.T @ b.T), "rsLoRA"),
        (lambda x, w0, a, b, alpha, r: (alpha / r) * (x @ a.T @ b.T), "W0 x is missing"),
        (lambda x, w0, a, b, alpha, r: x @ w0.T, "B A x is missing"),
        (lambda x, w0, a, b, alpha, r: x @ a.T, "Shape (3, 4), expected (3, 10)"),
        (lambda x, w0, a, b, alpha, r: right(x, w0, a, b, alpha, r) + 1, "largest difference 1"),
        (lambda x, w0, a, b, alpha, r: [0.0], "Return a torch.Tensor, not list"),
    ],
)
def test_check_lora_forward_accepts_the_equation_and_names_each_mistake(fn, verdict, capsys):
    assert check_lora_forward(fn) is (verdict == "Correct")
    assert verdict in capsys.readouterr().out


def test_check_lora_forward_waits_for_an_unwritten_exercise(capsys):
    def stub(x, w0, a, b, alpha, r):
        raise NotImplementedError

    assert check_lora_forward(stub) is False
    assert "Not written yet" in capsys.readouterr().out


def test_figures_draw_the_numbers_they_are_given():
    fig = lesson.plot_params_vs_rank([1, 2, 4], {"q, v": [10, 20, 40]}, total=1000)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [10, 20, 40]
    assert list(ax.lines[1].get_ydata()) == [1000, 1000]

    fig = lesson.plot_losses({"ours": [(1, 3.0), (2, 2.5)], "peft": [(1, 3.1), (2, 2.4)]})
    assert [list(line.get_ydata()) for line in fig.axes[0].lines] == [[3.0, 2.5], [3.1, 2.4]]

    fig = lesson.plot_singular_values({"LoRA": torch.tensor([4.0, 2.0, 0.0])}, r=2)
    assert list(fig.axes[0].lines[0].get_ydata()) == pytest.approx([1.0, 0.5, 1e-8])


def test_rank_rows_on_llama_2_7b_match_the_published_and_the_memory_module_counts():
    model = memory.meta_model("llama-2-7b")
    targets = {"q, v": ["q_proj", "v_proj"], "all": "all-linear"}
    rows = lesson.rank_rows(model, [1, 8], targets)
    assert rows[1]["q, v"] == 4_194_304 and rows[1]["total"] == 6_738_415_616
    config = memory.preset("llama-2-7b")
    for row in rows:
        assert row["all"] == memory.lora_params(config, row["r"], "all-linear")
        assert row["q, v"] == memory.lora_params(config, row["r"], ["q_proj", "v_proj"])
    table = lesson.rank_table(rows)
    assert "| 8 | 4,194,304 (0.062%) |" in table


def test_results_table_formats_each_run():
    row = {"run": "LoRA", "steps": 9, "trainable": 50, "total": 1000, "final_loss": 0.456}
    table = lesson.results_table([row | {"rubric": 0.875}])
    assert table.splitlines()[-1] == "| LoRA | 9 | 50 (5.00%) | 0.46 | 0.88 |"


def test_results_table_shows_a_dash_for_the_untrained_base():
    row = {"run": "base", "steps": 0, "trainable": 0, "total": 1000, "final_loss": None}
    table = lesson.results_table([row | {"rubric": 0.25}])
    assert table.splitlines()[-1] == "| base | 0 | 0 (0.00%) | – | 0.25 |"


def test_published_figures_still_hold():
    llama = lesson.rank_rows(memory.meta_model("llama-2-7b"), [8], lesson.LESSON_TARGETS)
    assert llama[0]["total"] == 6_738_415_616  # numbers.md
    assert llama[0]["q_proj, v_proj"] == 4_194_304  # numbers.md
