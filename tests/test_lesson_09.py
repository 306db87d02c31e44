"""What lesson 09 concludes from its results still holds (its prose: tests/test_lesson_prose.py).

Its results run the fine-tune on one and on two processes and train two small adapters; they
are cached, so notebook 09 under nbval reuses this run.
"""

import pytest

from peftlab import ddp, memory, serving, sharding
from peftlab.lessons import lesson09_past_one_machine as lesson

GIB = 2**30


def test_zero_figure_reproduced_within_2_percent():
    for row in lesson.zero_rows():
        assert row["gb"] == pytest.approx(row["paper"], rel=0.02)


def test_70b_full_fine_tune_fits_80_gb_only_fully_sharded_on_16():
    rows = {r["strategy"]: r for r in lesson.big_rows()}
    card = lesson.BIG_CARD_GIB * GIB
    assert all(rows[s][n] > card for s in ("ddp", "zero1", "zero2") for n in (8, 16))
    assert rows["zero3"][8] > card >= rows["zero3"][16]
    need = lesson.big_min_devices()
    assert need["ddp"] is None and need["zero1"] is None and need["zero2"] is None
    assert 8 < need["zero3"] <= 16


def test_qlora_70b_needs_fsdp_for_two_24_gb_cards():
    rows = {(r["strategy"], r["devices"]): r["bytes"] for r in lesson.qlora_rows()}
    card = lesson.QLORA_CARD_GIB * GIB
    assert rows[("ddp", 1)] == rows[("ddp", 2)] > card >= rows[("fsdp", 2)]
    assert lesson.qlora_layer_bytes() < card - rows[("fsdp", 2)]


def test_tables_and_figure():
    text = lesson.big_table(lesson.big_rows())
    assert text.count("\n") == 1 + len(lesson.STRATEGY_ORDER) and "fits 80 GB" in text
    fig = lesson.plot_big(lesson.big_rows())
    assert len(fig.axes[0].patches) == len(lesson.STRATEGY_ORDER) * len(lesson.BIG_DEVICES)
    assert {p.name for p in lesson.paths_configs()} >= {"fsdp-qlora.yaml", "deepspeed-zero3.yaml"}


@pytest.fixture(scope="module")
def results():
    return lesson.results()


@pytest.mark.slow
def test_runs_conclude_what_the_lesson_says(results):
    [single], ranks = results["ddp_one"], results["ddp_two"]
    assert [r["wrote_adapter"] for r in ranks] == [True, False]
    assert lesson.ddp_max_difference(results) < ddp.LOSS_TOLERANCE
    for step, batch in enumerate(single["batches"]):
        a, b = ranks[0]["batches"][step], ranks[1]["batches"][step]
        assert not set(a) & set(b) and sorted(a + b) == sorted(batch)
    assert results["mixed"] == results["own"]
    assert len(set(results["mixed"])) == len(results["mixed"])  # six different replies
    sizes = results["memory"]
    assert sizes["shared_bytes"] < sizes["merged_bytes"]
    assert results["swap"]["after"] == results["swap"]["before"] < results["swap"]["with"]
    assert set(results["latency"]) == {"one base, one mixed batch",
                                       "one base, set_adapter per adapter",
                                       "one merged model per adapter"}  # fmt: skip
    assert serving.BASE in results["names"]


def test_fourteen_80_gb_gpus_only_on_paper():
    """14 GPUs hold the 70B full fine-tune's states only if "80 GB" is 80 GiB, with less spare
    than the bf16 layers FSDP gathers at its peak; counted, the minimum is higher."""
    full = lesson.big_full()
    need_gib = lesson.big_min_devices()["zero3"]
    need_gb = lesson.big_min_devices(lesson.BIG_CARD_GIB * 10**9)["zero3"]
    assert need_gb > need_gib
    spare = lesson.BIG_CARD_GIB * GIB - sharding.per_device(full, need_gib, "zero3").total
    assert 0 < spare < lesson.big_gathered()
    real = lesson.big_min_devices_real()
    assert need_gib < real <= 16
    left = lesson.BIG_CARD_GIB * GIB - sharding.per_device(full, real, "zero3").total
    assert left > lesson.big_gathered()
    # the gathered layers are three bf16 decoder layers
    config = memory.preset(lesson.BIG_MODEL)
    linear = sum(t.count * t.d_in * t.d_out for t in memory.linear_layers(config))
    two_norms = 2 * config.hidden_size
    assert lesson.layer_params() == linear // config.num_hidden_layers + two_norms
    assert lesson.big_gathered() == 3 * 2 * lesson.layer_params()


def test_the_fsdp_qlora_figures_are_the_recipe_the_config_describes():
    """Every parameter but the NF4 weights bf16 (quant storage bf16, no fp32 upcast), adapters
    and AdamW moments bf16: less than peft's prepare_model_for_kbit_training route."""
    q = lesson.qlora_big()
    assert q == memory.estimate(lesson.BIG_MODEL, **lesson.QLORA_RECIPE)
    config = memory.preset(lesson.BIG_MODEL)
    n = memory.count_params(config)
    linear = sum(t.count * t.d_in * t.d_out for t in memory.linear_layers(config))
    assert q.frozen_weights == int(linear * memory.NF4_BYTES_PER_PARAM) + 2 * (n - linear)
    adapter = memory.lora_params(config, lesson.QLORA_RECIPE["r"], "all-linear")
    assert q.trainable_weights == q.gradients == 2 * adapter
    assert q.optimizer_states == 2 * 2 * adapter
    fp32_route = memory.estimate(
        lesson.BIG_MODEL, **(lesson.QLORA_RECIPE | {"precision": "mixed", "prepare_kbit": True})
    )
    assert fp32_route.total > q.total


def test_parallel_figures():
    par = lesson.parallel_figures()
    n = memory.count_params(memory.preset(lesson.BIG_MODEL))
    assert par["tp weights"] * lesson.TP_DEGREE == 2 * n
    assert par["pp bubble"] == (lesson.PP_STAGES - 1) / lesson.PP_MICRO_BATCHES
    assert par["cp activations"] > lesson.BIG_CARD_GIB * GIB / 2 > par["cp activations per gpu"]
