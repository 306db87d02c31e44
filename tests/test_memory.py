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

from peftlab import activation_memory, lora, memory, presets

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


@pytest.mark.parametrize("name", list(presets.PRESETS))
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


def test_qlora_counts_peft_fp32_upcast_of_embeddings_norms_and_head():
    """prepare_model_for_kbit_training casts every non-quantized 16-bit parameter to fp32."""
    n = memory.count_params("llama-2-7b")
    embed_and_head = 2 * 32000 * 4096
    assert embed_and_head == 262_144_000
    norms = 65 * 4096
    linear = n - embed_and_head - norms
    b = memory.estimate("llama-2-7b", method="qlora", double_quant=False)
    assert b.frozen_weights == linear // 2 + 4 * (embed_and_head + norms)
    assert b.quantization_constants == linear // 64 * 4
    kept_16bit = memory.estimate(
        "llama-2-7b", method="qlora", double_quant=False, prepare_kbit=False
    )
    assert kept_16bit.frozen_weights == linear // 2 + 2 * (embed_and_head + norms)
    assert round((b.frozen_weights - kept_16bit.frozen_weights) / 1e9, 2) == 0.52
    lora = memory.estimate("llama-2-7b", method="lora")
    assert b.trainable_weights == lora.trainable_weights == 4 * 4_194_304


def test_qlora_checkpoints_by_default_as_prepare_model_for_kbit_training_does():
    default = memory.estimate("llama-2-7b", method="qlora")
    assert default == memory.estimate("llama-2-7b", method="qlora", gradient_checkpointing=True)
    assert (
        default.activations
        < memory.estimate("llama-2-7b", method="qlora", gradient_checkpointing=False).activations
    )
    assert memory.estimate("llama-2-7b", method="lora") == memory.estimate(
        "llama-2-7b", method="lora", gradient_checkpointing=False
    )


def test_korthikanti_formula_by_hand():
    s, b, h, a, layers, vocab = 512, 2, 4096, 32, 32, 32000
    per_layer = s * b * h * (34 + 5 * a * s / h)
    expected = layers * per_layer + s * b * vocab * 4
    assert activation_memory.korthikanti_bytes("llama-2-7b", b, s) == expected
    checkpointed = layers * 2 * s * b * h + per_layer + s * b * vocab * 4
    assert (
        activation_memory.korthikanti_bytes("llama-2-7b", b, s, gradient_checkpointing=True)
        == checkpointed
    )


def test_llama_layer_terms_by_hand():
    """Full fine-tuning in bf16 with SDPA: per token, 2 norms of (4h + 4 + 2h) + their outputs
    2h each, q, k, v and the output 2h each, a logsumexp per head, and 4 MLP tensors of 2i."""
    h, i, a, s, b = 4096, 11008, 32, 512, 1
    terms = activation_memory.activation_terms("llama-2-7b", b, s, precision="bf16")
    per_token = 2 * (4 * h + 4 + 2 * h) + 2 * 2 * h + 4 * 2 * h + 4 * a + 4 * 2 * i
    assert sum(terms["layer"].values()) == per_token * s * b
    eager = activation_memory.activation_terms(
        "llama-2-7b", b, s, precision="bf16", attn_implementation="eager"
    )
    scores = (4 + 2) * a * s * s * b  # fp32 softmax output and its bf16 copy
    # eager's o_proj keeps its input (2h), the same bytes as SDPA's kept output; no logsumexp
    assert sum(eager["layer"].values()) - sum(terms["layer"].values()) == scores - 4 * a * s * b
    # Korthikanti's GPT block (34 + 5as/h) sits between the two at s = 512
    sdpa_total = activation_memory.activation_bytes("llama-2-7b", b, s, precision="bf16")
    eager_total = activation_memory.activation_bytes(
        "llama-2-7b", b, s, precision="bf16", attn_implementation="eager"
    )
    assert sdpa_total < activation_memory.korthikanti_bytes("llama-2-7b", b, s) < eager_total


def test_fp32_doubles_the_16_bit_activations_roughly():
    bf16 = memory.estimate("llama-2-7b", precision="bf16", seq_len=512).activations
    fp32 = memory.estimate("llama-2-7b", precision="fp32", seq_len=512).activations
    assert 1.5 < fp32 / bf16 < 2


# --- the papers' recipes, each with its settings named -------------------------------------------
def test_qlora_paper_780_gb_for_65b_full_16_bit_finetuning():
    """QLoRA paper, introduction: LLaMA-65B full 16-bit fine-tuning needs "more than 780 GB":
    bf16 weights (2) and gradients (2) with fp32 Adam moments (8), 12 bytes per parameter."""
    b = memory.estimate("llama-65b", "full", precision="bf16", optimizer_precision="fp32")
    n = memory.count_params("llama-65b")
    assert (b.total - b.activations) == 12 * n
    assert 780e9 < b.total - b.activations < 790e9


def test_qlora_paper_65b_under_48_gb_with_its_own_recipe():
    """QLoRA paper: 65B fine-tuned on one 48 GB GPU with NF4 + double quantization, bf16
    adapters (r = 64 on every linear layer), paged 32-bit AdamW, checkpointing, batch 1."""
    recipe = dict(
        method="qlora", r=64, target_modules="all-linear", precision="bf16",
        optimizer="paged_adamw", optimizer_precision="fp32", gradient_checkpointing=True,
        batch_size=1, seq_len=512, prepare_kbit=False,
    )  # fmt: skip
    b = memory.estimate("llama-65b", **recipe)
    assert b.total < 48 * 2**30 and presets.fits(b.total)["48 GB workstation (RTX A6000/L40S)"]
    assert b.pageable == b.optimizer_states == memory.lora_params("llama-65b", 64, "all-linear") * 8
    assert b.gpu_floor == b.total - b.optimizer_states
    # peft's defaults (fp32 adapters and upcast embeddings) do not fit as comfortably
    peft_default = memory.estimate("llama-65b", "qlora", r=64, target_modules="all-linear")
    assert peft_default.total > b.total + 4e9


def test_qlora_paper_7b_4_bit_base_against_5048_mb():
    """QLoRA paper, section 2: the 4-bit LLaMA-7B base "consumes 5,048 MB". Term by term the
    weights give 3,866-4,692 MB (NF4 linears 3,238 MB; constants 103 MB with double
    quantization, 405 MB without; embeddings and head 524 MB in bf16, 1,049 MB in fp32); the
    paper's figure sits 7% above the largest of these, a measurement with more than weights."""
    lin = sum(t.count * t.d_in * t.d_out for t in memory.linear_layers("llama-7b"))
    assert round(lin / 2 / 1e6) == 3238

    def base(**kw):
        b = memory.estimate("llama-7b", "qlora", **kw)
        return (b.frozen_weights + b.quantization_constants) / 1e6

    assert round(base(prepare_kbit=False)) == 3866
    assert round(base()) == 4390
    assert round(base(double_quant=False)) == 4692
    assert 0.05 < 5048 / base(double_quant=False) - 1 < 0.08


def test_qlora_paper_lora_26_mb_is_bf16():
    """0.2% of LLaMA-7B's weights as bf16 adapters take "only 26 MB"."""
    assert round(0.002 * memory.count_params("llama-7b") * 2 / 1e6) == 27


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(precision="bf16", optimizer_precision="fp32"), 2 + 2 + 8),
        (dict(precision="bf16", optimizer="paged_adamw", optimizer_precision="fp32"), 12),
        (dict(precision="mixed", optimizer="paged_adamw8bit"), 2 + 2 + 4 + 2),
        (dict(precision="fp32", optimizer_precision="bf16"), 4 + 4 + 4),
    ],
)
def test_optimizer_precision_and_paged_optimizers(kwargs, expected):
    assert bytes_per_param(**kwargs) == expected


def test_paged_states_are_pageable_and_others_are_not():
    paged = memory.estimate("llama-2-7b", method="lora", optimizer="paged_adamw")
    plain = memory.estimate("llama-2-7b", method="lora", optimizer="adamw")
    assert paged.total == plain.total and plain.pageable == 0
    assert paged.pageable == paged.optimizer_states > 0
    assert paged.gpu_floor == plain.total - plain.optimizer_states
    assert set(paged.to_dict()) == {*memory.TERMS, "total"}


def test_llama_1_presets_published_shapes():
    assert memory.count_params("llama-7b") == memory.count_params("llama-2-7b") == 6_738_415_616
    assert memory.count_params("llama-65b") == 65_285_660_672  # "65.2B" (Touvron et al., 2023)


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
    cards = list(presets.GPUS)
    assert cards[:4] == ["RTX 4060 8 GB", "RTX 3060 12 GB", "T4 16 GB", "RTX 4060 Ti 16 GB"]
    assert list(presets.GPUS.values()) == sorted(presets.GPUS.values())  # smallest first
    assert presets.NO_BF16 == ("T4 16 GB",)
    assert (
        presets.fits(12 * 2**30)["RTX 3060 12 GB"]
        and not presets.fits(12 * 2**30 + 1)["RTX 3060 12 GB"]
    )
    assert presets.fits(23 * 2**30)["24 GB consumer (RTX 3090/4090)"]
    assert not presets.fits(25 * 2**30)["24 GB consumer (RTX 3090/4090)"]
    assert presets.fits(79 * 2**30)["H100 80 GB"] and not presets.fits(81 * 2**30)["H100 80 GB"]


def test_smallest_gpu_is_the_first_card_that_holds_the_total():
    """One answer to "which card do I need": the smallest listed that holds the bytes, the
    boundary included (a card sold as N GB holds N GiB); None past the largest."""
    assert presets.smallest_gpu(0) == "RTX 4060 8 GB"
    assert presets.smallest_gpu(12 * 2**30) == "RTX 3060 12 GB"
    assert presets.smallest_gpu(12 * 2**30 + 1) == "T4 16 GB"  # the first of the 16 GB cards
    assert presets.smallest_gpu(80 * 2**30) == "A100 80 GB"
    assert presets.smallest_gpu(80 * 2**30 + 1) is None
    for total in (5 * 2**30, 20 * 2**30, 45 * 2**30):
        gpu = presets.smallest_gpu(total)
        assert presets.fits(total)[gpu]
        smaller = list(presets.GPUS)[: list(presets.GPUS).index(gpu)]
        assert not any(presets.fits(total)[g] for g in smaller)


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
        (dict(optimizer="lion"), "optimizer='lion'.*adamw, adamw8bit, paged_adamw"),
        (dict(optimizer_precision="fp16"), "optimizer_precision='fp16'.*fp32, bf16"),
        (dict(attn_implementation="flash"), "attn_implementation='flash'.*sdpa, eager"),
        (dict(gradient_checkpointing="yes"), "gradient_checkpointing='yes'.*True or False"),
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
