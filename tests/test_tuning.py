"""The fine-tuning kit: split, batching, loss, and the loop with its per-step hook."""

import pytest
import torch

from peftlab import base_model, support_data, tuning
from peftlab.quiet import muted


@pytest.fixture(scope="module")
def toy():
    with muted():
        model, tokenizer = base_model.load()
    rows = [tuning.tokenize_example(tokenizer, ex) for ex in support_data.finetune_set(40)]
    return model, tokenizer, rows


def test_hold_out_every_spreads_the_validation_items_and_keeps_the_rest():
    train, val = tuning.hold_out_every(list(range(100)), 10)
    assert val == list(range(9, 100, 10))
    assert sorted(train + val) == list(range(100)) and not set(train) & set(val)
    with pytest.raises(ValueError, match="n_val=0"):
        tuning.hold_out_every(list(range(10)), 0)


def test_hold_out_fraction_is_seeded_and_keeps_the_order():
    train, val = tuning.hold_out_fraction(list(range(20)), 0.25, seed=3)
    assert len(val) == 5 and val == sorted(val) and train == sorted(train)
    assert (train, val) == tuning.hold_out_fraction(list(range(20)), 0.25, seed=3)
    assert val != tuning.hold_out_fraction(list(range(20)), 0.25, seed=4)[1]
    with pytest.raises(ValueError, match="0.5"):
        tuning.hold_out_fraction(list(range(20)), 0.9)


def test_batches_cover_each_epoch_once_and_repeat_for_a_seed():
    batches = tuning.batch_indices(10, 4, steps=5, seed=0)  # two epochs of 10, in batches of 4
    flat = [i for b in batches for i in b]
    assert all(len(b) == 4 for b in batches)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert batches == tuning.batch_indices(10, 4, steps=5, seed=0)
    assert batches != tuning.batch_indices(10, 4, steps=5, seed=1)


def test_next_token_loss_equals_the_models_own_loss(toy):
    model, tokenizer, rows = toy
    batch = tuning.pad_batch(rows[:4], tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    assert torch.allclose(tuning.next_token_loss(out.logits, batch["labels"]), out.loss,
                          atol=1e-5)  # fmt: skip


def test_fit_lowers_the_loss_calls_the_hook_and_takes_any_loss(toy):
    import copy

    model, tokenizer, rows = toy
    pad = tokenizer.pad_token_id
    tuned = copy.deepcopy(model)
    before = tuning.mean_loss(tuned, rows, pad)
    opt = torch.optim.AdamW(tuned.parameters(), lr=1e-3, weight_decay=0.0)
    seen = []

    def hook(step: tuning.Step) -> dict:
        assert all(p.grad is not None for p in tuned.parameters() if p.requires_grad)
        seen.append((step.step, step.lr))
        return {"grad_norm": float(sum(p.grad.norm() ** 2 for p in tuned.parameters()))}

    calls = []

    def logits_loss(model_, batch):  # a loss of (model, batch) that is not the model's own
        calls.append(len(batch["input_ids"]))
        logits = model_(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return tuning.next_token_loss(logits, batch["labels"])

    result = tuning.fit(tuned, rows, opt, steps=12, batch_size=8, seed=0,
                        collate=lambda b: tuning.pad_batch(b, pad), loss=logits_loss,
                        on_step=hook)  # fmt: skip
    assert calls == [8] * 12 and [s for s, _ in seen] == list(range(1, 13))
    assert seen[0][1] < seen[1][1] and seen[-1][1] < seen[2][1]  # warm-up, then cosine down
    assert len(result.losses) == 12 and len(result.measured) == 12
    assert tuning.mean_loss(tuned, rows, pad) < before - 0.1


def test_fit_is_deterministic_for_a_seed(toy):
    import copy

    model, tokenizer, rows = toy
    pad = tokenizer.pad_token_id

    def run():
        torch.manual_seed(0)
        tuned = copy.deepcopy(model)
        opt = torch.optim.AdamW(tuned.parameters(), lr=1e-3)
        return tuning.fit(tuned, rows, opt, steps=3, batch_size=4, seed=5,
                          collate=lambda b: tuning.pad_batch(b, pad)).losses  # fmt: skip

    assert run() == run()


def test_fit_refuses_bad_settings(toy):
    model, tokenizer, rows = toy
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="steps=0"):
        tuning.fit(model, rows, opt, steps=0, batch_size=4, seed=0, collate=list)
    with pytest.raises(ValueError, match="no rows"):
        tuning.fit(model, [], opt, steps=2, batch_size=4, seed=0, collate=list)


def test_the_demo_recipe_names_each_model():
    assert tuning.recipe("embedded").target_modules == "all-linear"
    assert tuning.recipe("smollm2").reply_logits_only
    assert tuning.recipe("some/other-model") == tuning.Recipe()
