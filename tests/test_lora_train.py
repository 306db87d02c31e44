"""The hand-written training loop: its pieces equal transformers' own, it trains our LoRA exactly
as it trains peft's, and on the embedded model it reaches the peft path's held-out rubric."""

import copy
import math
import re

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from peftlab import base_model, lora, lora_train, seed_everything, support_data
from peftlab.generate import generate
from peftlab.lessons import lesson02_lora as lesson02
from peftlab.rubric import mean_score


@pytest.fixture(scope="module")
def tiny():
    """A random two-layer Llama with a small tokenizer trained on the support chats: seconds."""
    examples = support_data.finetune_set(48)
    texts = [f"{e.complaint} {e.reply}" for e in examples]
    tokenizer = base_model.train_tokenizer(texts, vocab_size=320)
    seed_everything(0)
    return LlamaForCausalLM(base_model.model_config(tokenizer, hidden=64, layers=2)), tokenizer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps=0: "),
        ({"batch_size": -1}, "batch_size=-1: "),
        ({"learning_rate": 0.0}, "learning_rate=0.0: "),
        ({"examples": []}, "examples=[]: "),
    ],
)
def test_bad_training_settings_name_the_value(kwargs, message, tiny):
    model, tokenizer = tiny
    args = {"examples": support_data.finetune_set(8), "steps": 2, "batch_size": 2}
    args |= {"learning_rate": 1e-3} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        lora_train.fit_by_hand(model, tokenizer, **args)


def test_same_loop_trains_our_lora_and_peft_lora_identically(tiny):
    model, tokenizer = tiny
    examples = support_data.finetune_set(24)
    settings = {"steps": 8, "batch_size": 6, "learning_rate": 2e-2, "seed": 5}
    ours = lora_train.train_lora_from_scratch(
        copy.deepcopy(model), tokenizer, examples, r=4, alpha=8, **settings
    )
    seed_everything(settings["seed"])
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(copy.deepcopy(model), config)
    theirs = lora_train.fit_by_hand(peft_model, tokenizer, examples, **settings)
    assert ours.trainable_params == theirs.trainable_params
    ours_losses = [loss for _, loss in ours.losses]
    assert ours_losses == pytest.approx([loss for _, loss in theirs.losses], abs=1e-4)
    assert ours_losses[-1] < ours_losses[0]


def test_energy_in_top_directions():
    generator = torch.Generator().manual_seed(0)
    rank_two = torch.randn(20, 2, generator=generator) @ torch.randn(2, 30, generator=generator)
    assert lora_train.energy_in_top(rank_two, 2) == pytest.approx(1.0)
    assert lora_train.energy_in_top(rank_two, 1) < 1.0
    assert lora_train.energy_in_top(torch.eye(10), 3) == pytest.approx(0.3)


def test_updates_are_the_differences_they_claim(tiny):
    model, _ = tiny
    tuned = copy.deepcopy(model)
    name = "model.layers.0.self_attn.q_proj"
    with torch.no_grad():
        tuned.get_submodule(name).weight.add_(1.0)
    delta = lora_train.full_update(model, tuned, name)
    assert torch.allclose(delta, torch.ones_like(delta))
    adapted = lora.add_lora(copy.deepcopy(model), [name], r=2, alpha=4)
    layer = adapted.get_submodule(name)
    torch.nn.init.normal_(layer.lora_B.weight)
    expected = 2.0 * layer.lora_B.weight @ layer.lora_A.weight
    torch.testing.assert_close(lora_train.lora_update(adapted, name), expected.detach())
    with pytest.raises(ValueError, match="'model.layers.0.mlp.up_proj' has no LoRA"):
        lora_train.lora_update(adapted, "model.layers.0.mlp.up_proj")


@pytest.mark.slow
@pytest.mark.pins
def test_from_scratch_lora_reaches_the_peft_paths_heldout_rubric():
    """Lesson 02's run (the embedded model, r=8 on q and v, 120 steps of 16 chats, seed 0)."""
    _, tokenizer = base_model.load()
    result = lesson02.results()["run"]["result"]
    complaints = support_data.heldout_complaints()
    replies = generate(result.model, tokenizer, complaints)
    mean = mean_score(replies, complaints)
    assert mean >= 0.85
    assert lora_train.heldout_rubric(result.model, tokenizer)[0] == pytest.approx(mean)
    assert result.losses[-1][1] < result.losses[0][1] / 2
    assert not math.isnan(result.losses[-1][1])
