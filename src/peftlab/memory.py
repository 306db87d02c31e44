"""Parameter counts and training-memory math for transformer language models.

Everything here is arithmetic on a transformers config, so a 70B model costs nothing to
"measure". Sizes are bytes; formatting happens at the edges (GB = 1e9 bytes, GiB = 2**30).
The models, GPUs and options it knows are in `presets`; the activation terms, the longest
derivation, in `activation_memory`; `sharding` divides the result among data-parallel devices.

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
- Activations: `activation_memory.activation_terms`, derived for transformers' Llama block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from peftlab.activation_memory import activation_bytes
from peftlab.presets import (
    ACCOUNTINGS,
    FP32_BYTES,
    HALF_BYTES,
    LLAMA_LIKE,
    METHODS,
    OPTIMIZER_PRECISIONS,
    OPTIMIZERS,
    PRECISIONS,
    adapter_bytes,
    check_choice,
    default_targets,
    dims,
    linear_layers,
    meta_model,
    preset,
    targeted_layers,
)
from peftlab.quiet import known_warnings
from peftlab.sharding import check as check_sharding
from peftlab.sharding import per_device

NF4_BLOCKSIZE = 64
DOUBLE_QUANT_BLOCKSIZE = 256
NF4_BYTES_PER_PARAM = 0.5
REFERENCES = ("none", "separate", "adapter-off")  # where DPO's reference model lives

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


def count_params(config: Any) -> int:
    """Exact parameter count: linear layers + embeddings + norms (+ untied output head)."""
    config = preset(config)
    kind = config.model_type
    linears = sum(layer.params for layer in linear_layers(config))
    if kind in LLAMA_LIKE:
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
    return sum(r * (t.d_in + t.d_out) * t.count for t in targeted_layers(config, r, target_modules))


def houlsby_adapter_params(config: Any, bottleneck: int = 64) -> int:
    """Houlsby et al. (2019) adapters: two per layer, each d -> m -> d with biases: 2md + m + d.

    peft does not ship these bottleneck adapters, so they are counted here by formula.
    """
    if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck <= 0:
        raise ValueError(f"bottleneck={bottleneck}: adapter size must be a positive integer")
    h, _, n_layers, _ = dims(preset(config))
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
    reference: str = "none",
) -> Breakdown:
    """Bytes needed to train `config` with `method`, term by term (see Breakdown).

    `reference` is for preference tuning (DPO), which scores every batch under a frozen
    reference model too: "none" (SFT, or reference log-probs computed beforehand), "separate"
    (a second, frozen copy of the starting model beside the policy: its weights as the policy's
    frozen base holds them, or Ψ * w for full fine-tuning, added to `frozen_weights`) or
    "adapter-off" (LoRA and QLoRA: the policy with its adapter switched off is the reference, 0
    bytes more; what TRL's DPOTrainer does for a peft model). `batch_size` counts sequences: a
    DPO pair is two.

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
    check_choice("method", method, METHODS)
    check_choice("precision", precision, PRECISIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("accounting", accounting, ACCOUNTINGS)
    check_choice("reference", reference, REFERENCES)
    if reference == "adapter-off" and method == "full":
        raise ValueError(
            "reference='adapter-off': a full fine-tune has no adapter to switch off; use "
            "reference='separate' (or 'none' with precomputed reference log-probs)"
        )
    if optimizer_precision is not None:
        check_choice("optimizer_precision", optimizer_precision, OPTIMIZER_PRECISIONS)
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
            frozen_weights=total_params * w if reference == "separate" else 0,
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
    adapter_dtype_bytes = adapter_bytes(precision)
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
    states = trainable * _optimizer_bytes(optimizer, optimizer_precision, adapter_dtype_bytes)
    if reference == "separate":  # the same frozen base again, quantization constants and all
        frozen, constants = 2 * frozen, 2 * constants
    one_device = Breakdown(
        frozen_weights=frozen,
        trainable_weights=trainable * adapter_dtype_bytes,
        gradients=trainable * adapter_dtype_bytes,
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


def _optimizer_bytes(optimizer: str, optimizer_precision: str | None, default_bytes: int) -> int:
    """Bytes of optimizer state per trainable parameter (HF "Model training anatomy")."""
    if optimizer.endswith("8bit"):
        return 2  # two moments of one byte each (bitsandbytes' blockwise 8-bit states)
    state = {"fp32": FP32_BYTES, "bf16": HALF_BYTES, None: default_bytes}[optimizer_precision]
    return {"adamw": 2 * state, "paged_adamw": 2 * state, "sgd_momentum": state, "sgd": 0}[
        optimizer
    ]


def _meta_count(config: Any) -> int:
    return sum(p.numel() for p in meta_model(config).parameters())
