"""Lesson 02 beyond its prose (tests/test_lesson_prose.py): the exercise checker, the figures
and tables drawn from the numbers they are given, and the counts the papers publish."""

import pytest
import torch

from peftlab import lora_train, memory
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
    assert "| 8 | 4,194,304 (0.0622%) |" in table  # of 6,742,609,920: peft's "all params"


def test_results_table_formats_each_run():
    row = {"run": "LoRA", "steps": 9, "trainable": 50, "total": 1000, "final_loss": 0.456}
    table = lesson.results_table([row | {"rubric": 0.875}])
    assert table.splitlines()[-1] == "| LoRA | 9 | 50 (5.00%) | 0.46 | 0.88 |"


def test_results_table_shows_a_dash_for_the_untrained_base():
    row = {"run": "base", "steps": 0, "trainable": 0, "total": 1000, "final_loss": None}
    table = lesson.results_table([row | {"rubric": 0.25}])
    assert table.splitlines()[-1] == "| base | 0 | 0 (0%) | – | 0.25 |"


def test_published_figures_still_hold():
    llama = lesson.rank_rows(memory.meta_model("llama-2-7b"), [8], lesson.LESSON_TARGETS)
    assert llama[0]["total"] == 6_738_415_616  # numbers.md
    assert llama[0]["q_proj, v_proj"] == 4_194_304  # numbers.md


def test_random_baseline_has_the_shape_and_norm_and_no_low_rank_structure():
    delta = torch.outer(torch.arange(1.0, 7.0), torch.ones(5))  # rank 1
    noise = lesson.random_like(delta, seed=3)
    assert noise.shape == delta.shape and torch.isclose(noise.norm(), delta.norm())
    assert torch.equal(noise, lesson.random_like(delta, seed=3))
    assert lora_train.energy_in_top(delta, 1) == pytest.approx(1.0)
    assert lora_train.energy_in_top(noise, 1) < 0.9


def test_spectra_table_spreads_the_layers_and_puts_the_baseline_beside():
    full = {
        30: {"shares": {"a": 0.79, "b": 0.83}, "random shares": {"a": 0.14, "b": 0.15},
             "rubric": 1.0},
        120: {"shares": {"a": 0.75, "b": 0.75}, "random shares": {"a": 0.14, "b": 0.15},
              "rubric": 0.5},
    }  # fmt: skip
    table = lesson.spectra_table(full, {"steps": 120, "shares": {"a": 1.0}, "rubric": 1.0}, 8)
    lines = table.strip().splitlines()
    assert lines[2] == "| full fine-tune, 30 steps | 79% to 83% | 1.00 |"
    assert lines[3] == "| full fine-tune, 120 steps | 75% | 0.50 |"
    assert lines[4] == "| random matrix, same shape and norm | 14% to 15% | – |"
    assert lines[5] == "| LoRA r=8, 120 steps | 100% | 1.00 |"


@pytest.mark.slow
def test_full_fine_tune_updates_are_far_more_concentrated_than_a_random_matrix():
    """The lesson's conclusion, on its own runs: at both lengths, every q_proj/v_proj update of
    the full fine-tune puts several times a random matrix's share of its energy into its top r
    directions, and scores as high as the rank-r LoRA or a little above; the LoRA update is rank r
    exactly."""
    results = lesson.results()
    r = results["run"]["r"]
    assert sorted(results["full"]) == [30, 120]
    for run in results["full"].values():
        for name, share in run["shares"].items():
            assert share > 3 * run["random shares"][name] and share > 0.5, name
        assert 0 <= run["rubric"] - results["run"]["lora_rubric"] <= 0.05 + 1e-9
    shares = lesson.lora_shares(results["run"]["result"].model, r)
    assert min(shares.values()) == pytest.approx(1.0, abs=1e-5)
