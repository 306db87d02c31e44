"""Counted, not guessed: the estimate's activation term beside the bytes autograd saves.

`measure.saved_activation_bytes` counts every tensor autograd keeps for backward (one storage
once; weights excluded) on small random Llamas of two shapes, eager and SDPA attention, with
and without gradient checkpointing, for full fine-tuning (bf16 and fp32), LoRA on a bf16 base
and QLoRA built by `finetune.build_peft_model`, the code path `finetune.train_lora` trains. The
estimate must be within 10% of the count in every case (it is within a few bytes today).
"""

import itertools

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from peftlab import activation_counts, activation_memory, measure, seed_everything

SHAPES = activation_counts.SHAPES  # the shapes lesson 01 counts too
BATCH, SEQ, R, TARGETS = 2, 64, 8, ["q_proj", "v_proj"]
RECIPES = {  # name: (method, estimate precision, base dtype, LoRA targets)
    "full-bf16": ("full", "bf16", torch.bfloat16, None),
    "full-fp32": ("full", "fp32", torch.float32, None),
    "lora-mixed": ("lora", "mixed", torch.bfloat16, TARGETS),
    "qlora": ("qlora", "mixed", torch.bfloat16, TARGETS),
    "qlora-all-linear": ("qlora", "mixed", torch.bfloat16, "all-linear"),
}
CASES = list(itertools.product(SHAPES, ("sdpa", "eager"), (False, True), RECIPES))
SMALL = next(iter(SHAPES))  # multi-head attention, 2 layers


def config(shape: str, attn: str):
    return activation_counts.config(shape, attn)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved random model per shape, loaded by every recipe."""
    folders = {}
    for i, shape in enumerate(SHAPES):
        folders[shape] = tmp_path_factory.mktemp(f"shape{i}")
        activation_counts.save_random(shape, folders[shape])
    return folders


@pytest.mark.parametrize(("shape", "attn", "checkpointing", "recipe"), CASES)
def test_estimate_within_10_percent_of_counted_bytes(saved, shape, attn, checkpointing, recipe):
    method, precision, dtype, targets = RECIPES[recipe]
    result = activation_counts.count(
        saved[shape], shape, method, precision, attn, checkpointing, BATCH, SEQ, dtype=dtype,
        r=R, target_modules=targets or TARGETS,
    )  # fmt: skip
    counted, estimate = result["counted"], result["estimate"]
    assert abs(estimate - counted["total"]) <= 0.10 * counted["total"], counted
    if checkpointing:
        assert counted["layers"] == 0 and counted["checkpoint_inputs"] > 0
    else:
        assert counted["checkpoint_inputs"] == counted["recompute"] == 0


def test_sdpa_keeps_no_scores_and_eager_keeps_them_quadratically():
    """Doubling the sequence doubles SDPA's saved bytes per layer; eager's grow faster."""
    per_layer = {}
    for attn, seq in itertools.product(("sdpa", "eager"), (32, 64)):
        seed_everything(0)
        model = LlamaForCausalLM(config(SMALL, attn)).to(torch.bfloat16)
        per_layer[attn, seq] = measure.saved_activation_bytes(model, 1, seq)["layers"]
    assert per_layer["sdpa", 64] / per_layer["sdpa", 32] == pytest.approx(2, abs=0.01)
    assert per_layer["eager", 64] / per_layer["eager", 32] > 2.2
    heads, seq = 4, 64  # eager's extra: fp32 softmax output + bf16 probabilities, a*s*s each
    extra = per_layer["eager", 64] - per_layer["sdpa", 64]
    assert extra >= 2 * (4 + 2) * heads * seq * seq * 0.9


def test_weights_autograd_saves_are_not_counted_as_activations():
    """Frozen 16-bit matmuls save their weight (for the input gradient): autograd does save it,
    and the count leaves it out, so the count matches the activation-only estimate."""
    seed_everything(0)
    model = LlamaForCausalLM(config(SMALL, "sdpa")).to(torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=R, target_modules=TARGETS))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen_weights = set()

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() in weights:
            seen_weights.add(tensor.untyped_storage().data_ptr())
        return tensor

    ids = torch.randint(0, 512, (BATCH, SEQ))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    assert loss.requires_grad
    assert len(seen_weights) >= 2 * 7  # every frozen linear of both layers at least
    counted = measure.saved_activation_bytes(model, BATCH, SEQ)
    est = activation_memory.activation_bytes(
        config(SMALL, "sdpa"), BATCH, SEQ, method="lora", r=R, target_modules=TARGETS
    )
    assert abs(est - counted["total"]) <= 0.01 * counted["total"]


def test_bad_shape_or_method_is_refused(saved):
    with pytest.raises(ValueError, match="unknown; choose one of"):
        activation_counts.config("h96-tiny")
    with pytest.raises(ValueError, match="method='dpo'"):
        activation_counts.build(saved[SMALL], "dpo")
