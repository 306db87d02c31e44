"""The models and GPUs the memory arithmetic knows, and the choices a training run makes.

A preset is a published model's shape (its transformers config, no weights); `preset` also reads
any config.json. From a config come its linear layers (`linear_layers`), the ones LoRA adapts
(`targeted_layers`, peft's matching rule) and a model built on the meta device (`meta_model`).
`GPUS` lists common cards by capacity, and `smallest_gpu` names the first that holds a total.

Units, once for the whole course: GB = 1e9 bytes and GiB = 2**30 bytes; a card sold as "N GB"
holds N GiB (nvidia-smi reports 24,564 MiB on a 24 GB RTX 4090), which is how `GPUS` lists
capacity. `memory` counts parameters and training bytes from these shapes; `activation_memory`
counts what autograd saves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.lora import find_targets, is_all_linear, target_matches

# The choices a training run makes (`memory.estimate`'s options).
METHODS = ("full", "lora", "qlora")
PRECISIONS = ("mixed", "bf16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw", "paged_adamw8bit", "sgd_momentum", "sgd")
OPTIMIZER_PRECISIONS = ("fp32", "bf16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
ACCOUNTINGS = ("zero", "hf")

FP32_BYTES = 4
HALF_BYTES = 2

# Nominal capacity, smallest first: a card sold as "N GB" holds N GiB (see the module docstring).
# CUDA's own context (about 0.5-1 GB) is not subtracted.
GPUS: dict[str, int] = {
    "RTX 4060 8 GB": 8 * 2**30,
    "RTX 3060 12 GB": 12 * 2**30,
    "T4 16 GB": 16 * 2**30,
    "RTX 4060 Ti 16 GB": 16 * 2**30,
    "24 GB consumer (RTX 3090/4090)": 24 * 2**30,
    "A100 40 GB": 40 * 2**30,
    "48 GB workstation (RTX A6000/L40S)": 48 * 2**30,
    "A100 80 GB": 80 * 2**30,
    "H100 80 GB": 80 * 2**30,
}
# Cards without bf16 arithmetic (Turing and older): train with fp16 compute (and a loss scaler).
NO_BF16 = ("T4 16 GB",)

LLAMA_LIKE = ("llama", "mistral", "qwen2")
_DEFAULT_TARGETS = {kind: ("q_proj", "v_proj") for kind in LLAMA_LIKE} | {"gpt2": ("c_attn",)}
_ASSETS = Path(__file__).resolve().parent / "assets"

# Published shapes (from each model's config.json on the Hugging Face hub).
_PRESETS: dict[str, dict[str, Any]] = {
    # LLaMA-1 (Touvron et al., 2023, table 2), the models the QLoRA paper fine-tuned.
    "llama-7b": dict(
        model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=2048,
    ),
    "llama-65b": dict(
        model_type="llama", vocab_size=32000, hidden_size=8192, intermediate_size=22016,
        num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=64,
        max_position_embeddings=2048,
    ),
    "llama-2-7b": dict(
        model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
    ),
    "llama-2-13b": dict(
        model_type="llama", vocab_size=32000, hidden_size=5120, intermediate_size=13824,
        num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
    ),
    "llama-2-70b": dict(
        model_type="llama", vocab_size=32000, hidden_size=8192, intermediate_size=28672,
        num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
    ),
    "mistral-7b": dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
    ),
    "smollm2-135m": dict(
        model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    # Shapes of our own, built with random weights to measure memory on a CPU.
    "tiny-random-llama": dict(
        model_type="llama", vocab_size=2048, hidden_size=192, intermediate_size=512,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "random-llama-100m": dict(
        model_type="llama", vocab_size=32000, hidden_size=768, intermediate_size=2048,
        num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
        tie_word_embeddings=True,
    ),
}  # fmt: skip
EMBEDDED_PRESET = "peftlab-base"
EMBEDDED_CONFIG = _ASSETS / "base-model" / "config.json"
PRESETS = (*_PRESETS, EMBEDDED_PRESET)


@dataclass(frozen=True)
class LinearShape:
    """`count` linear layers called `name`, each mapping `d_in` features to `d_out`."""

    name: str
    d_in: int
    d_out: int
    bias: bool
    count: int

    @property
    def params(self) -> int:
        return self.count * (self.d_in * self.d_out + (self.d_out if self.bias else 0))


# The names the rest of the course gives the two models it runs (`--model smollm2|embedded`).
PRESET_ALIASES = {"smollm2": "smollm2-135m", "embedded": "peftlab-base"}


def preset(name: str | os.PathLike | Any) -> Any:
    """Return a transformers config for a preset name, a config.json path or folder, or a config.

    Presets: llama-7b and llama-65b (LLaMA-1, the QLoRA paper's models), llama-2-7b, llama-2-13b,
    llama-2-70b, mistral-7b, smollm2-135m, qwen2.5-0.5b,
    two random-weight shapes for CPU measurements (tiny-random-llama, random-llama-100m), and
    peftlab-base (the embedded model, read from src/peftlab/assets/base-model/config.json);
    "smollm2" and "embedded" name the course's two models as `--model` does elsewhere.
    """
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(name, PretrainedConfig):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"{name!r}: expected a preset name, a config.json path or a config")
    key = str(name).lower()
    key = PRESET_ALIASES.get(key, key)
    if key in _PRESETS:
        fields = dict(_PRESETS[key])
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    path = EMBEDDED_CONFIG if key == EMBEDDED_PRESET else Path(name)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        fields = json.loads(path.read_text(encoding="utf-8"))
        if "model_type" not in fields:
            raise ValueError(f"{path}: config.json has no 'model_type'")
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    raise ValueError(
        f"model {str(name)!r}: unknown; use a preset ({', '.join(PRESETS)}) "
        "or a path to a config.json"
    )


def linear_layers(config: Any) -> list[LinearShape]:
    """The adaptable linear layers of the decoder (the output head excluded, as peft does)."""
    config = preset(config)
    kind = config.model_type
    if kind in LLAMA_LIKE:
        return _llama_linears(config)
    if kind == "gpt2":
        return _gpt2_linears(config)
    return _meta_linears(config)


def default_targets(config: Any) -> list[str]:
    """peft's default LoRA targets for this architecture (q_proj, v_proj for Llama)."""
    config = preset(config)
    if config.model_type in _DEFAULT_TARGETS:  # copied so the CLI need not import peft
        return list(_DEFAULT_TARGETS[config.model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as targets

    if config.model_type not in targets:
        raise ValueError(f"{config.model_type}: no default LoRA targets; name target_modules")
    return list(targets[config.model_type])


def fits(total_bytes: int) -> dict[str, bool]:
    """Which common GPUs hold `total_bytes` (nominal capacity; CUDA's own ~0.5-1 GB not counted)."""
    return {gpu: total_bytes <= capacity for gpu, capacity in GPUS.items()}


def smallest_gpu(total_bytes: int) -> str | None:
    """The first card of `GPUS` (smallest first) that holds `total_bytes`; None if none does.

    Nominal capacity, as `fits` counts it; whether the card computes in bf16 is `NO_BF16`'s
    to say.
    """
    return next((gpu for gpu, ok in fits(total_bytes).items() if ok), None)


def check_choice(label: str, value: str, valid: tuple[str, ...]) -> None:
    """A ValueError naming `label`'s bad `value` and the valid choices."""
    if value not in valid:
        raise ValueError(f"{label}={value!r}: unknown; choose one of {', '.join(valid)}")


def adapter_bytes(precision: str) -> int:
    """peft keeps adapters in fp32 unless the whole run is bf16 (the QLoRA paper's adapters)."""
    return HALF_BYTES if precision == "bf16" else FP32_BYTES


def dims(config: Any) -> tuple[int, int, int, int]:
    """hidden size, attention heads, layers, vocabulary (names differ between families)."""
    if config.model_type == "gpt2":
        return config.n_embd, config.n_head, config.n_layer, config.vocab_size
    return (
        config.hidden_size,
        config.num_attention_heads,
        config.num_hidden_layers,
        config.vocab_size,
    )


def _llama_linears(config: Any) -> list[LinearShape]:
    h, n = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q_out = config.num_attention_heads * head_dim
    kv_out = (config.num_key_value_heads or config.num_attention_heads) * head_dim
    inter = config.intermediate_size
    if config.model_type == "qwen2":
        qkv_bias, o_bias, mlp_bias = True, False, False
    else:
        qkv_bias = o_bias = bool(getattr(config, "attention_bias", False))
        mlp_bias = bool(getattr(config, "mlp_bias", False))
    return [
        LinearShape("q_proj", h, q_out, qkv_bias, n),
        LinearShape("k_proj", h, kv_out, qkv_bias, n),
        LinearShape("v_proj", h, kv_out, qkv_bias, n),
        LinearShape("o_proj", q_out, h, o_bias, n),
        LinearShape("gate_proj", h, inter, mlp_bias, n),
        LinearShape("up_proj", h, inter, mlp_bias, n),
        LinearShape("down_proj", inter, h, mlp_bias, n),
    ]


def _gpt2_linears(config: Any) -> list[LinearShape]:
    h, n = config.n_embd, config.n_layer
    inner = config.n_inner or 4 * h
    return [
        LinearShape("c_attn", h, 3 * h, True, n),  # Conv1D holding q, k and v side by side
        LinearShape("c_proj", h, h, True, n),
        LinearShape("c_fc", h, inner, True, n),
        LinearShape("c_proj", inner, h, True, n),
    ]


def meta_model(config: Any) -> Any:
    """A causal LM of `config`'s shape (a preset name, a config.json path or a config) built on
    the meta device: every layer and parameter shape, no memory, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = preset(config)
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError) as exc:
        raise ValueError(
            f"model_type={config.model_type!r}: not a causal language model transformers can "
            f"build; use a decoder's config.json or a preset ({', '.join(PRESETS)})"
        ) from exc


def _meta_linears(config: Any, target_modules: Any = None) -> list[LinearShape]:
    """Linear and Conv1D layers of a model built on the meta device, grouped by name and shape:
    all but the output head, or the ones `target_modules` selects (`lora.find_targets`)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    model = meta_model(config)
    if target_modules is None:
        head = model.get_output_embeddings()
        modules = [(n, m) for n, m in model.named_modules() if m is not head]
    else:
        modules = [(n, model.get_submodule(n)) for n in find_targets(model, target_modules)]
    groups: dict[tuple[str, int, int, bool], int] = {}
    for full_name, module in modules:
        if isinstance(module, torch.nn.Linear):
            d_in, d_out = module.in_features, module.out_features
        elif isinstance(module, Conv1D):
            d_in, d_out = module.weight.shape
        else:
            continue
        key = (full_name.rsplit(".", 1)[-1], d_in, d_out, module.bias is not None)
        groups[key] = groups.get(key, 0) + 1
    return [LinearShape(name, i, o, b, count) for (name, i, o, b), count in groups.items()]


def targeted_layers(config: Any, r: int, target_modules: Any) -> list[LinearShape]:
    """The linear layers LoRA adapts (`lora.target_matches` has the rule), after checking the
    rank against each of them."""
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"r={r}: LoRA rank must be a positive integer")
    if not isinstance(target_modules, str | list | tuple | set):
        raise ValueError(
            f"target_modules={target_modules!r}: give a list of layer names such as"
            ' ["q_proj", "v_proj"], a regular expression, or "all-linear"'
        )
    layers = linear_layers(config)
    if is_all_linear(target_modules):
        chosen = layers
    elif isinstance(target_modules, str) or any("." in t for t in target_modules):
        chosen = _meta_linears(config, target_modules)  # matched on full names: build them
    else:  # plain names match the last part of a full name, which is what LinearShape keeps
        names = {t.name for t in layers}
        missing = [m for m in target_modules if m not in names]
        if missing or not target_modules:
            raise ValueError(
                f"target_modules={list(target_modules)}: {config.model_type} has no "
                f"{', '.join(missing) or 'targets'}; its linear layers are "
                f"{', '.join(sorted(names))} (or use 'all-linear')"
            )
        chosen = [t for t in layers if target_matches(t.name, target_modules)]
    smallest = min(min(t.d_in, t.d_out) for t in chosen)
    if r > smallest:
        raise ValueError(
            f"r={r}: rank exceeds the smallest dimension of a target layer ({smallest}); "
            f"use r <= {smallest}"
        )
    return chosen
