"""The before/after playground, driven the way a learner drives it: type, choose, press Reply."""

import html

import pytest
from peft import LoraConfig, get_peft_model

from peftlab import base_model, seed_everything, support_data
from peftlab.generate import generate
from peftlab.rubric import CRITERIA, score_reply
from peftlab.widgets.support import MAX_COMPLAINT_CHARS, Playground, playground


@pytest.fixture(scope="module")
def models():
    """The embedded base model, and a second copy with a random (non-zero) LoRA adapter."""
    base, tokenizer = base_model.load()
    other, _ = base_model.load()
    config = LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    seed_everything(0)  # the random adapter is the same on every run
    tuned = get_peft_model(other, config).eval()
    return base, tuned, tokenizer


def test_greedy_reply_shows_both_models_with_their_marks(models):
    base, tuned, tokenizer = models
    pg = playground(base, tuned, tokenizer)
    assert isinstance(pg, Playground)
    pg.complaint.value = "  My order is late.  "
    pg.button.click()
    before = generate(base, tokenizer, [support_data.LESSON_COMPLAINT])[0]
    after = generate(tuned, tokenizer, [support_data.LESSON_COMPLAINT])[0]
    assert before != after, "the random adapter should change the reply"
    shown = pg.output.value
    assert html.escape(before) in shown and html.escape(after) in shown
    assert shown.index("<b>before</b>") < shown.index("<b>after</b>")
    passed = sum(score_reply(r, support_data.LESSON_COMPLAINT)[c]
                 for r in (before, after) for c in CRITERIA)  # fmt: skip
    assert shown.count("&#10003;") == passed
    assert shown.count("&#10007;") == 2 * len(CRITERIA) - passed
    assert "do_sample" not in shown


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_complaint_is_a_message_not_a_traceback(models, text):
    pg = playground(*models)
    pg.complaint.value = text
    pg.button.click()
    assert "empty" in pg.output.value and "<b>before</b>" not in pg.output.value


def test_over_long_complaint_is_a_message(models):
    pg = playground(*models)
    pg.complaint.value = "My lantern is late. " * 20
    pg.button.click()
    n = len(pg.complaint.value.strip())
    assert n > MAX_COMPLAINT_CHARS
    assert f"{n} characters" in pg.output.value and "<b>before</b>" not in pg.output.value


def test_prompt_too_long_for_the_context_is_cut_with_a_visible_note(models):
    pg = playground(*models)
    pg.max_new_tokens.value = pg.max_new_tokens.max
    pg.complaint.value = ("qzx vjk " * 40).strip()[:MAX_COMPLAINT_CHARS]
    pg.button.click()
    assert "truncated" in pg.output.value and "<b>after</b>" in pg.output.value


def test_sampling_settings_reach_generate_and_are_seeded(models):
    pg = playground(*models)
    assert pg.temperature.disabled and pg.top_p.disabled
    pg.decoding.value = "sampling"
    assert not pg.temperature.disabled and not pg.seed.disabled
    pg.temperature.value, pg.top_p.value, pg.max_new_tokens.value = 1.5, 0.95, 12
    assert pg.generation_kwargs() == {
        "max_new_tokens": 12, "do_sample": True, "temperature": 1.5, "top_p": 0.95,
    }  # fmt: skip
    pg.button.click()
    first = pg.output.value
    assert "do_sample=True" in first
    pg.button.click()
    assert pg.output.value == first, "same seed, same sampled replies"
    pg.seed.value = 1
    pg.button.click()
    assert pg.output.value != first


def test_max_new_tokens_bounds_the_reply(models):
    base, tuned, tokenizer = models
    pg = playground(base, tuned, tokenizer)
    pg.max_new_tokens.value = 3
    replies, notes = pg.replies(support_data.LESSON_COMPLAINT)
    assert not notes
    for reply in replies.values():
        # Byte-level BPE tokens never span two words; a partial UTF-8 byte can re-tokenize longer.
        assert len(reply.split()) <= 3, reply
