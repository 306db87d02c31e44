"""The whole demo on the embedded toy model (`--model embedded`), as a learner runs it: the
before/after gap lesson 05 promises. The real model's demo: tests/test_lesson_11.py."""

import json

import pytest

from peftlab import cli, support_data

pytestmark = pytest.mark.slow  # each test fine-tunes the embedded model (tens of seconds)


@pytest.fixture(scope="module")
def demo_json(tmp_path_factory):
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("demo"))  # runs/ goes here, not into the checkout
    try:
        from contextlib import redirect_stdout
        from io import StringIO

        out = StringIO()
        with redirect_stdout(out):
            assert cli.main(["demo", "--model", "embedded", "--json"]) == 0
        return json.loads(out.getvalue())
    finally:
        os.chdir(cwd)


@pytest.mark.pins
def test_json_has_the_documented_fields(demo_json):
    assert set(demo_json) >= {"model", "method", "trainable_params", "total_params",
                              "train_seconds", "examples", "summary"}  # fmt: skip
    assert demo_json["method"] == "lora" and demo_json["model"] == "peftlab-base"
    row = demo_json["examples"][0]
    assert set(row) >= {"complaint", "before", "after", "before_score", "after_score"}
    assert row["complaint"] == support_data.LESSON_COMPLAINT
    assert len(demo_json["examples"]) == 1 + len(support_data.heldout_complaints())


@pytest.mark.pins
def test_base_model_is_blunt_and_tuned_model_is_polite(demo_json):
    heldout = demo_json["examples"][1:]
    before = sum(r["before_score"] for r in heldout) / len(heldout)
    after = sum(r["after_score"] for r in heldout) / len(heldout)
    assert before <= 0.30
    assert after >= 0.90


@pytest.mark.pins
def test_tuned_model_acknowledges_the_customers_own_problem(demo_json):
    heldout = demo_json["examples"][1:]
    assert sum(r["after_marks"]["acknowledges"] for r in heldout) / len(heldout) >= 0.7


@pytest.mark.pins
def test_only_a_small_share_is_trained(demo_json):
    # r=8 on every linear layer of a 2M model is about 5%; on a 7B model, q and v only, 0.06%.
    assert demo_json["trainable_params"] == 116_736
    assert demo_json["trainable_params"] < 0.06 * demo_json["total_params"]


def test_qlora_demo_runs_from_the_command_line(tmp_path, monkeypatch, capsys):
    """`--method qlora`: the base loaded in 4-bit NF4, LoRA on every linear layer, the same
    Trainer path, here for a few steps. The tone it reaches in the demo's 150 steps is lesson 03's
    test (tests/test_lesson_03.py), on the run notebook 03 shows."""
    from transformers import AutoConfig

    from peftlab import base_model, memory

    prompts = tmp_path / "complaints.txt"
    prompts.write_text("\n".join(support_data.heldout_complaints()[:2]) + "\n")
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--model", "embedded", "--method", "qlora", "--prompts", str(prompts)]
    assert cli.main([*argv, "--steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "qlora" and result["steps"] == 3
    assert [r["complaint"] for r in result["examples"]] == support_data.heldout_complaints()[:2]
    config = AutoConfig.from_pretrained(base_model.resolve("embedded"))
    assert result["trainable_params"] == memory.lora_params(config, 8, "all-linear")
    assert all(r["after"] for r in result["examples"])


@pytest.mark.pins
def test_the_wild_set_is_reported_beside_the_heldout_one(demo_json):
    from peftlab import compare

    wild = demo_json["sets"]["wild"]
    assert [r["complaint"] for r in wild["examples"]] == support_data.wild_complaints()
    assert wild["summary"] == pytest.approx(compare.measures(wild["examples"]))
    for key in ("before", "after", "acknowledges_after", "faithful_after", "distinct_after"):
        assert key in wild["summary"] and key in demo_json["summary"]
    assert wild["summary"]["before"] <= 0.30  # the base model stays blunt here too
    # issue 20's targets for the wild set, with the demo's defaults
    after = wild["summary"]
    assert after["after"] >= 0.90 and after["distinct_after"] >= 0.90
    assert after["acknowledges_after"] >= 0.85 and after["faithful_after"] >= 0.90
    assert demo_json["summary"]["after"] >= 0.95  # the template-made held-out set


@pytest.mark.pins
def test_the_toy_model_page_quotes_both_sets_as_the_demo_measures_them(demo_json):
    from peftlab import paths
    from peftlab.lessons import lesson05_support_demo as lesson05

    table = lesson05.sets_markdown(
        {"held-out": demo_json["examples"], "in the wild": demo_json["sets"]["wild"]["examples"]}
    )
    readme = (paths.course_root() / "docs" / "embedded-model.md").read_text(encoding="utf-8")
    assert table in readme
