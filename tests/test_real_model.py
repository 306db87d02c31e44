"""The course's code on the real model (SmolLM2-135M-Instruct, fetched by `make setup`): a short
fine-tune helps on complaints it never saw, a seed fixes every reply, and the levers the demo's
recipe pulls compute the same loss.

The demo's full run (both sets, the acceptance targets) is lesson 11's: tests/test_lesson_11.py.
"""

import pytest
import torch

from peftlab import base_model, compare, finetune, models, support_data, tuning
from peftlab.generate import generate
from peftlab.rubric import mean_score

pytestmark = pytest.mark.slow

COMPLAINTS = compare.sample_of(support_data.heldout_complaints(), 6)


@pytest.fixture(scope="module", autouse=True)
def fetched():
    models.fetch("smollm2", say=lambda _: None)


def short_run(seed: int) -> tuple[list[str], list[str]]:
    """Replies before and after 6 LoRA steps of 8, as the demo's recipe runs them."""
    plan = tuning.recipe("smollm2")
    precision = finetune.resolve_precision(plan.precision)
    torch.manual_seed(seed)
    model, tokenizer = base_model.load("smollm2")
    with finetune.autocast(precision):
        before = generate(model, tokenizer, COMPLAINTS, max_new_tokens=40)
    result = finetune.train_lora(
        model, tokenizer, support_data.finetune_set(seed=seed), steps=6, batch_size=8,
        learning_rate=plan.learning_rate, target_modules=plan.target_modules, seed=seed,
        run_name=None, progress=False, precision=precision, reply_logits_only=True,
    )  # fmt: skip
    with finetune.autocast(precision):
        after = generate(result.model, tokenizer, COMPLAINTS, max_new_tokens=40)
    return before, after


@pytest.fixture(scope="module")
def runs():
    return short_run(0), short_run(0)


def test_a_short_fine_tune_beats_the_instruct_model_on_unseen_complaints(runs):
    (before, after), _ = runs
    assert mean_score(after, COMPLAINTS) > mean_score(before, COMPLAINTS) + 0.3


def test_the_same_seed_gives_the_same_replies(runs):
    first, second = runs
    assert first == second


def test_reply_loss_equals_the_models_own_loss_on_the_real_model():
    """Slicing the hidden states before the 49,152-word output layer changes no loss."""
    model, tokenizer = base_model.load("smollm2")
    wrapped = finetune.build_peft_model(model, target_modules="all-linear")
    examples = support_data.finetune_set()[:4]
    batch = tuning.pad_batch(
        [tuning.tokenize_example(tokenizer, e) for e in examples], tokenizer.pad_token_id
    )
    with torch.no_grad():
        full = wrapped(**batch).loss
        sliced = finetune.reply_loss(wrapped, batch)
    assert torch.allclose(full, sliced, rtol=1e-5, atol=1e-6), (full.item(), sliced.item())
