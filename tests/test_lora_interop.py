"""peftlab.lora against peft: same init, same logits, same trainable counts, adapters that load
both ways. Every adapter here has a random, non-zero B: an all-zero adapter would prove nothing."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from peftlab import base_model, lora, seed_everything

ATOL = 1e-5
# Merging adds in a different order than W0 x + B A x does; on logits of size ~10 that differs
# by float32 rounding (a relative 1e-6 or so of the largest terms, which lands on small logits
# too), so merged comparisons get a relative margin and an absolute one a few times ATOL.
MERGED = {"atol": 5e-5, "rtol": 1e-5}


def tiny_llama() -> LlamaForCausalLM:
    seed_everything(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    seed_everything(0)
    config = GPT2Config(
        vocab_size=96,
        n_positions=32,
        n_embd=48,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def embedded_llama() -> LlamaForCausalLM:
    """The course's own pretrained model (peftlab.base_model), as the notebook uses it."""
    return base_model.load()[0]


CASES = {
    "embedded-llama-qv": (embedded_llama, ["q_proj", "v_proj"], False),
    "llama-qv": (tiny_llama, ["q_proj", "v_proj"], False),
    "llama-all-linear": (tiny_llama, "all-linear", False),
    "llama-rslora": (tiny_llama, ["q_proj", "k_proj", "down_proj"], True),
    "gpt2-conv1d": (tiny_gpt2, ["c_attn", "c_proj", "c_fc"], False),
}


def input_ids(model) -> torch.Tensor:
    return torch.randint(
        0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3)
    )


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def randomize_b(model) -> None:
    """Give every adapter a non-zero B, so that the adapter changes the output."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=generator))


def peft_config(model, targets, r, alpha, rslora) -> LoraConfig:
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=targets,
        use_rslora=rslora,
        fan_in_fan_out=isinstance(model, GPT2LMHeadModel),
        task_type="CAUSAL_LM",
    )


def ours_and_peft(build, targets, rslora, r=4, alpha=8):
    """Our LoRA and peft's on two copies of one base model, from the same seed, B copied across."""
    base = build()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    seed_everything(1)
    lora.add_lora(ours, targets, r=r, alpha=alpha, use_rslora=rslora)
    seed_everything(1)
    peft_model = get_peft_model(theirs, peft_config(base, targets, r, alpha, rslora)).eval()
    randomize_b(ours)
    peft_state = peft_model.state_dict()
    with torch.no_grad():
        for key, value in lora.adapter_state_dict(ours).items():
            peft_state[key.replace(".weight", ".default.weight")].copy_(value)
    return base, ours, peft_model


@pytest.mark.parametrize("case", CASES)
def test_same_seed_gives_peft_initial_a_and_zero_b(case):
    build, targets, rslora = CASES[case]
    base = build()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    seed_everything(1)
    lora.add_lora(ours, targets, r=4, alpha=8, use_rslora=rslora)
    seed_everything(1)
    peft_model = get_peft_model(theirs, peft_config(base, targets, 4, 8, rslora))
    peft_state = peft_model.state_dict()
    ours_state = lora.adapter_state_dict(ours)
    assert len(ours_state) > 0
    for key, value in ours_state.items():
        assert torch.equal(value, peft_state[key.replace(".weight", ".default.weight")]), key
        if ".lora_B." in key:
            assert not value.any()


@pytest.mark.parametrize("case", CASES)
def test_model_state_dict_keys_map_to_peft_keys_by_prefix(case):
    build, targets, rslora = CASES[case]
    _, ours, peft_model = ours_and_peft(build, targets, rslora)
    ours_keys = sorted(lora.PEFT_KEY_PREFIX + k for k in ours.state_dict())
    peft_keys = sorted(k.replace(".default", "") for k in peft_model.state_dict())
    assert ours_keys == peft_keys


@pytest.mark.parametrize("case", CASES)
def test_logits_equal_peft(case):
    build, targets, rslora = CASES[case]
    base, ours, peft_model = ours_and_peft(build, targets, rslora)
    ids = input_ids(base)
    torch.testing.assert_close(logits(ours, ids), logits(peft_model, ids), atol=ATOL, rtol=0)
    assert (logits(ours, ids) - logits(base, ids)).abs().max() > 1e-2


@pytest.mark.parametrize("case", CASES)
def test_trainable_count_equals_peft(case):
    build, targets, rslora = CASES[case]
    base, ours, peft_model = ours_and_peft(build, targets, rslora)
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert lora.count_trainable(ours) == trainable
    assert sum(p.numel() for p in ours.parameters()) == total
    by_formula = sum(
        layer.r * (layer.in_features + layer.out_features)
        for layer in lora.lora_layers(ours).values()
    )
    assert trainable == by_formula


def test_trainable_share_is_what_peft_prints(capsys):
    build, targets, rslora = CASES[next(iter(CASES))]
    _, ours, peft_model = ours_and_peft(build, targets, rslora)
    peft_model.print_trainable_parameters()
    printed = float(capsys.readouterr().out.rsplit("trainable%:", 1)[1])
    total = sum(p.numel() for p in ours.parameters())  # adapters included
    share = lora.trainable_share(lora.count_trainable(ours), total)
    assert round(100 * share, 4) == printed
    assert lora.share_text(lora.count_trainable(ours), total) == f"{100 * share:#.3g}%"
    assert lora.share_text(116_736, 2_140_224) == "5.45%"
    assert lora.share_text(0, 10) == "0%" and lora.share_text(10, 10) == "100%"
    assert lora.share_text(24_576, 2_048_064) == "1.20%"  # three digits, trailing zero kept
    with pytest.raises(ValueError, match="adapters included"):
        lora.trainable_share(11, 10)


@pytest.mark.parametrize("case", CASES)
def test_our_saved_adapter_loads_in_peft(case, tmp_path):
    build, targets, rslora = CASES[case]
    base, ours, _ = ours_and_peft(build, targets, rslora)
    lora.save_adapter(ours, tmp_path / "adapter", base_model_name_or_path="tiny")
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter").eval()
    assert loaded.peft_config["default"].base_model_name_or_path == "tiny"
    ids = input_ids(base)
    torch.testing.assert_close(logits(loaded, ids), logits(ours, ids), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_peft_saved_adapter_loads_in_ours(case, tmp_path):
    build, targets, rslora = CASES[case]
    base, _, peft_model = ours_and_peft(build, targets, rslora)
    peft_model.save_pretrained(tmp_path / "adapter")
    ours = lora.load_adapter(copy.deepcopy(base), tmp_path / "adapter")
    ids = input_ids(base)
    torch.testing.assert_close(logits(ours, ids), logits(peft_model, ids), atol=ATOL, rtol=0)
    assert lora.count_trainable(ours) == peft_model.get_nb_trainable_parameters()[0]


def test_peft_adapter_with_rank_pattern_loads_with_per_layer_rank(tmp_path):
    base = tiny_llama()
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        rank_pattern={"v_proj": 2},
    )
    peft_model = get_peft_model(copy.deepcopy(base), config).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    peft_model.save_pretrained(tmp_path / "adapter")
    ours = lora.load_adapter(copy.deepcopy(base), tmp_path / "adapter")
    ranks = {name.rsplit(".", 1)[-1]: layer.r for name, layer in lora.lora_layers(ours).items()}
    assert ranks == {"q_proj": 4, "v_proj": 2}
    ids = input_ids(base)
    torch.testing.assert_close(logits(ours, ids), logits(peft_model, ids), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_adapter_merged_unmerged_and_unloaded_agree_and_differ_from_base(case):
    build, targets, rslora = CASES[case]
    base, ours, peft_model = ours_and_peft(build, targets, rslora)
    ids = input_ids(base)
    base_logits, adapter_logits = logits(base, ids), logits(ours, ids)
    assert (adapter_logits - base_logits).abs().max() > 1e-2

    lora.merge_lora(ours, unload=False)
    assert all(layer.merged for layer in lora.lora_layers(ours).values())
    torch.testing.assert_close(logits(ours, ids), adapter_logits, **MERGED)

    lora.unmerge_lora(ours)
    torch.testing.assert_close(logits(ours, ids), adapter_logits, **MERGED)
    restored = {
        k.replace(".base_layer", ""): v for k, v in ours.state_dict().items() if ".lora_" not in k
    }
    assert restored.keys() == base.state_dict().keys()
    for name, weight in base.state_dict().items():
        torch.testing.assert_close(restored[name], weight, atol=1e-6, rtol=0)

    plain = lora.merge_lora(ours)
    assert lora.lora_layers(plain) == {}
    assert plain.state_dict().keys() == base.state_dict().keys()
    torch.testing.assert_close(logits(plain, ids), adapter_logits, **MERGED)
    peft_merged = peft_model.merge_and_unload()
    for name, weight in peft_merged.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[name], weight, atol=1e-6, rtol=0)


def test_dropout_draws_the_same_mask_as_peft_in_training_mode():
    seed_everything(0)  # the same weights and input whatever ran before
    base = torch.nn.Linear(16, 12)
    ours = lora.LoRALinear(copy.deepcopy(base), r=4, alpha=8, dropout=0.5)
    torch.nn.init.normal_(ours.lora_B.weight)
    wrapper = torch.nn.Sequential(copy.deepcopy(base))
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.5, target_modules=["0"])
    theirs = get_peft_model(wrapper, config).base_model.model[0]
    with torch.no_grad():
        theirs.lora_A["default"].weight.copy_(ours.lora_A.weight)
        theirs.lora_B["default"].weight.copy_(ours.lora_B.weight)
    x = torch.randn(5, 16)
    ours.train(), theirs.train()
    seed_everything(2)
    ours_out = ours(x)
    seed_everything(2)
    torch.testing.assert_close(ours_out, theirs(x), atol=ATOL, rtol=0)
    ours.eval()
    assert not torch.allclose(ours(x), ours_out, atol=1e-3)


def test_saved_config_is_what_peft_reads(tmp_path):
    base = tiny_gpt2()
    ours = lora.add_lora(copy.deepcopy(base), ["c_attn"], r=2, alpha=4, dropout=0.1)
    lora.save_adapter(ours, tmp_path / "a")
    config = json.loads((tmp_path / "a" / lora.CONFIG_NAME).read_text())
    parsed = LoraConfig.from_pretrained(tmp_path / "a")
    assert config["target_modules"] == ["c_attn"]
    assert parsed.target_modules == {"c_attn"}
    assert (parsed.r, parsed.lora_alpha, parsed.lora_dropout) == (2, 4, 0.1)
    assert parsed.fan_in_fan_out is True
    assert parsed.task_type == "CAUSAL_LM"
