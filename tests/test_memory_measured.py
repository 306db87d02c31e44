"""Measured vs predicted: bytes held after one optimizer step equal estimate()'s terms."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from peftlab import finetune, measure, memory, seed_everything
from peftlab.base_model import nf4_config

CONFIG = LlamaConfig(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
TARGETS = ["q_proj", "v_proj"]
R = 4


def one_step(model, autocast: bool = False):
    return measure.train_step(model, batch_size=2, seq_len=16, autocast=autocast)


def random_llama(dtype=torch.float32):
    seed_everything(0)
    return LlamaForCausalLM(CONFIG).to(dtype)


def test_full_fp32():
    model = random_llama()
    held = measure.held_bytes(model, one_step(model))
    est = memory.estimate(CONFIG, method="full", precision="fp32")
    assert held["trainable_weights"] == est.trainable_weights
    assert held["gradients"] == est.gradients
    assert held["optimizer_states"] == est.optimizer_states
    assert held["frozen_weights"] == est.frozen_weights == est.master_weights == 0


def test_full_bf16():
    model = random_llama(torch.bfloat16)
    held = measure.held_bytes(model, one_step(model))
    est = memory.estimate(CONFIG, method="full", precision="bf16")
    assert (held["trainable_weights"], held["gradients"], held["optimizer_states"]) == (
        est.trainable_weights,
        est.gradients,
        est.optimizer_states,
    )


def test_full_mixed_under_torch_amp_holds_hf_accounting():
    """torch AMP keeps fp32 weights, fp32 grads and fp32 AdamW states; the 16-bit copy is
    autocast's transient cache, so the persistent terms are HF's 4 + 4 + 8."""
    model = random_llama()
    held = measure.held_bytes(model, one_step(model, autocast=True))
    est = memory.estimate(CONFIG, method="full", precision="mixed", accounting="hf")
    assert held["trainable_weights"] == est.master_weights
    assert held["gradients"] == est.gradients
    assert held["optimizer_states"] == est.optimizer_states


@pytest.mark.parametrize(("precision", "upcast"), [("mixed", True), ("bf16", False)])
def test_lora_on_bf16_base(precision, upcast):
    base = random_llama(torch.bfloat16)
    model = get_peft_model(
        base, LoraConfig(r=R, target_modules=TARGETS), autocast_adapter_dtype=upcast
    )
    held = measure.held_bytes(model, one_step(model))
    est = memory.estimate(CONFIG, "lora", r=R, target_modules=TARGETS, precision=precision)
    for term in ("frozen_weights", "trainable_weights", "gradients", "optimizer_states"):
        assert held[term] == getattr(est, term), term


@pytest.mark.parametrize("double_quant", [False, True])
def test_qlora_as_train_lora_builds_it(tmp_path, double_quant):
    """The QLoRA model is the one finetune.train_lora(method="qlora") trains: a 4-bit base
    through peft's prepare_model_for_kbit_training (fp32 embeddings, norms and head)."""
    random_llama().save_pretrained(tmp_path)
    base = AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=nf4_config(double_quant), device_map="cpu",
        dtype=torch.bfloat16,
    )  # fmt: skip
    model = finetune.build_peft_model(base, method="qlora", r=R, target_modules=TARGETS)
    footprint = model.get_base_model().get_memory_footprint()
    held = measure.held_bytes(model, one_step(model))
    est = memory.estimate(CONFIG, "qlora", r=R, target_modules=TARGETS, double_quant=double_quant)
    for term in (
        "frozen_weights",
        "quantization_constants",
        "trainable_weights",
        "gradients",
        "optimizer_states",
    ):
        assert held[term] == getattr(est, term), term
    # get_memory_footprint counts parameters (the adapters too) and buffers (rotary tables), not
    # the quantization constants.
    assert abs(footprint - est.trainable_weights - est.frozen_weights) / footprint < 0.02
    embeddings = model.get_base_model().get_input_embeddings().weight
    assert embeddings.dtype == torch.float32  # prepare_model_for_kbit_training's upcast
    assert model.get_base_model().is_gradient_checkpointing
