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


def test_loss_is_on_reply_tokens_only(toy):
    _, tokenizer, _ = toy
    example = support_data.finetune_set()[0]
    features = tuning.tokenize_example(tokenizer, example)
    labels, ids = features["labels"], features["input_ids"]
    n_prompt = labels.count(tuning.IGNORE_INDEX)
    assert labels[:n_prompt] == [tuning.IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    reply = tokenizer.decode(ids[n_prompt:], skip_special_tokens=True).strip()
    assert reply == example.reply
    prompt = tokenizer.decode(ids[:n_prompt])
    assert prompt.endswith("<|im_start|>assistant\n") and example.complaint in prompt
    assert ids[-2:] == tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]


def test_pad_batch_masks_padding_from_attention_and_loss():
    batch = tuning.pad_batch(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}], 0
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_batches_cover_each_epoch_once_and_repeat_for_a_seed():
    batches = tuning.batch_indices(10, 4, steps=5, seed=0)  # two epochs of 10, in batches of 4
    flat = [i for b in batches for i in b]
    assert all(len(b) == 4 for b in batches)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert batches == tuning.batch_indices(10, 4, steps=5, seed=0)
    assert batches != tuning.batch_indices(10, 4, steps=5, seed=1)


def test_next_token_loss_equals_transformers_loss_with_masked_labels():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 50, (3, 9))
    labels = ids.clone()
    labels[:, :4] = tuning.IGNORE_INDEX
    labels[2, 7:] = tuning.IGNORE_INDEX
    out = model(input_ids=ids, labels=labels)
    torch.testing.assert_close(tuning.next_token_loss(out.logits, labels), out.loss)
    assert tuning.causal_lm_loss(model, {"input_ids": ids, "labels": labels}) == out.loss


def test_mean_loss_weighs_every_reply_token_alike(toy):
    model, tokenizer, rows = toy
    pad = tokenizer.pad_token_id
    one_batch = tuning.mean_loss(model, rows[:6], pad, batch_size=6)
    assert tuning.mean_loss(model, rows[:6], pad, batch_size=4) == pytest.approx(one_batch, 1e-5)
    singles = [tuning.mean_loss(model, [r], pad) for r in rows[:6]]
    counts = [sum(label != tuning.IGNORE_INDEX for label in r["labels"]) for r in rows[:6]]
    weighted = sum(x * n for x, n in zip(singles, counts, strict=True)) / sum(counts)
    assert one_batch == pytest.approx(weighted, 1e-5)


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
