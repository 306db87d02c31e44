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
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from peftlab import activation_memory, finetune, measure, memory, seed_everything
from peftlab.base_model import nf4_config

SHAPES = {
    "h128-mha": dict(hidden_size=128, intermediate_size=352, num_attention_heads=4,
                     num_key_value_heads=4, num_hidden_layers=2, vocab_size=512),
    "h192-gqa": dict(hidden_size=192, intermediate_size=512, num_attention_heads=6,
                     num_key_value_heads=2, num_hidden_layers=3, vocab_size=1024),
}  # fmt: skip
BATCH, SEQ, R, TARGETS = 2, 64, 8, ["q_proj", "v_proj"]
RECIPES = {  # name: (method, estimate precision, base dtype, LoRA targets)
    "full-bf16": ("full", "bf16", torch.bfloat16, None),
    "full-fp32": ("full", "fp32", torch.float32, None),
    "lora-mixed": ("lora", "mixed", torch.bfloat16, TARGETS),
    "qlora": ("qlora", "mixed", torch.bfloat16, TARGETS),
    "qlora-all-linear": ("qlora", "mixed", torch.bfloat16, "all-linear"),
}
CASES = list(itertools.product(SHAPES, ("sdpa", "eager"), (False, True), RECIPES))


def config(shape: str, attn: str) -> LlamaConfig:
    cfg = LlamaConfig(**SHAPES[shape])
    cfg._attn_implementation = attn
    return cfg


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved random model per shape, for the 4-bit loads."""
    folders = {}
    for shape in SHAPES:
        folders[shape] = tmp_path_factory.mktemp(shape)
        seed_everything(0)
        LlamaForCausalLM(LlamaConfig(**SHAPES[shape])).save_pretrained(folders[shape])
    return folders


def build(shape: str, attn: str, checkpointing: bool, recipe: str, folder):
    method, precision, dtype, targets = RECIPES[recipe]
    if method == "qlora":  # the model train_lora(method="qlora") trains
        base = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=nf4_config(), device_map="cpu", dtype=dtype,
            attn_implementation=attn,
        )  # fmt: skip
        return finetune.build_peft_model(
            base, method="qlora", r=R, target_modules=targets, gradient_checkpointing=checkpointing
        )
    seed_everything(0)
    model = LlamaForCausalLM(config(shape, attn)).to(dtype)
    if method == "lora":
        model = finetune.build_peft_model(
            model, method="lora", r=R, target_modules=targets, gradient_checkpointing=checkpointing
        )
    elif checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    return model


@pytest.mark.parametrize(("shape", "attn", "checkpointing", "recipe"), CASES)
def test_estimate_within_10_percent_of_counted_bytes(saved, shape, attn, checkpointing, recipe):
    method, precision, _, targets = RECIPES[recipe]
    model = build(shape, attn, checkpointing, recipe, saved[shape])
    counted = measure.saved_activation_bytes(model, BATCH, SEQ)
    estimate = memory.estimate(
        config(shape, attn), method=method, r=R, target_modules=targets, precision=precision,
        batch_size=BATCH, seq_len=SEQ, gradient_checkpointing=checkpointing,
        attn_implementation=attn,
    ).activations  # fmt: skip
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
        model = LlamaForCausalLM(config("h128-mha", attn)).to(torch.bfloat16)
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
    model = LlamaForCausalLM(config("h128-mha", "sdpa")).to(torch.bfloat16)
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
        config("h128-mha", "sdpa"), BATCH, SEQ, method="lora", r=R, target_modules=TARGETS
    )
    assert abs(est - counted["total"]) <= 0.01 * counted["total"]
