"""peftlab.memory: exact counts against models built on the meta device and against peft."""

import pytest
from peft import LoraConfig, get_peft_model
from transformers import (
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Qwen2Config,
)

from peftlab import lora, memory

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2)


def tiny_llama(**overrides) -> LlamaConfig:
    return LlamaConfig(**{**TINY, "num_attention_heads": 4, **overrides})


def tiny_configs() -> dict[str, object]:
    return {
        "llama": tiny_llama(),
        "llama-biases": tiny_llama(attention_bias=True, mlp_bias=True),
        "llama-tied": tiny_llama(tie_word_embeddings=True),
        "mistral-gqa": MistralConfig(**TINY, num_attention_heads=8, num_key_value_heads=2),
        "qwen2-biases": Qwen2Config(**TINY, num_attention_heads=4, num_key_value_heads=2),
        "gpt2-tied-conv1d": GPT2Config(vocab_size=256, n_embd=64, n_layer=2, n_head=4),
        "opt-unknown": OPTConfig(
            vocab_size=256,
            hidden_size=64,
            ffn_dim=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=64,
        ),
    }


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(tiny_configs()))
def test_count_params_equals_meta_model(name):
    config = tiny_configs()[name]
    assert memory.count_params(config) == numel(memory.meta_model(config))


@pytest.mark.parametrize("name", list(memory.PRESETS))
def test_presets_count_equals_meta_model(name):
    assert memory.count_params(name) == numel(memory.meta_model(memory.preset(name)))


def test_llama_2_7b_published_counts():
    assert memory.count_params("llama-2-7b") == 6_738_415_616
    assert memory.lora_params("llama-2-7b", 8, ["q_proj", "v_proj"]) == 4_194_304
    # Hu et al.: 2 * L * d_model * r for L adapted square matrices (2 per layer, 32 layers).
    assert 2 * (2 * 32) * 4096 * 8 == 4_194_304


def test_llama_2_7b_lora_matches_peft_on_meta():
    model = get_peft_model(memory.meta_model(memory.preset("llama-2-7b")), LoraConfig(r=8))
    trainable, total = model.get_nb_trainable_parameters()
    assert trainable == memory.lora_params("llama-2-7b", 8, memory.default_targets("llama-2-7b"))
    assert total == 6_742_609_920


@pytest.mark.parametrize(
    ("name", "targets", "r"),
    [
        ("llama", ["q_proj", "v_proj"], 8),
        ("llama", "all-linear", 4),
        ("mistral-gqa", ["k_proj", "v_proj"], 16),
        ("mistral-gqa", "all-linear", 8),
        ("qwen2-biases", ["q_proj", "k_proj", "v_proj", "o_proj"], 2),
        ("gpt2-tied-conv1d", ["c_attn"], 8),
        ("gpt2-tied-conv1d", "all-linear", 4),
        ("opt-unknown", ["q_proj", "v_proj"], 8),
        ("opt-unknown", "all-linear", 8),
    ],
)
def test_lora_params_equals_peft_trainable_count(name, targets, r):
    config = tiny_configs()[name]
    model = get_peft_model(memory.meta_model(config), LoraConfig(r=r, target_modules=targets))
    trainable, _ = model.get_nb_trainable_parameters()
    assert memory.lora_params(config, r, targets) == trainable


@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("llama", r".*\.(q|v)_proj"),
        ("llama", r"model\.layers\.1\..*_proj"),
        ("llama", ["q_proj", "v_proj"]),
        ("llama", ["layers.0.mlp.down_proj", "k_proj"]),
        ("llama", "all-linear"),
        ("gpt2-tied-conv1d", r".*\.c_(attn|proj)"),
        ("gpt2-tied-conv1d", ["c_fc"]),
        ("gpt2-tied-conv1d", "all-linear"),
        ("opt-unknown", r".*self_attn\.(q|v)_proj"),
        ("opt-unknown", ["q_proj", "v_proj"]),
        ("opt-unknown", "ALL-LINEAR"),
    ],
)
def test_memory_lora_and_peft_select_the_same_layers(name, targets):
    """One rule (lora.target_matches): a string is a regex, a list names layers, all-linear."""
    config = tiny_configs()[name]
    counted = lora.lora_param_count(memory.meta_model(config), targets, r=2)
    assert memory.lora_params(config, 2, targets) == counted
    model = get_peft_model(memory.meta_model(config), LoraConfig(r=2, target_modules=targets))
    assert model.get_nb_trainable_parameters()[0] == counted


def test_a_string_that_matches_nothing_says_how_to_name_layers():
    config = tiny_configs()["llama"]
    hint = r"regular expression.*pass a list such as \['q_proj'\]"
    with pytest.raises(ValueError, match=hint):
        memory.lora_params(config, 2, "q_proj")
    with pytest.raises(ValueError, match=hint):
        lora.add_lora(memory.meta_model(config), "q_proj", r=2, alpha=2)
    assert memory.lora_params(config, 2, ["q_proj"]) == 2 * 2 * (64 + 64)


@pytest.mark.parametrize("name", list(tiny_configs()))
def test_default_targets_are_peft_defaults(name):
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_map

    config = tiny_configs()[name]
    assert memory.default_targets(config) == peft_map[config.model_type]


def test_gqa_keys_and_values_are_narrower():
    config = tiny_configs()["mistral-gqa"]  # 8 heads of 8, 2 key/value heads: k, v are 64 -> 16
    per_layer = 4 * (64 + 16)
    assert memory.lora_params(config, 4, ["k_proj"]) == 2 * per_layer
    assert memory.lora_params(config, 4, ["q_proj"]) == 2 * 4 * (64 + 64)


def bytes_per_param(**kwargs) -> float:
    b = memory.estimate("llama-2-7b", **kwargs)
    return (b.total - b.activations) / memory.count_params("llama-2-7b")


def test_zero_mixed_adamw_is_16_bytes_per_param():
    b = memory.estimate("llama-2-7b", precision="mixed", optimizer="adamw")
    n = memory.count_params("llama-2-7b")
    assert (b.trainable_weights, b.gradients) == (2 * n, 2 * n)
    assert b.master_weights + b.optimizer_states == 12 * n  # ZeRO's K = 12
    assert bytes_per_param() == 16
    assert 16 * 7.5e9 == 120e9  # ZeRO's example: a 7.5B model needs 120 GB


def test_hf_accounting_is_18_bytes_per_param_and_differs_in_gradients():
    zero = memory.estimate("llama-2-7b", accounting="zero")
    hf = memory.estimate("llama-2-7b", accounting="hf")
    n = memory.count_params("llama-2-7b")
    assert bytes_per_param(accounting="hf") == 18
    assert hf.trainable_weights + hf.master_weights == 6 * n  # fp32 + 16-bit copy
    assert hf.gradients - zero.gradients == 2 * n
    assert hf.optimizer_states == zero.optimizer_states == 8 * n


@pytest.mark.parametrize(
    ("precision", "optimizer", "expected"),
    [
        ("fp32", "adamw", 4 + 4 + 8),
        ("bf16", "adamw", 2 + 2 + 4),
        ("mixed", "adamw8bit", 2 + 2 + 4 + 2),
        ("fp32", "sgd_momentum", 4 + 4 + 4),
        ("fp32", "sgd", 4 + 4),
    ],
)
def test_other_precisions_and_optimizers(precision, optimizer, expected):
    assert bytes_per_param(precision=precision, optimizer=optimizer) == expected


def test_nf4_constant_overhead_matches_qlora_paper():
    n = 64 * 256 * 10
    assert memory.quant_constant_bytes(n, double_quant=False) * 8 / n == 0.5
    assert memory.quant_constant_bytes(n, double_quant=True) * 8 / n == 0.126953125
    assert memory.quant_constant_bytes(65, double_quant=False) == 8  # a partial block counts


def test_qlora_keeps_embeddings_and_head_in_16_bit():
    n = memory.count_params("llama-2-7b")
    embed_and_head = 2 * 32000 * 4096
    norms = 65 * 4096
    linear = n - embed_and_head - norms
    b = memory.estimate("llama-2-7b", method="qlora", double_quant=False)
    assert b.frozen_weights == linear // 2 + 2 * (embed_and_head + norms)
    assert b.quantization_constants == linear // 64 * 4
    lora = memory.estimate("llama-2-7b", method="lora")
    assert b.trainable_weights == lora.trainable_weights == 4 * 4_194_304


def test_activation_formula_by_hand():
    s, b, h, a, layers, vocab = 512, 2, 4096, 32, 32, 32000
    per_layer = s * b * h * (34 + 5 * a * s / h)
    expected = layers * per_layer + s * b * vocab * 4
    assert memory.activation_bytes("llama-2-7b", b, s) == expected
    checkpointed = layers * 2 * s * b * h + per_layer + s * b * vocab * 4
    assert memory.activation_bytes("llama-2-7b", b, s, gradient_checkpointing=True) == checkpointed
    fp32 = memory.estimate("llama-2-7b", precision="fp32", batch_size=b, seq_len=s)
    assert fp32.activations == 2 * expected


def test_total_is_the_sum_and_dict_has_every_term():
    b = memory.estimate("smollm2-135m", method="qlora")
    d = b.to_dict()
    assert d["total"] == sum(v for k, v in d.items() if k != "total") == b.total
    assert set(d) == {
        "frozen_weights",
        "trainable_weights",
        "gradients",
        "optimizer_states",
        "master_weights",
        "activations",
        "quantization_constants",
        "total",
    }


def test_fits():
    assert memory.fits(23 * 2**30)["24 GB consumer (RTX 3090/4090)"]
    assert not memory.fits(25 * 2**30)["24 GB consumer (RTX 3090/4090)"]
    assert memory.fits(79 * 2**30)["H100 80 GB"] and not memory.fits(81 * 2**30)["H100 80 GB"]


def test_preset_accepts_paths_and_configs(tmp_path):
    config = tiny_configs()["qwen2-biases"]
    config.save_pretrained(tmp_path)
    expected = numel(memory.meta_model(config))
    assert memory.count_params(memory.preset(tmp_path)) == expected
    assert memory.count_params(memory.preset(tmp_path / "config.json")) == expected
    assert memory.preset(config) is config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="prefix"), "method='prefix'.*full, lora, qlora"),
        (dict(precision="fp8"), "precision='fp8'.*mixed, bf16, fp32"),
        (dict(optimizer="lion"), "optimizer='lion'.*adamw, adamw8bit"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(seq_len=-5), "seq_len=-5"),
        (dict(method="lora", r=0), "r=0"),
        (dict(method="lora", r=-2), "r=-2"),
        (dict(method="lora", r=33, target_modules=["k_proj"]), "r=33.*r <= 32"),
        (dict(method="lora", target_modules=["query"]), "has no query.*q_proj"),
        (dict(method="qlora", target_modules=[]), "target_modules"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(kwargs, message):
    config = tiny_llama(num_key_value_heads=2)  # k_proj: 64 -> 32
    with pytest.raises(ValueError, match=message):
        memory.estimate(config, **kwargs)


def test_architecture_that_cannot_be_built_is_a_clear_error():
    from transformers import ViTConfig

    with pytest.raises(ValueError, match="model_type='vit': not a causal language model") as err:
        memory.count_params(ViTConfig())
    assert "\n" not in str(err.value)


def test_unknown_model_lists_presets():
    with pytest.raises(ValueError, match="llama-2-7b.*qwen2.5-0.5b"):
        memory.preset("gpt-5")


def test_rank_at_the_smallest_dimension_is_allowed():
    config = tiny_llama(num_key_value_heads=2)
    assert memory.lora_params(config, 32, ["k_proj"]) == 2 * 32 * (64 + 32)
    q, k, v, o, gate, up, down = (
        (64, 64),
        (64, 32),
        (64, 32),
        (64, 64),
        (64, 160),
        (64, 160),
        (160, 64),
    )
    per_layer = sum(sum(pair) for pair in (q, k, v, o, gate, up, down))
    assert memory.lora_params(config, 1, "all-linear") == 2 * per_layer


def test_peft_trainable_for_prompt_and_ia3_methods():
    from peft import IA3Config, PrefixTuningConfig, TaskType

    prefix = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20)
    # a key and a value vector of width 4096 per virtual token, in each of 32 layers
    assert memory.peft_trainable("llama-2-7b", prefix) == 20 * 2 * 32 * 4096
    ia3 = IA3Config(task_type=TaskType.CAUSAL_LM)  # vectors on k_proj, v_proj, down_proj
    assert memory.peft_trainable("llama-2-7b", ia3) == 32 * (4096 + 4096 + 11008)


def test_houlsby_adapters_by_hand():
    down, up = 4096 * 64 + 64, 64 * 4096 + 4096  # weights and biases of each projection
    assert memory.houlsby_adapter_params("llama-2-7b", 64) == 32 * 2 * (down + up)
    with pytest.raises(ValueError, match="bottleneck=0"):
        memory.houlsby_adapter_params("llama-2-7b", 0)
