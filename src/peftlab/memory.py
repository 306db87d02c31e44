"""Parameter counts and training-memory math for transformer language models.

Everything here is arithmetic on a transformers config, so a 70B model costs nothing to
"measure". Sizes are bytes; formatting happens at the edges. Units, once for the whole course:
GB = 1e9 bytes and GiB = 2**30 bytes; a card sold as "N GB" holds N GiB (nvidia-smi reports
24,564 MiB on a 24 GB RTX 4090), which is how `GPUS` lists capacity.

Sources for the per-parameter costs (see each function's docstring):
- ZeRO (Rajbhandari et al., arXiv 1910.02054, section 3.1): mixed-precision Adam keeps
  16-bit weights (2), 16-bit gradients (2) and K = 12 bytes of optimizer state (fp32 master
  weights 4 + momentum 4 + variance 4): 16 bytes per parameter.
- Hugging Face, "Model training anatomy": weights 6 (fp32 + 16-bit copy), gradients 4,
  AdamW 8: 18 bytes per parameter.
- Megatron-LM and DeepSpeed's bf16 optimizer accumulate gradients in fp32 (4 bytes), which is
  the 18-byte count too; 16 bytes holds when gradients are kept and reduced in 16 bits (ZeRO's
  fp16 recipe).
- QLoRA (Dettmers et al., arXiv 2305.14314): NF4 blocks of 64, double quantization, paged
  optimizers; its recipe: bf16 adapters, paged 32-bit AdamW, gradient checkpointing, batch 1.
- Activations: derived here for transformers' Llama block (see `activation_terms`) and checked
  against the bytes autograd saves (`peftlab.measure.saved_activation_bytes`); Korthikanti et
  al. (arXiv 2205.05198) give the GPT-block formula it replaces.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.lora import find_targets, is_all_linear, target_matches
from peftlab.quiet import known_warnings
from peftlab.sharding import check as check_sharding
from peftlab.sharding import per_device

METHODS = ("full", "lora", "qlora")
PRECISIONS = ("mixed", "bf16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw", "paged_adamw8bit", "sgd_momentum", "sgd")
OPTIMIZER_PRECISIONS = ("fp32", "bf16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
ACCOUNTINGS = ("zero", "hf")

NF4_BLOCKSIZE = 64
DOUBLE_QUANT_BLOCKSIZE = 256
NF4_BYTES_PER_PARAM = 0.5
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

_LLAMA_LIKE = ("llama", "mistral", "qwen2")
_DEFAULT_TARGETS = {kind: ("q_proj", "v_proj") for kind in _LLAMA_LIKE} | {"gpt2": ("c_attn",)}
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


TERMS = (
    "frozen_weights",
    "trainable_weights",
    "gradients",
    "optimizer_states",
    "master_weights",
    "activations",
    "quantization_constants",
)


@dataclass(frozen=True)
class Breakdown:
    """Training memory in bytes, one field per term; `total` is their sum.

    `pageable` is not a term of its own: it is the part of `optimizer_states` a paged optimizer
    keeps in CUDA unified memory, which the driver moves to CPU RAM when the GPU runs short
    (bitsandbytes' paged optimizers, used by QLoRA to survive memory spikes). `total` counts it
    on the GPU, the worst case with nothing evicted; `gpu_floor` is the total with all of it
    evicted, the least the GPU must hold (slower: every step pages the states back in).
    """

    frozen_weights: int
    trainable_weights: int
    gradients: int
    optimizer_states: int
    master_weights: int
    activations: int
    quantization_constants: int
    pageable: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, term) for term in TERMS)

    @property
    def gpu_floor(self) -> int:
        return self.total - self.pageable

    def to_dict(self) -> dict[str, int]:
        """Every term and the total (the pageable share is `pageable`, outside the total)."""
        return {**{term: getattr(self, term) for term in TERMS}, "total": self.total}


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
    gradient_checkpointing: bool | None = None,
    double_quant: bool = True,
    accounting: str = "zero",
    *,
    optimizer_precision: str | None = None,
    attn_implementation: str = "sdpa",
    prepare_kbit: bool = True,
    devices: int = 1,
    sharding: str = "ddp",
) -> Breakdown:
    """Bytes needed to train `config` with `method`, term by term (see Breakdown).

    With `devices` > 1, the bytes each of that many data-parallel devices holds under
    `sharding` ("ddp", "zero1", "zero2", "zero3", "fsdp"; `sharding.per_device`): `batch_size`
    is then each device's micro-batch. The default is one device.

    Ψ = all parameters, T = trainable ones (Ψ for full, lora_params for LoRA/QLoRA);
    w = 2 bytes for precision "mixed"/"bf16", 4 for "fp32".
    - frozen_weights: 0 (full); Ψ_base * w (LoRA); QLoRA: 0.5 byte per quantized linear weight
      (NF4) and, for the rest (embeddings, norms, output head, biases), 4 bytes when
      `prepare_kbit` (peft's `prepare_model_for_kbit_training` casts every non-quantized 16-bit
      parameter to fp32: 262,144,000 embedding and head parameters on Llama-2-7B, 0.52 GB more
      than 16 bits), w bytes when not (the QLoRA paper's script casts them back to bf16).
    - trainable_weights: T * w for full (the 16-bit working copy in mixed precision); LoRA/QLoRA
      adapters are fp32 (4) in mixed and fp32 precision because peft upcasts them, bf16 (2) in
      precision="bf16" (the QLoRA paper's bf16 adapters).
    - master_weights: full + mixed only: 4T (fp32 copy the optimizer updates).
    - gradients: like the weights they belong to, except full + mixed: 2T with ZeRO's
      accounting (16-bit gradients, ZeRO's fp16 recipe), 4T with `accounting="hf"` (fp32
      gradients: torch AMP, and Megatron-LM / DeepSpeed's bf16 optimizer, which accumulate
      gradients in fp32).
    - optimizer_states: Adam keeps two moments per trainable parameter, each of
      `optimizer_precision` ("fp32" 4 bytes, "bf16" 2; by default 4, or 2 when every other term
      is bf16, i.e. precision="bf16" for full fine-tuning and bf16 adapters); 8-bit AdamW
      (bitsandbytes, blockwise-quantized moments) 2 bytes; SGD with momentum one state; SGD none.
      "paged_adamw" / "paged_adamw8bit" hold the same bytes in paged memory: counted on the GPU
      in `total`, and as `pageable` (see Breakdown.gpu_floor).
    - activations: `activation_bytes` (the Llama-block derivation in `activation_terms`).
      `gradient_checkpointing=None` means what the method's usual code path does: on for QLoRA
      (`prepare_model_for_kbit_training` turns it on), off otherwise.
    - quantization_constants: QLoRA only: one fp32 absmax per 64 weights (0.5 bit/param), or
      with double quantization one byte per block plus fp32 per 256 blocks (0.127 bit/param).

    Recipes the papers used, as keyword arguments (each pinned in tests/test_memory.py):
    - ZeRO's mixed-precision Adam, 16 bytes/param: precision="mixed" (default).
    - Hugging Face's count, 18 bytes/param: precision="mixed", accounting="hf".
    - bf16 weights and gradients with fp32 moments, 12 bytes/param, the QLoRA paper's "more than
      780 GB" for LLaMA-65B: method="full", precision="bf16", optimizer_precision="fp32".
    - the QLoRA paper's recipe (bf16 adapters, paged 32-bit AdamW, checkpointing, batch 1):
      method="qlora", precision="bf16", optimizer="paged_adamw", optimizer_precision="fp32",
      gradient_checkpointing=True, batch_size=1, prepare_kbit=False.
    """
    config = preset(config)
    _check_choice("method", method, METHODS)
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("accounting", accounting, ACCOUNTINGS)
    if optimizer_precision is not None:
        _check_choice("optimizer_precision", optimizer_precision, OPTIMIZER_PRECISIONS)
    check_sharding(devices, sharding)
    if gradient_checkpointing is None:
        gradient_checkpointing = method == "qlora"
    for label, flag in (
        ("gradient_checkpointing", gradient_checkpointing),
        ("double_quant", double_quant),
        ("prepare_kbit", prepare_kbit),
    ):
        if not isinstance(flag, bool):
            raise ValueError(f"{label}={flag!r}: must be True or False")
    w = FP32_BYTES if precision == "fp32" else HALF_BYTES
    total_params = count_params(config)  # first: it says when transformers cannot build it
    activations = activation_bytes(
        config, batch_size, seq_len, gradient_checkpointing, method=method, r=r,
        target_modules=target_modules, precision=precision,
        attn_implementation=attn_implementation, prepare_kbit=prepare_kbit,
    )  # fmt: skip
    if method == "full":
        trainable = total_params
        grad_bytes = {"fp32": 4, "bf16": 2, "mixed": 4 if accounting == "hf" else 2}[precision]
        state_bytes = HALF_BYTES if precision == "bf16" else FP32_BYTES
        states = trainable * _optimizer_bytes(optimizer, optimizer_precision, state_bytes)
        one_device = Breakdown(
            frozen_weights=0,
            trainable_weights=trainable * w,
            gradients=trainable * grad_bytes,
            optimizer_states=states,
            master_weights=trainable * FP32_BYTES if precision == "mixed" else 0,
            activations=activations,
            quantization_constants=0,
            pageable=states if optimizer.startswith("paged") else 0,
        )
        return per_device(one_device, devices, sharding)

    trainable = lora_params(config, r, target_modules)
    adapter_bytes = _adapter_bytes(precision)
    if method == "lora":
        frozen, constants = total_params * w, 0
    else:
        quantized = linear_layers(config)
        n_quantized = sum(t.count * t.d_in * t.d_out for t in quantized)
        rest = FP32_BYTES if prepare_kbit else w
        frozen = int(n_quantized * NF4_BYTES_PER_PARAM) + (total_params - n_quantized) * rest
        constants = sum(
            t.count * quant_constant_bytes(t.d_in * t.d_out, double_quant) for t in quantized
        )
    states = trainable * _optimizer_bytes(optimizer, optimizer_precision, adapter_bytes)
    one_device = Breakdown(
        frozen_weights=frozen,
        trainable_weights=trainable * adapter_bytes,
        gradients=trainable * adapter_bytes,
        optimizer_states=states,
        master_weights=0,
        activations=activations,
        quantization_constants=constants,
        pageable=states if optimizer.startswith("paged") else 0,
    )
    return per_device(one_device, devices, sharding)


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
    config: Any,
    batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool = False,
    *,
    method: str = "full",
    r: int = 8,
    target_modules: str | list[str] | tuple[str, ...] | None = None,
    precision: str = "mixed",
    attn_implementation: str = "sdpa",
    prepare_kbit: bool = True,
) -> int:
    """Bytes of activations autograd keeps for the backward pass (the sum of `activation_terms`).

    Without checkpointing: every layer's saved tensors, plus what the embedding, final norm,
    output head and loss keep. With gradient checkpointing (transformers checkpoints each
    decoder layer): each layer's input, plus one layer's saved tensors while it is recomputed
    during backward, plus the same outside terms.
    """
    terms = activation_terms(
        config, batch_size, seq_len, method=method, r=r, target_modules=target_modules,
        precision=precision, attn_implementation=attn_implementation, prepare_kbit=prepare_kbit,
    )  # fmt: skip
    layer = sum(terms["layer"].values())
    outside = sum(terms["outside"].values())
    n_layers = _dims(preset(config))[2]
    if gradient_checkpointing:
        kept = n_layers * terms["checkpoint"]["layer input"] + terms["checkpoint"]["shared"]
        return round(kept + layer - terms["checkpoint"]["recompute overlap"] + outside)
    return round(n_layers * layer - terms["first layer"] + outside)


def activation_terms(
    config: Any,
    batch_size: int = 1,
    seq_len: int = 512,
    *,
    method: str = "full",
    r: int = 8,
    target_modules: str | list[str] | tuple[str, ...] | None = None,
    precision: str = "mixed",
    attn_implementation: str = "sdpa",
    prepare_kbit: bool = True,
) -> dict[str, Any]:
    """The tensors one Llama decoder layer saves for backward, term by term, in bytes.

    Derived from transformers' Llama block (RMSNorm, RoPE, SwiGLU MLP, no dropout, no bias) and
    PyTorch's rule that an op saves an input only when a gradient needs it: a frozen weight's
    matmul keeps no copy of its input; a multiplication keeps the other factor of each operand
    that needs a gradient. With T = batch * seq tokens, h hidden, i MLP width, a heads (kv
    key/value heads, d = h/a), p the activation element size (2 bytes in 16-bit, 4 in fp32),
    per layer:

    | tensor | who saves it | bytes |
    |---|---|---|
    | norm input in fp32, 1/rms | RMSNorm (pow, mul), twice per layer | 2 * (4h + 4) T |
    | normalized input | RMSNorm's weight multiply, only if the norm weight trains | 2 * p h T |
    | norm output | q/k/v (gate/up) matmuls that train, or their LoRA A | p h T each norm |
    | q, k, v (after RoPE), output | SDPA backward, + fp32 logsumexp 4a T | p (2h + 2 kv d) T |
    | scores in fp32 and probabilities | eager attention only: softmax, probs @ v | (4 + p) a s T |
    | attention output | o_proj, eager only (SDPA already keeps it) | p h T if o_proj trains |
    | gate output, SiLU output, up output | SiLU and the gating multiply | 3 p i T |
    | MLP product | down_proj, only if it trains (or has LoRA) | p i T |
    | LoRA: input cast to the adapter dtype | lora_A, when the adapter dtype is not p | 4h or 4i T |
    | LoRA: A's output | lora_B | r * adapter bytes * T |

    SDPA (the default) never materialises the a*s^2 scores: it keeps q, k, v, its output and a
    logsumexp per row, and recomputes the scores in backward. Eager attention keeps the fp32
    softmax output and its 16-bit copy: (4 + 2) a s bytes per token, quadratic in s. Korthikanti
    et al.'s 34 + 5as/h bytes per token and hidden unit describe a GPT block with dropout masks,
    LayerNorm and a GeLU MLP of width 4h, which Llama training does not run.

    QLoRA: a 4-bit matmul keeps nothing (its weight is frozen; backward dequantizes it again),
    and with `prepare_kbit` the fp32 embeddings and norms make the residual stream fp32 (p = 4:
    each 4-bit layer's output is cast back to its input's dtype).

    Outside the layers: the final norm (4h + 4 per token, plus p h twice if it and the head
    train), the token ids (int64) if the embedding trains, the loss's fp32 log-softmax 4 V T and
    its int64 targets. Gradient checkpointing keeps each layer's input (p h T), the RoPE tables
    and, for eager attention, the causal mask (p s^2 b), and recomputes one layer at a time.
    PEFT's first layer saves less: its input needs no gradient, so its first norm keeps nothing.

    Returns {"layer": {term: bytes}, "outside": {term: bytes}, "first layer": bytes,
    "checkpoint": {"layer input": bytes, "shared": bytes, "recompute overlap": bytes}}.
    """
    config = preset(config)
    _check_choice("method", method, METHODS)
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS)
    for label, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{label}={value}: must be a positive integer")
    h, a, n_layers, vocab = _dims(config)
    s, tokens = seq_len, batch_size * seq_len
    if config.model_type in _LLAMA_LIKE:
        head_dim = getattr(config, "head_dim", None) or h // a
        kv = config.num_key_value_heads or a
        inter = config.intermediate_size
    else:  # a GPT-style block read as Llama's shapes: an approximation
        head_dim, kv = h // a, a
        inter = getattr(config, "n_inner", None) or getattr(config, "ffn_dim", None) or 4 * h
    q_out, kv_out = a * head_dim, kv * head_dim
    if method == "qlora" and prepare_kbit or precision == "fp32":
        p = FP32_BYTES
    else:
        p = HALF_BYTES
    full = method == "full"
    adapter = _adapter_bytes(precision)
    lora: dict[str, float] = {}
    if not full:
        targets = target_modules if target_modules is not None else default_targets(config)
        for t in _targeted(config, r, targets):
            lora[t.name] = lora.get(t.name, 0) + t.count / n_layers

    def consumers(names: tuple[str, ...], width: int) -> dict[str, float]:
        """Bytes (per token) the layers reading one input keep of it, and their LoRA A outputs."""
        shared = 1.0 if full else max((lora.get(n, 0.0) for n in names), default=0.0)
        if not full and adapter != p:  # each adapter casts its own copy
            shared = 0.0
        copies = 0.0 if full or adapter == p else sum(lora.get(n, 0.0) for n in names)
        return {
            "input": shared * p * width,
            "input cast for LoRA": copies * adapter * width,
            "LoRA A outputs": sum(lora.get(n, 0.0) for n in names) * r * adapter,
        }

    norm = 2 * (4 * h + 4) + (2 * p * h if full else 0)
    qkv = consumers(("q_proj", "k_proj", "v_proj"), h)
    up = consumers(("gate_proj", "up_proj"), h)
    o = consumers(("o_proj",), q_out)
    down = consumers(("down_proj",), inter)
    layer = {
        "RMSNorms (fp32 input, 1/rms, normalized)": norm * tokens,
        "norm outputs (q/k/v, gate/up inputs)": (qkv["input"] + up["input"]) * tokens,
    }
    if attn_implementation == "sdpa":
        layer["q, k, v, attention output"] = p * (2 * q_out + 2 * kv_out) * tokens
        layer["logsumexp (fp32)"] = 4 * a * tokens
        o_input = 0.0  # o_proj reads the output SDPA already keeps
    else:
        k_width = q_out if kv != a else kv_out  # repeat_kv copies grouped heads
        layer["q, k, v"] = p * (q_out + 2 * k_width) * tokens
        probs = 0 if p == FP32_BYTES else p  # .to(fp32) of an fp32 tensor is no copy
        layer["scores: softmax (fp32) and probabilities"] = (4 + probs) * a * s * tokens
        o_input = o["input"]
    layer["attention output (o_proj input)"] = o_input * tokens
    layer["MLP: gate, SiLU, up outputs"] = 3 * p * inter * tokens
    layer["MLP product (down_proj input)"] = down["input"] * tokens
    layer["LoRA: input casts"] = sum(c["input cast for LoRA"] for c in (qkv, up, o, down)) * tokens
    layer["LoRA: A outputs"] = sum(c["LoRA A outputs"] for c in (qkv, up, o, down)) * tokens

    rope = 2 * s * head_dim * p  # cos and sin, shared by every layer
    outside = {
        "token ids": 8 * tokens if full else 0,
        "final norm": (4 * h + 4 + (2 * p * h if full else 0)) * tokens,
        "RoPE cos, sin": rope if config.model_type in _LLAMA_LIKE else 0,
        "loss: log-softmax (fp32), targets": (4 * vocab + 8) * tokens,
    }
    mask = p * s * s * batch_size if attn_implementation == "eager" else 0
    first = 0 if full else (4 * h + 4) * tokens  # PEFT: the first norm's input needs no grad
    if not full and attn_implementation == "eager" and not lora.get("k_proj"):
        first += p * q_out * tokens  # q @ k^T keeps q only for k's gradient
    return {
        "layer": layer,
        "outside": outside,
        "first layer": first,
        "checkpoint": {
            "layer input": p * h * tokens,
            "shared": mask + 8 * s,  # the eager causal mask and the position ids
            # an fp32 norm keeps its input itself, which checkpointing already holds
            "recompute overlap": 4 * h * tokens if p == FP32_BYTES else 0,
        },
    }


def korthikanti_bytes(
    config: Any, batch_size: int, seq_len: int, gradient_checkpointing: bool = False
) -> int:
    """Korthikanti et al. (2022, table 2): s*b*h*(34 + 5*a*s/h) bytes per layer in 16-bit for a
    GPT block (stored softmax, dropout masks, GeLU MLP); with full recomputation 2*s*b*h per
    layer plus one layer. Plus fp32 logits s*b*V*4. Kept to compare with `activation_bytes`."""
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


def _optimizer_bytes(optimizer: str, optimizer_precision: str | None, default_bytes: int) -> int:
    """Bytes of optimizer state per trainable parameter (HF "Model training anatomy")."""
    if optimizer.endswith("8bit"):
        return 2  # two moments of one byte each (bitsandbytes' blockwise 8-bit states)
    state = {"fp32": FP32_BYTES, "bf16": HALF_BYTES, None: default_bytes}[optimizer_precision]
    return {"adamw": 2 * state, "paged_adamw": 2 * state, "sgd_momentum": state, "sgd": 0}[
        optimizer
    ]


def _adapter_bytes(precision: str) -> int:
    """peft keeps adapters in fp32 unless the whole run is bf16 (the QLoRA paper's adapters)."""
    return HALF_BYTES if precision == "bf16" else FP32_BYTES


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
