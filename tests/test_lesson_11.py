"""What lesson 11 concludes from its run on the real model still holds (its prose:
tests/test_lesson_prose.py): the demo's targets on both sets, the memory estimate equal to the
bytes held, QLoRA reaching the same tone, merging exact in fp32, the adapter's size."""

import pytest

from peftlab import compare, memory, models, tuning
from peftlab.lessons import lesson11_real_model as lesson

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    models.fetch("smollm2", say=lambda _: None)
    return lesson.results()


@pytest.mark.parametrize("name", ["held-out", "wild"])
def test_the_demo_meets_its_targets_on_both_sets(results, name):
    """Issue 30's acceptance, with the demo's defaults: after >= 0.95, acknowledges, faithful and
    distinct >= 95%, before <= 0.30, on 24 complaints of each set."""
    demo = results["demo"]
    rows = demo["examples"] if name == "held-out" else demo["sets"]["wild"]["examples"]
    assert len(rows) >= 24
    s = compare.measures(rows)
    assert s["before"] <= 0.30, s
    assert s["after"] >= 0.95, s
    for measure in ("acknowledges", "faithful", "distinct"):
        assert s[f"{measure}_after"] >= 0.95, (measure, s)


def test_the_demo_is_the_models_recipe(results):
    demo, plan = results["demo"], tuning.recipe("smollm2")
    assert demo["model"] == "smollm2" and demo["steps"] == plan.steps
    assert demo["trainable_params"] == memory.lora_params(
        memory.preset("smollm2-135m"), 8, "all-linear"
    )
    assert [r["complaint"] for r in demo["examples"]] == compare.sample_of(
        compare.default_complaints(), plan.sample
    )


def test_bytes_held_equal_the_estimate_on_the_real_model(results):
    rows = results["memory"]
    assert {r["run"] for r in rows} == {label for label, *_ in lesson.MEMORY_RUNS}
    off = [r for r in rows if r["held"] != r["estimate"]]
    assert not off, off
    frozen = {r["run"]: r["held"] for r in rows if r["term"] == "frozen_weights"}
    assert frozen["QLoRA r8 all-linear, NF4 base"] < frozen["LoRA r8 all-linear, fp32 base"] / 3


def test_tied_embeddings_and_gqa_change_the_counts(results):
    shapes = results["shapes"]
    assert shapes["params"] == 134_515_008
    assert shapes["untied_params"] - shapes["params"] == 49_152 * 576
    assert shapes["kv_width"] == 192 and shapes["lora_params"] < shapes["lora_params_mha"]


def test_qlora_reaches_the_same_tone(results):
    q = compare.measures(results["qlora"]["comparison"]["examples"])
    assert q["before"] <= 0.30 and q["after"] >= 0.90 and q["faithful_after"] >= 0.9


def test_merging_is_exact_in_fp32_and_scores_the_same_in_bf16(results):
    """fp32: the same greedy replies. bf16: the words may change, the rubric scores do not."""
    from peftlab.rubric import mean_score

    fp32 = results["merged"]["fp32"]
    assert fp32["same"] >= fp32["n"] - 1, fp32
    complaints = [r["complaint"] for r in results["demo"]["examples"][: fp32["n"]]]
    for got in results["merged"].values():
        unmerged = mean_score(got["unmerged"], complaints)
        assert mean_score(got["merged"], complaints) >= unmerged - 0.05


def test_the_adapter_is_a_small_fraction_of_the_model(results):
    lora = results["shapes"]["lora_params"]
    assert lora * 4 <= results["adapter_bytes"] <= lora * 4 + 100_000
    assert results["adapter_bytes"] < 0.03 * 538_000_000


def test_the_provenance_says_what_the_weights_are(results):
    assert "Q4_1" in results["provenance"]["weights"]
    assert results["provenance"]["wheel_sha256"] == models.SMOLLM2.wheel_sha256


def test_the_tuned_model_echoes_lead_ins_the_support_set_skips(results):
    """The echo is mechanical: some lead-ins the training replies never echo come back."""
    echoed, total = lesson.lead_in_echoes(results["demo"])
    assert total >= 10 and 0 < echoed < total
