"""Parameter counts and training-memory math for transformer language models.

Everything here is arithmetic on a transformers config, so a 70B model costs nothing to
"measure". Sizes are bytes; formatting (GB = 1e9, GiB = 2**30) happens at the edges.

Sources for the per-parameter costs (see each function's docstring):
- ZeRO (Rajbhandari et al., arXiv 1910.02054, section 3.1): mixed-precision Adam keeps
  16-bit weights (2), 16-bit gradients (2) and K = 12 bytes of optimizer state (fp32 master
  weights 4 + momentum 4 + variance 4): 16 bytes per parameter.
- Hugging Face, "Model training anatomy": weights 6 (fp32 + 16-bit copy), gradients 4,
  AdamW 8: 18 bytes per parameter.
- Korthikanti et al., "Reducing activation recomputation" (arXiv 2205.05198): activations.
- QLoRA (Dettmers et al., arXiv 2305.14314): NF4 blocks of 64, double quantization.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peftlab.lora import find_targets, is_all_linear, target_matches
from peftlab.quiet import known_warnings

METHODS = ("full", "lora", "qlora")
PRECISIONS = ("mixed", "bf16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit", "sgd_momentum", "sgd")
ACCOUNTINGS = ("zero", "hf")

NF4_BLOCKSIZE = 64
DOUBLE_QUANT_BLOCKSIZE = 256
NF4_BYTES_PER_PARAM = 0.5
FP32_BYTES = 4
HALF_BYTES = 2

# Nominal capacity as the card reports it (nvidia-smi shows GiB: 24 GB cards have 24 GiB).
GPUS: dict[str, int] = {
    "24 GB consumer (RTX 3090/4090)": 24 * 2**30,
    "A100 40 GB": 40 * 2**30,
    "48 GB workstation (RTX A6000/L40S)": 48 * 2**30,
    "A100 80 GB": 80 * 2**30,
    "H100 80 GB": 80 * 2**30,
}

_LLAMA_LIKE = ("llama", "mistral", "qwen2")
_DEFAULT_TARGETS = {kind: ("q_proj", "v_proj") for kind in _LLAMA_LIKE} | {"gpt2": ("c_attn",)}
_ASSETS = Path(__file__).resolve().parent / "assets"

# Published shapes (from each model's config.json on the Hugging Face hub).
_PRESETS: dict[str, dict[str, Any]] = {
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


@dataclass(frozen=True)
class Breakdown:
    """Training memory in bytes, one field per term; `total` is their sum."""

    frozen_weights: int
    trainable_weights: int
    gradients: int
    optimizer_states: int
    master_weights: int
    activations: int
    quantization_constants: int

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def preset(name: str | os.PathLike | Any) -> Any:
    """Return a transformers config for a preset name, a config.json path or folder, or a config.

    Presets: llama-2-7b, llama-2-13b, llama-2-70b, mistral-7b, smollm2-135m, qwen2.5-0.5b,
    two random-weight shapes for CPU measurements (tiny-random-llama, random-llama-100m), and
    peftlab-base (the embedded model, read from src/peftlab/assets/base-model/config.json).
    """
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(name, PretrainedConfig):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"{name!r}: expected a preset name, a config.json path or a config")
    key = str(name).lower()
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
    if kind in _LLAMA_LIKE:
        return _llama_linears(config)
    if kind == "gpt2":
        return _gpt2_linears(config)
    return _meta_linears(config)


def count_params(config: Any) -> int:
    """Exact parameter count: linear layers + embeddings + norms (+ untied output head)."""
    config = preset(config)
    kind = config.model_type
    linears = sum(layer.params for layer in linear_layers(config))
    if kind in _LLAMA_LIKE:
        h, n_layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
        norms = (2 * n_layers + 1) * h  # RMSNorm: one weight vector each
        head = 0 if config.tie_word_embeddings else vocab * h
        return vocab * h + linears + norms + head
    if kind == "gpt2":
        h, n_layers = config.n_embd, config.n_layer
        embeddings = config.vocab_size * h + config.n_positions * h
        norms = (2 * n_layers + 1) * 2 * h  # LayerNorm: weight and bias
        head = 0 if config.tie_word_embeddings else config.vocab_size * h
        return embeddings + linears + norms + head
    return _meta_count(config)


def default_targets(config: Any) -> list[str]:
    """peft's default LoRA targets for this architecture (q_proj, v_proj for Llama)."""
    config = preset(config)
    if config.model_type in _DEFAULT_TARGETS:  # copied so the CLI need not import peft
        return list(_DEFAULT_TARGETS[config.model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as targets

    if config.model_type not in targets:
        raise ValueError(f"{config.model_type}: no default LoRA targets; name target_modules")
    return list(targets[config.model_type])


def lora_params(
    config: Any, r: int, target_modules: str | list[str] | tuple[str, ...] | None = None
) -> int:
    r"""Trainable LoRA parameters: r * (d_in + d_out) for every adapted matrix (Hu et al., 2021).

    `target_modules` follows peft's rule, as `lora.add_lora` does (`lora.target_matches`): a list
    names layers (["q_proj", "v_proj"]), a string is a regular expression for whole module names
    (r".*\.(q|v)_proj"), "all-linear" is every linear layer but the output head, and None means
    peft's default targets.
    """
    config = preset(config)
    if target_modules is None:
        target_modules = default_targets(config)
    return sum(r * (t.d_in + t.d_out) * t.count for t in _targeted(config, r, target_modules))


def houlsby_adapter_params(config: Any, bottleneck: int = 64) -> int:
    """Houlsby et al. (2019) adapters: two per layer, each d -> m -> d with biases: 2md + m + d.

    peft does not ship these bottleneck adapters, so they are counted here by formula.
    """
    if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck <= 0:
        raise ValueError(f"bottleneck={bottleneck}: adapter size must be a positive integer")
    h, _, n_layers, _ = _dims(preset(config))
    return n_layers * 2 * (2 * h * bottleneck + bottleneck + h)


def peft_trainable(config: Any, peft_config: Any) -> int:
    """Trainable parameters peft reports for `peft_config` on `config`'s model (meta device)."""
    from peft import get_peft_model

    with known_warnings():
        model = get_peft_model(meta_model(config), peft_config)
    return model.get_nb_trainable_parameters()[0]


def estimate(
    config: Any,
    method: str = "full",
    r: int = 8,
    target_modules: str | list[str] | tuple[str, ...] | None = None,
    precision: str = "mixed",
    optimizer: str = "adamw",
    batch_size: int = 1,
    seq_len: int = 512,
    gradient_checkpointing: bool = False,
    double_quant: bool = True,
    accounting: str = "zero",
) -> Breakdown:
    """Bytes needed to train `config` with `method`, term by term (see Breakdown).

    Ψ = all parameters, T = trainable ones (Ψ for full, lora_params for LoRA/QLoRA).
    - frozen_weights: 0 (full); Ψ_base * w (LoRA), w = 2 for mixed/bf16, 4 for fp32; QLoRA:
      0.5 byte per quantized linear weight (NF4) and w bytes for the rest (embeddings, norms,
      output head, biases), as transformers + bitsandbytes load them.
    - trainable_weights: T * w for full (the 16-bit working copy in mixed precision);
      LoRA/QLoRA adapters are fp32 (4) in mixed precision because peft upcasts them.
    - master_weights: full + mixed only: 4T (fp32 copy the optimizer updates).
    - gradients: T * 2 (ZeRO, mixed) or T * 4 (HF accounting: fp32 .grad under torch AMP);
      bf16: 2T; fp32: 4T; LoRA/QLoRA mixed: 4T (gradients match the fp32 adapters).
    - optimizer_states: AdamW 2 states of 4 bytes (2 bytes in pure bf16); 8-bit AdamW 2 bytes;
      SGD with momentum one state; SGD none.
    - activations: Korthikanti et al.: per layer s*b*h*(34 + 5*a*s/h) bytes in 16-bit
      (doubled in fp32); with gradient checkpointing 2*s*b*h per layer plus one layer
      recomputed; plus fp32 logits s*b*V*4 for the loss.
    - quantization_constants: QLoRA only: one fp32 absmax per 64 weights (0.5 bit/param), or
      with double quantization one byte per block plus fp32 per 256 blocks (0.127 bit/param).
    ZeRO's mixed AdamW sums to 16 bytes/param and HF's to 18 (`accounting="hf"`); the 2 bytes
    between them are the gradients, 16-bit in ZeRO, fp32 in PyTorch AMP. The QLoRA paper's own
    recipe keeps bf16 adapters with 32-bit AdamW states (2 + 2 + 8 bytes per adapter parameter);
    peft's fp32 adapters cost 4 + 4 + 8, a difference of a few MB since T is small.
    """
    config = preset(config)
    _check_choice("method", method, METHODS)
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("accounting", accounting, ACCOUNTINGS)
    for label, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{label}={value}: must be a positive integer")

    w = FP32_BYTES if precision == "fp32" else HALF_BYTES
    total_params = count_params(config)
    activations = activation_bytes(config, batch_size, seq_len, gradient_checkpointing)
    if precision == "fp32":
        activations *= 2

    if method == "full":
        trainable = total_params
        grad_bytes = {"fp32": 4, "bf16": 2, "mixed": 4 if accounting == "hf" else 2}[precision]
        return Breakdown(
            frozen_weights=0,
            trainable_weights=trainable * w,
            gradients=trainable * grad_bytes,
            optimizer_states=trainable * _optimizer_bytes(optimizer, precision),
            master_weights=trainable * FP32_BYTES if precision == "mixed" else 0,
            activations=activations,
            quantization_constants=0,
        )

    trainable = lora_params(config, r, target_modules)
    adapter_bytes = FP32_BYTES if precision in ("mixed", "fp32") else HALF_BYTES
    if method == "lora":
        frozen, constants = total_params * w, 0
    else:
        quantized = linear_layers(config)
        n_quantized = sum(t.count * t.d_in * t.d_out for t in quantized)
        frozen = int(n_quantized * NF4_BYTES_PER_PARAM) + (total_params - n_quantized) * w
        constants = sum(
            t.count * quant_constant_bytes(t.d_in * t.d_out, double_quant) for t in quantized
        )
    return Breakdown(
        frozen_weights=frozen,
        trainable_weights=trainable * adapter_bytes,
        gradients=trainable * adapter_bytes,
        optimizer_states=trainable * _optimizer_bytes(optimizer, precision, adapter_bytes),
        master_weights=0,
        activations=activations,
        quantization_constants=constants,
    )


def quant_constant_bytes(numel: int, double_quant: bool = True) -> int:
    """Bytes of NF4 scaling constants for one weight tensor of `numel` values (QLoRA, section 3).

    Without double quantization: one fp32 absmax per block of 64. With it: the absmax values are
    themselves quantized to 8 bits (one byte per block) with an fp32 constant per 256 blocks.
    """
    blocks = math.ceil(numel / NF4_BLOCKSIZE)
    if not double_quant:
        return blocks * FP32_BYTES
    return blocks + math.ceil(blocks / DOUBLE_QUANT_BLOCKSIZE) * FP32_BYTES


def activation_bytes(
    config: Any, batch_size: int, seq_len: int, gradient_checkpointing: bool = False
) -> int:
    """16-bit activations kept for the backward pass (Korthikanti et al., 2022, table 2).

    Per layer without recomputation: s*b*h*(34 + 5*a*s/h); with full recomputation only each
    layer's input, 2*s*b*h, is kept, plus one layer's activations while it is recomputed.
    The fp32 logits the loss keeps add s*b*V*4.
    """
    h, a, n_layers, vocab = _dims(preset(config))
    s, b = seq_len, batch_size
    per_layer = s * b * h * 34 + 5 * a * s * s * b
    logits = s * b * vocab * FP32_BYTES
    if gradient_checkpointing:
        return n_layers * 2 * s * b * h + per_layer + logits
    return n_layers * per_layer + logits


def fits(total_bytes: int) -> dict[str, bool]:
    """Which common GPUs hold `total_bytes` (nominal capacity; CUDA's own ~0.5-1 GB not counted)."""
    return {gpu: total_bytes <= capacity for gpu, capacity in GPUS.items()}


def _optimizer_bytes(optimizer: str, precision: str, param_bytes: int | None = None) -> int:
    """Bytes of optimizer state per trainable parameter (HF "Model training anatomy")."""
    state_bytes = param_bytes or (HALF_BYTES if precision == "bf16" else FP32_BYTES)
    return {"adamw": 2 * state_bytes, "adamw8bit": 2, "sgd_momentum": state_bytes, "sgd": 0}[
        optimizer
    ]


def _check_choice(label: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{label}={value!r}: unknown; choose one of {', '.join(valid)}")


def _dims(config: Any) -> tuple[int, int, int, int]:
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


def _meta_count(config: Any) -> int:
    return sum(p.numel() for p in meta_model(config).parameters())


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


def _targeted(config: Any, r: int, target_modules: Any) -> list[LinearShape]:
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
