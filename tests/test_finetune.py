"""LoRA fine-tuning: reply-only loss, peft's format on disk, never a half-written adapter."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from peftlab import base_model, compare, finetune, support_data, tuning
from peftlab.tuning import IGNORE_INDEX


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(base_model.EMBEDDED_PATH)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"steps": 0}, "steps=0"), ({"r": 0}, "r=0"), ({"alpha": -1}, "alpha=-1"),
     ({"method": "dora"}, "method='dora'")],
)  # fmt: skip
def test_bad_settings_are_refused(tokenizer, kwargs, message):
    model, _ = base_model.load()
    with pytest.raises(ValueError, match=message):
        finetune.train_lora(model, tokenizer, support_data.finetune_set()[:4], **kwargs)


def test_adapter_is_saved_in_peft_format_and_reloads(tmp_path):
    model, tokenizer = base_model.load()
    result = finetune.train_lora(
        model, tokenizer, support_data.finetune_set()[:32], steps=3, batch_size=8,
        runs_dir=tmp_path, run_name="t", progress=False,
    )  # fmt: skip
    adapter = tmp_path / "t" / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in adapter.iterdir()
    }
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]  # peft's Llama default
    assert not [p for p in tmp_path.rglob("*.tmp")]
    reloaded = PeftModel.from_pretrained(base_model.load()[0], adapter)
    ids = tokenizer("Hello there, my kettle is late.", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).logits, result.model(**ids).logits)
    assert 0 < result.trainable_params < result.total_params


def test_interrupted_save_leaves_no_adapter_to_load(tmp_path, monkeypatch):
    model, tokenizer = base_model.load()

    def save_half_then_die(self, path, **kwargs):
        (path / "adapter_config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(PeftModel, "save_pretrained", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune.train_lora(
            model, tokenizer, support_data.finetune_set()[:8], steps=1, batch_size=8,
            runs_dir=tmp_path, run_name="t", progress=False,
        )  # fmt: skip
    assert not (tmp_path / "t" / "adapter").exists()
    assert not list((tmp_path / "t").iterdir())


@pytest.mark.pins
def test_same_seed_gives_same_replies(tmp_path):
    complaints = support_data.heldout_complaints()[:4]
    runs = [
        compare.before_after(complaints, steps=4, seed=5, runs_dir=tmp_path, progress=False)
        for _ in range(2)
    ]
    assert runs[0].examples == runs[1].examples


def test_any_causal_lm_runs_the_same_pipeline(tmp_path, monkeypatch):
    """A tiny random GPT-2 in a local folder goes through the same code (it only has to run)."""
    tokenizer = AutoTokenizer.from_pretrained(base_model.EMBEDDED_PATH)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=256,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)  # the same random model whatever ran before
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    monkeypatch.setenv("PEFT_LAB_MODEL", str(tmp_path / "gpt2"))
    result = compare.before_after(
        ["My order is late."], steps=2, runs_dir=tmp_path / "runs", progress=False
    )
    assert result.model == str(tmp_path / "gpt2")
    assert result.trainable_params == 1 * 8 * (32 + 3 * 32)  # peft's GPT-2 default: c_attn
    config = json.loads((tmp_path / "runs/demo/adapter/adapter_config.json").read_text())
    assert config["target_modules"] == ["c_attn"]
    assert len(result.examples) == 1


def test_qlora_loads_the_base_in_4bit_and_trains_every_linear_layer(tmp_path):
    from bitsandbytes.nn import Linear4bit

    result = compare.before_after(
        ["My order is late."], method="qlora", steps=2, runs_dir=tmp_path, progress=False
    )
    assert result.method == "qlora"
    config = json.loads((tmp_path / "demo/adapter/adapter_config.json").read_text())
    assert set(config["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    model, _ = base_model.load(quantization_config=compare._quantization("qlora"))
    assert sum(isinstance(m, Linear4bit) for m in model.modules()) == 4 * 7


def test_device_and_precision_resolve_on_the_cpu(monkeypatch):
    """--device auto is the CPU here; bf16 only where this CPU's kernels compute it natively."""
    assert finetune.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert finetune.resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device='tpu'"):
        finetune.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            finetune.resolve_device("cuda")
    assert finetune.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision='fp16'"):
        finetune.resolve_precision("fp16")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert finetune.resolve_precision("auto") == "fp32"  # emulated bf16 is slower than fp32


def test_reply_loss_equals_the_models_loss_on_the_embedded_model():
    model, tokenizer = base_model.load()
    wrapped = finetune.build_peft_model(model, target_modules="all-linear")
    features = [tuning.tokenize_example(tokenizer, e) for e in support_data.finetune_set()[:6]]
    batch = tuning.pad_batch(features, tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(wrapped(**batch).loss, finetune.reply_loss(wrapped, batch), atol=1e-6)
    batch["labels"][:] = IGNORE_INDEX
    with pytest.raises(ValueError, match="no label is kept"):
        finetune.reply_loss(wrapped, batch)
