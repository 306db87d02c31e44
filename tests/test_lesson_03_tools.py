"""The figures, tables and widget behind notebook 03 and lessons/03-qlora.md."""

import pytest
import torch
from matplotlib.figure import Figure

from peftlab import exercises, nf4, seed_everything
from peftlab.lessons import lesson03_qlora as lesson03
from peftlab.widgets import nf4 as widgets_nf4


@pytest.fixture
def weights():
    seed_everything(0)
    return {"a": torch.randn(64, 64) * 0.02, "b": torch.randn(32, 96) * 0.05}


def test_combined_error_weights_each_tensor_by_its_size(weights):
    a = nf4.quantization_error(weights["a"], "nf4")
    b = nf4.quantization_error(weights["b"], "nf4")
    both = nf4.combined_error(weights, "nf4")
    assert both.mse == pytest.approx((a.mse * 4096 + b.mse * 3072) / 7168)
    assert both.max_error == max(a.max_error, b.max_error)
    assert both.bits_per_parameter == 4.5


def test_explorer_recomputes_on_every_control(weights):
    box = widgets_nf4.blocksize_explorer(weights)
    slider, method, double, out = box.children
    assert "blocksize 64" in out.value and f"{4 + 32 / 64:.4f}" in out.value

    slider.value = 256
    assert "blocksize 256" in out.value and f"{4 + 32 / 256:.4f}" in out.value
    double.value = True
    assert f"{4 + 8 / 256 + 32 / (256 * 256):.4f}" in out.value and "double quant" in out.value
    method.value = "int4"
    expected = nf4.combined_error(weights, "int4", 256, double_quant=True)
    assert out.value.startswith("<b>INT4") and f"{expected.mse:.3e}" in out.value


def test_explorer_takes_a_single_tensor_and_rejects_bad_blocksizes(weights):
    box = widgets_nf4.blocksize_explorer(weights["a"], blocksizes=(32, 128))
    assert "blocksize 32" in box.children[-1].value and "4,096 weights" in box.children[-1].value
    with pytest.raises(ValueError, match="blocksize=100"):
        widgets_nf4.blocksize_explorer(weights, blocksizes=(64, 100))


def test_levels_table_lists_the_three_codes():
    table = lesson03.levels_table()
    lines = table.splitlines()
    assert len(lines) == 2 + 16
    assert "| 0 | `0000` | -1.0000 | +0.0000 | -1.0000 |" in lines
    assert "| 12 | `1100` | +0.4407 |" in table  # bitsandbytes' NF4 table, index 12: 0.44070...


def test_bits_table_has_the_qlora_arithmetic():
    table = lesson03.bits_table(n_params=2_000_000_000)
    assert "| 0.5 |" in table and "| 0.126953125 |" in table and "| 0.373046875 |" in table
    megabytes = [bits * 2e9 / 8 / 1e6 for bits in (32 / 64, 8 / 64 + 32 / (64 * 256))]
    assert f"| {megabytes[0]:,.0f} |" in table and f"| {megabytes[1]:,.0f} |" in table
    assert "MB for 2.00B quantized weights" in table


def test_error_and_blocksize_tables_agree_with_nf4(weights):
    rows = lesson03.error_rows(weights)
    assert [r["method"] for r in rows] == ["NF4", "NF4 + double quant", "FP4", "INT4"]
    assert rows[0]["error"] == nf4.combined_error(weights, "nf4")
    table = lesson03.error_table(rows)
    assert f"{rows[2]['error'].mse:.3e}" in table
    sizes = lesson03.blocksize_rows(weights, (32, 4096))
    assert sizes[0]["bits"] == 5.0 and sizes[1]["bits"] == 4 + 32 / 4096
    assert sizes[0]["rms_ratio"] < sizes[1]["rms_ratio"]
    assert "| 4096 | 4.0078 |" in lesson03.blocksize_table(sizes)


def test_weight_memory_rows_follow_peftlab_memory():
    (row,) = lesson03.weight_memory_rows(["llama-2-7b"])
    assert row["params"] == 6_738_415_616
    assert row["weights_16bit"] == 2 * row["params"]
    assert row["qlora_total"] < row["full_total"] / 10
    assert row["weights_nf4"] < row["weights_16bit"] / 3
    table = lesson03.weight_memory_table([row])
    assert f"| llama-2-7b | 6.74B | {2 * 6_738_415_616 / 1e9:.1f} |" in table


def test_figures(weights):
    fig = lesson03.plot_levels_over_histogram(weights["a"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    shares = lesson03.level_shares(weights["a"], "nf4")
    assert shares.shape == (16,) and shares.sum().item() == pytest.approx(1.0)
    assert lesson03.level_shares(weights["a"], "int4").shape == (15,)
    normalized = lesson03.normalized_weights(weights["a"])
    assert normalized.abs().max().item() == 1.0 and normalized.numel() == 4096
    fig = lesson03.plot_blocksize_tradeoff(lesson03.blocksize_rows(weights, (32, 64)))
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def _right(packed, absmax, n):
    indices = torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)[:n]
    return nf4.NF4_CODE[indices.long()] * absmax


@pytest.mark.parametrize(
    ("answer", "verdict", "hint"),
    [
        (_right, True, "Correct"),
        (
            lambda p, a, n: (
                nf4.NF4_CODE[torch.stack([p & 0x0F, p >> 4], dim=1).reshape(-1)[:n].long()] * a
            ),
            False,
            "nibble order",
        ),
        (lambda p, a, n: _right(p, 1.0, n), False, "not scaled"),
        (
            lambda p, a, n: torch.stack([p >> 4, p & 0x0F], 1).reshape(-1)[:n].float() * a,
            False,
            "the index is not the value",
        ),
        (lambda p, a, n: torch.zeros(n), False, "expected"),
        (lambda p, a, n: 1 / 0, False, "ZeroDivisionError"),
    ],
)
def test_dequantize_exercise_checker(answer, verdict, hint, capsys):
    assert exercises.check_dequantize_block(answer) is verdict
    assert hint in capsys.readouterr().out


def test_footprint_of_the_lesson_model_matches_the_prediction(tmp_path):
    rows = lesson03.footprint_rows(lesson03.model_folder("tiny-random-llama", tmp_path))
    measured = {r["format"]: r["measured"] for r in rows}
    assert all(abs(r["measured"] / r["predicted"] - 1) < 0.02 for r in rows)
    assert measured["fp32"] == 2 * measured["bf16"]
    assert measured["bf16"] > measured["NF4"] > measured["NF4 + double quant"]
    blocks = [-(-w.numel() // 64) for w in lesson03.lesson_weights("tiny-random-llama").values()]
    saved = sum(4 * b - (b + 4 * -(-b // 256)) for b in blocks)
    assert measured["NF4"] - measured["NF4 + double quant"] == saved
    assert "| NF4 + double quant |" in lesson03.footprint_table(rows)


@pytest.mark.parametrize("folder", ["embedded", "random-llama-100m"])
def test_footprint_of_real_sized_models_matches_the_prediction(tmp_path, folder):
    from peftlab import base_model

    path = (
        base_model.EMBEDDED_PATH
        if folder == "embedded"
        else lesson03.model_folder(folder, tmp_path)
    )
    rows = lesson03.footprint_rows(path)
    assert [r["format"] for r in rows] == ["fp32", "bf16", "NF4", "NF4 + double quant"]
    for row in rows:
        assert abs(row["measured"] / row["predicted"] - 1) < 0.02, row


def test_kurtosis_is_three_for_normal_weights_and_more_for_heavy_tails():
    seed_everything(0)
    normal = {"a": torch.randn(512, 512) * 0.02, "b": torch.randn(256, 128)}
    assert lesson03.kurtosis(normal) == pytest.approx(3.0, abs=0.03)
    heavy = {"t": torch.distributions.StudentT(5.0).sample((512, 512))}  # kurtosis 9
    assert lesson03.kurtosis(heavy) > 5
    ranked = lesson03.heaviest_tails({**normal, **heavy}, 2)
    assert [name for name, _ in ranked][0] == "t" and len(ranked) == 2


def test_code_comparison_counts_layers_and_words_the_margin(weights):
    rows = lesson03.code_comparison_rows({"x": weights, "y": weights})
    assert {**rows[0], "weights": "y"} == rows[1] and rows[0]["layers"] == 2
    assert rows[0]["nf4_lowest"] == lesson03.layers_where_lowest(weights) == 2  # normal: NF4 wins
    assert lesson03.margin_words(rows[0], rows[1]) == "close to"
    bigger = {**rows[0], "int4_over_nf4": 2 * rows[0]["int4_over_nf4"], "fp4_over_nf4": 9.0}
    assert lesson03.margin_words(bigger, rows[1]) == "larger than"
    assert lesson03.margin_words(rows[1], bigger) == "smaller than"
    table = lesson03.code_comparison_table(rows)
    assert "| x |" in table and "| 2 of 2 |" in table


def test_quotes_word_the_verdict_from_the_figures(weights):
    results = {"model_name": "x", "weights": weights, "random weights": weights, "footprint": []}
    quotes = lesson03.quotes(results)
    assert quotes["nf4 verdict"] == "NF4 keeps its lead"
    assert quotes["nf4 lowest in"] == "2 of 2 layers" and quotes["margin vs normal"] == "close to"
    seed_everything(0)
    wild = {"t": torch.distributions.StudentT(0.5).sample((64, 64)), **weights}  # huge outliers
    assert lesson03.layers_where_lowest(wild) == 2  # NF4 loses the outlier layer
    results["weights"] = wild
    quotes = lesson03.quotes(results)
    assert quotes["nf4 verdict"] == "NF4 does not win everywhere"
    assert quotes["nf4 lowest in"] == "2 of 3 layers"
