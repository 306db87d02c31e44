"""peftlab.lora on its own: the equation, the init, merging, saving, and every bad input."""

import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D

from peftlab import lora, seed_everything

ROOT = Path(__file__).resolve().parents[1]


def tiny_llama(hidden_size: int = 32) -> LlamaForCausalLM:
    seed_everything(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden_size,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


# The equation


def test_forward_is_base_plus_scaled_b_a_x():
    seed_everything(0)
    base = nn.Linear(10, 6)
    layer = lora.LoRALinear(base, r=3, alpha=6)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 10)
    a, b = layer.lora_A.weight, layer.lora_B.weight
    expected = x @ base.weight.T + base.bias + (6 / 3) * (x @ a.T @ b.T)
    torch.testing.assert_close(layer(x), expected)


def test_conv1d_layer_equals_the_same_linear_layer():
    seed_everything(0)
    conv = Conv1D(nf=6, nx=10)
    linear = nn.Linear(10, 6)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    on_conv = lora.LoRALinear(conv, r=2, alpha=4)
    on_linear = lora.LoRALinear(linear, r=2, alpha=4)
    nn.init.normal_(on_conv.lora_B.weight)
    on_linear.load_state_dict(
        {"base_layer.weight": linear.weight, "base_layer.bias": linear.bias}
        | {k: v for k, v in on_conv.state_dict().items() if "lora_" in k}
    )
    x = torch.randn(3, 5, 10)
    torch.testing.assert_close(on_conv(x), on_linear(x))
    assert on_conv.delta_weight().shape == conv.weight.shape == (10, 6)
    torch.testing.assert_close(on_conv.delta_weight(), on_linear.delta_weight().T)


def test_scaling_is_alpha_over_r_or_over_sqrt_r_with_rslora():
    assert lora.LoRALinear(nn.Linear(32, 32), r=16, alpha=8).scaling == 0.5
    assert lora.LoRALinear(nn.Linear(32, 32), r=16, alpha=8, use_rslora=True).scaling == 2.0


def test_a_is_kaiming_uniform_b_is_zero_so_output_starts_at_base():
    seed_everything(0)
    base = nn.Linear(256, 64)
    layer = lora.LoRALinear(base, r=8, alpha=16)
    bound = 1 / math.sqrt(256)  # kaiming_uniform with a=sqrt(5): sqrt(6 / ((1 + 5) * fan_in))
    a = layer.lora_A.weight
    assert a.shape == (8, 256) and layer.lora_B.weight.shape == (64, 8)
    assert a.abs().max() <= bound and a.abs().max() > 0.95 * bound
    assert not layer.lora_B.weight.any()
    x = torch.randn(3, 256)
    assert torch.equal(layer(x), base(x))


def test_only_a_and_b_learn_and_at_init_only_b_gets_a_gradient():
    layer = lora.LoRALinear(nn.Linear(12, 8), r=2, alpha=2)
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == [
        "lora_A.weight",
        "lora_B.weight",
    ]
    layer(torch.randn(5, 12)).pow(2).sum().backward()
    assert layer.base_layer.weight.grad is None
    assert not layer.lora_A.weight.grad.any()  # dL/dA = B^T (...) and B is zero
    assert layer.lora_B.weight.grad.any()


def test_merge_then_unmerge_restores_the_base_weight():
    seed_everything(0)
    layer = lora.LoRALinear(nn.Linear(20, 16), r=4, alpha=8)
    nn.init.normal_(layer.lora_B.weight)
    original = layer.base_layer.weight.clone()
    x = torch.randn(3, 20)
    unmerged_out = layer(x)
    layer.merge()
    torch.testing.assert_close(layer.base_layer.weight, original + layer.delta_weight())
    torch.testing.assert_close(layer(x), unmerged_out)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, original, atol=1e-6, rtol=0)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_merge_refuses_to_write_nan_into_the_base_weight():
    layer = lora.LoRALinear(nn.Linear(6, 6), r=2, alpha=2)
    original = layer.base_layer.weight.clone()
    with torch.no_grad():
        layer.lora_B.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, original) and not layer.merged


def test_bf16_base_keeps_fp32_adapter_and_bf16_output():
    layer = lora.LoRALinear(nn.Linear(16, 16).to(torch.bfloat16), r=4, alpha=4)
    assert layer.lora_A.weight.dtype == torch.float32
    assert layer(torch.randn(2, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16


# add_lora and friends


def test_add_lora_wraps_suffix_matches_and_freezes_the_rest():
    model = lora.add_lora(tiny_llama(), ["q_proj", "model.layers.1.mlp.down_proj"], r=4, alpha=8)
    assert sorted(lora.lora_layers(model)) == [
        "model.layers.0.self_attn.q_proj",
        "model.layers.1.mlp.down_proj",
        "model.layers.1.self_attn.q_proj",
    ]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # q_proj is 32 -> 32, down_proj is 48 -> 32: r * (in + out) each
    assert lora.count_trainable(model) == 2 * 4 * (32 + 32) + 4 * (48 + 32)


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], "all-linear", ["down_proj"]])
def test_lora_param_count_predicts_add_lora_without_changing_the_model(targets):
    model = tiny_llama()
    predicted = lora.lora_param_count(model, targets, r=4)
    assert lora.lora_layers(model) == {}
    assert lora.count_trainable(lora.add_lora(model, targets, r=4, alpha=4)) == predicted


def test_llama_2_7b_on_the_meta_device_has_the_published_lora_count():
    config = LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32,
    )  # fmt: skip
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616
    assert lora.lora_param_count(model, ["q_proj", "v_proj"], r=8) == 4_194_304


def test_regex_and_all_linear_targets_follow_peft():
    model = lora.add_lora(tiny_llama(), r"model\.layers\.0\..*_proj", r=2, alpha=2)
    assert len(lora.lora_layers(model)) == 7
    model = lora.add_lora(tiny_llama(), "all-linear", r=2, alpha=2)
    assert len(lora.lora_layers(model)) == 14 and "lm_head" not in lora.lora_layers(model)


def test_merge_lora_returns_a_plain_model_with_the_base_keys():
    model = tiny_llama()
    keys = set(model.state_dict())
    lora.add_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    plain = lora.merge_lora(model)
    assert set(plain.state_dict()) == keys
    assert not any(isinstance(m, lora.LoRALinear) for m in plain.modules())


# saving


def test_saved_files_use_peft_names_and_values(tmp_path):
    model = lora.add_lora(tiny_llama(), ["q_proj"], r=4, alpha=8, dropout=0.05)
    lora.save_adapter(model, tmp_path / "adapter", base_model_name_or_path="my/base")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert torch.equal(tensors[key], model.model.layers[0].self_attn.q_proj.lora_A.weight)
    assert len(tensors) == 4
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    expected = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_dropout": 0.05}
    assert {k: config[k] for k in expected} == expected
    assert config["target_modules"] == ["q_proj"]
    assert config["base_model_name_or_path"] == "my/base"


def test_save_load_round_trip_gives_the_same_outputs(tmp_path):
    model = lora.add_lora(tiny_llama(), ["q_proj", "up_proj"], r=4, alpha=8)
    for layer in lora.lora_layers(model).values():
        nn.init.normal_(layer.lora_B.weight)
    lora.save_adapter(model, tmp_path / "a")
    loaded = lora.load_adapter(tiny_llama(), tmp_path / "a")
    ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert lora.count_trainable(loaded) == lora.count_trainable(model)


def test_failed_save_leaves_the_previous_adapter_whole(tmp_path, monkeypatch):
    model = lora.add_lora(tiny_llama(), ["q_proj"], r=2, alpha=2)
    lora.save_adapter(model, tmp_path / "a")
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}

    def half_write(tensors, filename, metadata=None):
        save_file(tensors, filename, metadata)
        raise OSError("disk full")

    monkeypatch.setattr(lora, "save_file", half_write)
    nn.init.normal_(model.model.layers[0].self_attn.q_proj.lora_B.weight)
    with pytest.raises(OSError, match="disk full"):
        lora.save_adapter(model, tmp_path / "a")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


# bad input: each error names the bad value and the fix


@pytest.mark.parametrize("r", [0, -2, 2.5, True])
def test_rank_must_be_a_positive_integer(r):
    with pytest.raises(ValueError, match=rf"r={r!r}: LoRA rank must be a positive integer"):
        lora.LoRALinear(nn.Linear(8, 8), r=r, alpha=8)


def test_rank_above_the_smaller_dimension_is_refused():
    with pytest.raises(ValueError, match=r"r=5: .*min\(in_features=8, out_features=4\) = 4"):
        lora.LoRALinear(nn.Linear(8, 4), r=5, alpha=8)


@pytest.mark.parametrize("alpha", [0, -1.0, "16"])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match=rf"alpha={alpha!r}: .*positive number"):
        lora.LoRALinear(nn.Linear(8, 8), r=2, alpha=alpha)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_dropout_must_be_in_zero_one(dropout):
    with pytest.raises(ValueError, match=rf"dropout={dropout!r}: .*\[0, 1\)"):
        lora.LoRALinear(nn.Linear(8, 8), r=2, alpha=2, dropout=dropout)


def test_only_linear_layers_can_be_wrapped():
    with pytest.raises(ValueError, match="base=Embedding: .*nn.Linear or GPT-2's Conv1D"):
        lora.LoRALinear(nn.Embedding(10, 8), r=2, alpha=2)


def test_bad_hyperparameter_in_add_lora_leaves_the_model_unchanged():
    model = tiny_llama()
    before = state(model)
    with pytest.raises(ValueError, match="r=0"):
        lora.add_lora(model, ["q_proj"], r=0, alpha=8)
    assert lora.lora_layers(model) == {}
    assert all(p.requires_grad for p in model.parameters())
    assert_same_state(model, before)


def test_no_matching_module_lists_the_linear_layers():
    model = tiny_llama()
    with pytest.raises(ValueError) as info:
        lora.add_lora(model, ["query"], r=2, alpha=2)
    message = str(info.value)
    assert "target_modules=['query'] matches no module" in message
    for name in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]:
        assert name in message


def test_a_non_linear_target_is_refused_by_name():
    with pytest.raises(ValueError, match=r"selects model.layers.0.mlp, a LlamaMLP; .*linear"):
        lora.add_lora(tiny_llama(), ["mlp"], r=2, alpha=2)


def test_adding_lora_twice_to_one_module_is_refused_and_changes_nothing():
    model = lora.add_lora(tiny_llama(), ["q_proj"], r=2, alpha=2)
    first = model.model.layers[0].self_attn.q_proj
    before = state(model)
    with pytest.raises(ValueError, match=r"q_proj already has LoRA \(r=2\).*merge_lora"):
        lora.add_lora(model, ["q_proj", "v_proj"], r=4, alpha=4)
    assert model.model.layers[0].self_attn.q_proj is first
    assert isinstance(first.base_layer, nn.Linear)
    assert not isinstance(model.model.layers[0].self_attn.v_proj, lora.LoRALinear)
    assert_same_state(model, before)
    with pytest.raises(ValueError, match="already a LoRALinear"):
        lora.LoRALinear(first, r=2, alpha=2)


def test_adapter_of_another_shape_names_layer_and_shapes_and_changes_nothing(tmp_path):
    small = lora.add_lora(tiny_llama(hidden_size=16), ["q_proj"], r=2, alpha=2)
    lora.save_adapter(small, tmp_path / "small")
    model = tiny_llama(hidden_size=32)
    before = state(model)
    with pytest.raises(ValueError) as info:
        lora.load_adapter(model, tmp_path / "small")
    message = str(info.value)
    assert "model.layers.0.self_attn.q_proj" in message
    assert "(2, 16)" in message and "(2, 32)" in message
    assert lora.lora_layers(model) == {}
    assert_same_state(model, before)


def test_adapter_for_a_missing_layer_is_refused_before_any_change(tmp_path):
    deep = lora.add_lora(tiny_llama(), ["model.layers.1.self_attn.q_proj"], r=2, alpha=2)
    lora.save_adapter(deep, tmp_path / "a")
    tensors = load_file(tmp_path / "a" / "adapter_model.safetensors")
    renamed = tensors | {k.replace("layers.1", "layers.7"): v.clone() for k, v in tensors.items()}
    save_file(renamed, tmp_path / "a" / "adapter_model.safetensors")
    model = tiny_llama()
    before = state(model)
    with pytest.raises(
        ValueError, match=r"adapter layer model.layers.7.self_attn.q_proj: .*no such"
    ):
        lora.load_adapter(model, tmp_path / "a")
    assert_same_state(model, before)


def test_adapters_peftlab_cannot_represent_are_refused(tmp_path):
    model = lora.add_lora(tiny_llama(), ["q_proj"], r=2, alpha=2)
    lora.save_adapter(model, tmp_path / "a")
    config_path = tmp_path / "a" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"use_dora": True}))
    with pytest.raises(ValueError, match="use_dora=True: peftlab.lora loads plain LoRA"):
        lora.load_adapter(tiny_llama(), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_config.json is missing"):
        lora.load_adapter(tiny_llama(), tmp_path / "nowhere")


def test_saving_a_model_without_lora_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no LoRA layers: call add_lora"):
        lora.save_adapter(tiny_llama(), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_overhead_benchmark_quick_run_writes_its_table(tmp_path, capsys):
    bench = runpy.run_path(str(ROOT / "benchmarks" / "lora_overhead.py"))
    out = tmp_path / "table.md"
    assert bench["main"](["--quick", "--rounds", "1", "--out", str(out)]) == 0
    table = out.read_text()
    assert table == capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    assert [row.split(" |")[0] for row in rows] == ["| 128 x 128", "| 256 x 256"]
    assert all(float(cell) > 0 for row in rows for cell in row.strip("|").split("|")[1:])
