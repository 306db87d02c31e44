"""The memory calculator widget: its controls drive estimate() and the summary follows."""

from peftlab import memory, presets
from peftlab.widgets import memory as widgets


def test_opens_on_qlora_and_reports_the_estimate():
    calc = widgets.memory_calculator("llama-2-7b")
    expected = memory.estimate("llama-2-7b", method="qlora")
    assert calc.breakdown == expected
    assert f"{expected.total / 1e9:,.2f} GB" in calc.summary.value
    assert "24 GB consumer (RTX 3090/4090): fits" in calc.summary.value


def test_changing_controls_updates_breakdown_and_fit():
    calc = widgets.memory_calculator("llama-2-7b")
    assert calc.controls["gradient_checkpointing"].value  # as QLoRA's recipe turns it on
    calc.controls["gradient_checkpointing"].value = False
    calc.controls["method"].value = "full"
    assert calc.breakdown == memory.estimate("llama-2-7b", method="full")
    assert "H100 80 GB: does not fit" in calc.summary.value
    assert "trainable 6,738,415,616 of 6,738,415,616" in calc.summary.value

    calc.controls["method"].value = "lora"
    calc.controls["all_linear"].value = True
    calc.controls["rank"].value = 64
    calc.controls["batch_size"].value = 4
    calc.controls["seq_len"].value = 1024
    calc.controls["gradient_checkpointing"].value = True
    calc.controls["optimizer"].value = "adamw8bit"
    expected = memory.estimate(
        "llama-2-7b",
        method="lora",
        r=64,
        target_modules="all-linear",
        optimizer="adamw8bit",
        batch_size=4,
        seq_len=1024,
        gradient_checkpointing=True,
    )
    assert calc.breakdown == expected
    trainable = memory.lora_params("llama-2-7b", 64, "all-linear")
    assert f"trainable {trainable:,}" in calc.summary.value


def test_paper_recipe_controls_and_paged_floor():
    calc = widgets.memory_calculator("llama-65b")
    calc.controls["precision"].value = "bf16"
    calc.controls["optimizer"].value = "paged_adamw"
    calc.controls["optimizer_precision"].value = "fp32"
    calc.controls["attn_implementation"].value = "eager"
    expected = memory.estimate(
        "llama-65b", method="qlora", precision="bf16", optimizer="paged_adamw",
        optimizer_precision="fp32", attn_implementation="eager", gradient_checkpointing=True,
    )  # fmt: skip
    assert calc.breakdown == expected
    assert f"{expected.gpu_floor / 1e9:,.2f} GB if the paged optimizer states" in calc.summary.value
    assert "T4 16 GB: " in calc.summary.value and "no bf16: use fp16 compute" in calc.summary.value


def test_impossible_rank_shows_the_error_instead_of_a_bar():
    calc = widgets.memory_calculator("tiny-random-llama")
    calc.controls["method"].value = "lora"
    calc.controls["all_linear"].value = True
    calc.controls["rank"].value = 256  # k_proj and v_proj are 192 -> 96
    assert calc.breakdown is None
    assert "Cannot estimate" in calc.summary.value and "r=256" in calc.summary.value
    calc.controls["rank"].value = 64
    assert calc.breakdown == memory.estimate(
        "tiny-random-llama", method="lora", r=64, target_modules="all-linear",
        gradient_checkpointing=True,
    )  # fmt: skip


def test_embedded_model_offered_only_when_on_disk():
    offered = widgets.calculator_models()
    assert (presets.EMBEDDED_PRESET in offered) == presets.EMBEDDED_CONFIG.is_file()
    assert "llama-2-70b" in offered
