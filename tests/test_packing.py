"""Padding-free packing: one row, examples kept apart, the padded batch's loss."""

import pytest
import torch
from transformers import DataCollatorWithFlattening

from peftlab import base_model, chat_records, finetune, packing, tuning
from peftlab.seed import seed_everything
from peftlab.tuning import IGNORE_INDEX


@pytest.fixture(scope="module")
def model_and_features():
    model, tokenizer = base_model.load()
    records = chat_records.read_jsonl("examples/support.jsonl")
    return model, tokenizer, chat_records.encode(tokenizer, records, 256)


def test_a_packed_batch_is_one_row_with_restarting_positions(model_and_features):
    _, _, features = model_and_features
    batch = packing.packed_batch(features[:3])
    lengths = [len(f["input_ids"]) for f in features[:3]]
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert batch["use_cache"] is False
    starts = [0, lengths[0], lengths[0] + lengths[1]]
    assert [int(batch["position_ids"][0, s]) for s in starts] == [0, 0, 0]
    assert int(batch["position_ids"][0, -1]) == lengths[2] - 1
    assert all(int(batch["labels"][0, s]) == IGNORE_INDEX for s in starts)


def test_packed_loss_equals_padded_loss(model_and_features):
    model, tokenizer, features = model_and_features
    padded, packed = packing.padded_and_packed_loss(model, features, tokenizer.pad_token_id)
    assert packed == pytest.approx(padded, rel=1e-5)
    lengths = {len(f["input_ids"]) for f in features}
    assert len(lengths) > 1  # the padded batch really has padding


def test_packed_gradients_equal_padded_gradients(model_and_features):
    _, tokenizer, features = model_and_features
    seed_everything(0)
    model, _ = base_model.load()
    wrapped = finetune.build_peft_model(model, r=4, alpha=8, target_modules="all-linear")
    grads = []
    for batch in (tuning.pad_batch(features[:6], tokenizer.pad_token_id),
                  packing.packed_batch(features[:6])):  # fmt: skip
        wrapped.zero_grad()
        wrapped(**batch).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in wrapped.parameters() if p.requires_grad]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_with_a_kv_cache_the_examples_attend_to_each_other(model_and_features):
    """transformers' collator alone, on a model whose config says use_cache=True: the forward
    pass builds a cache, skips looking for packed sequences, and the loss goes wrong."""
    model, tokenizer, features = model_and_features
    assert model.config.use_cache
    raw = DataCollatorWithFlattening(return_position_ids=True)([dict(f) for f in features])
    with torch.no_grad():
        leaky = float(model(**raw).loss)
    padded, packed = packing.padded_and_packed_loss(model, features, tokenizer.pad_token_id)
    assert abs(leaky - padded) > 0.05
    assert packed == pytest.approx(padded, rel=1e-5)


def test_tokens_per_second_counts_real_and_computed_tokens(model_and_features):
    model, tokenizer, features = model_and_features
    kwargs = dict(batch_size=8, repeats=1)
    padded = packing.tokens_per_second(
        model, features[:8], tokenizer.pad_token_id, packing=False, **kwargs
    )
    packed = packing.tokens_per_second(
        model, features[:8], tokenizer.pad_token_id, packing=True, **kwargs
    )
    real = sum(len(f["input_ids"]) for f in features[:8])
    assert padded["real_tokens"] == packed["real_tokens"] == packed["computed_tokens"] == real
    assert padded["computed_tokens"] > real
    assert padded["tokens_per_s"] > 0 and packed["tokens_per_s"] > 0
    model.zero_grad(set_to_none=True)
    model.eval()


@pytest.mark.slow
def test_training_packed_follows_the_padded_run(model_and_features):
    _, tokenizer, features = model_and_features
    runs = []
    for pack in (False, True):
        seed_everything(0)
        model, _ = base_model.load()
        wrapped = finetune.build_peft_model(model, r=8, alpha=16, target_modules="all-linear")
        collate = (packing.flattening_collator() if pack
                   else lambda f: tuning.pad_batch(f, tokenizer.pad_token_id))  # fmt: skip
        losses, _ = finetune.trainer_fit(
            wrapped, features, collate, steps=4, batch_size=10, learning_rate=3e-3, seed=0
        )
        runs.append([loss for _, loss in losses])
    assert runs[1] == pytest.approx(runs[0], rel=1e-3)
