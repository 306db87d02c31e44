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
                            "before_score", "after_score", "before_invented", "after_invented",
                            "before_faithful", "after_faithful"}  # fmt: skip
    assert rows[0]["after_score"] == 1.0 and rows[0]["before_score"] == 0.0
    assert rows[0]["after_faithful"] and rows[0]["after_invented"] == []
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


def test_heldout_complaints_are_held_out_from_the_finetune_set_not_from_pretraining():
    """What lesson 05 says was held out from what, checked on the data itself."""
    train = support_data.finetune_set()
    heldout = support_data.heldout_complaints()
    train_text = " ".join(ex.complaint + " " + ex.reply for ex in train)
    assert not {ex.complaint for ex in train} & set(heldout)
    assert not any(f" {noun}" in train_text for noun in support_data.HELDOUT_NOUNS)
    facts = lesson05.data_facts()
    assert facts["complaints_in_both"] == facts["shared_nouns"] == 0
    # the pretraining corpus holds every held-out noun, problem and frame, and the reply
    # phrases, but none of the held-out complaints word for word
    assert facts["corpus_heldout_nouns"] == len(support_data.HELDOUT_NOUNS)
    assert facts["corpus_heldout_problems"] == len(support_data.HELDOUT_PROBLEMS)
    assert facts["corpus_heldout_templates"] == len(support_data.HELDOUT_TEMPLATES)
    assert (facts["heldout_in_corpus"], facts["scored_in_corpus"]) == (0, 0)
    # every part but the seed world's own actions (replacements, refunds), which only its
    # fine-tune replies use
    seed_only = set(support_data.ACTIONS) - set(support_data.GENERAL_ACTIONS)
    assert facts["corpus_reply_parts"] == facts["reply_parts"] - len(seed_only)
    table = lesson05.data_markdown(facts)
    assert "| held-out complaints found verbatim | 0 | – |" in table


def test_hyperparameters_are_the_code_defaults():
    """The settings table reads finetune's and the hand-written loop's defaults; the lesson's
    reasons rely on the toy's rate being the base model's own pretraining rate and far above a
    7B model's starting range, and on several epochs over the 400 examples."""
    import inspect

    from peftlab import base_model, finetune

    settings = lesson05.hyperparameters()
    demo = settings["`peftlab demo`"]
    defaults = inspect.signature(finetune.train_lora).parameters
    assert demo["learning_rate"] == defaults["learning_rate"].default
    assert demo["steps"] == defaults["steps"].default
    assert demo["epochs"] == demo["steps"] * demo["batch_size"] / 400
    assert (
        settings["notebook 05"]["steps"]
        == inspect.signature(lesson05.results).parameters["steps"].default
    )
    build_rate = inspect.signature(base_model.build_embedded).parameters["lr"].default
    for s in settings.values():
        assert s["learning_rate"] == build_rate and s["learning_rate"] >= 10 * 2e-4
        assert s["epochs"] > 3
    table = lesson05.hyperparameters_markdown(settings)
    assert f"| epochs over the 400 examples | {demo['epochs']:g} |" in table


def test_the_toy_page_quotes_the_demo_trainable_share_as_peft_counts_it():
    """docs/embedded-model.md's "parameters trained" row: the demo's LoRA (every linear layer,
    r = 8) on the embedded model, counted by peft, its share from lora.share_text (adapters
    included)."""
    from peft import get_peft_model

    from peftlab import base_model, compare, finetune, lora, paths

    model, _ = base_model.load()
    config = finetune.lora_config(8, 16, target_modules=compare.demo_targets(None))
    trainable, total = get_peft_model(model, config).get_nb_trainable_parameters()
    readme = (paths.course_root() / "docs" / "embedded-model.md").read_text(encoding="utf-8")
    assert f"| {trainable:,} of {total:,} ({lora.share_text(trainable, total)}) |" in readme
