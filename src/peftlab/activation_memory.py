"""The activations autograd saves for the backward pass, term by term, in bytes.

Derived here for transformers' Llama block (see `activation_terms`) and checked against the
bytes autograd saves (`peftlab.measure.saved_activation_bytes`, tests/test_activations_measured.py);
Korthikanti et al. (arXiv 2205.05198) give the GPT-block formula it replaces (`korthikanti_bytes`).
`memory.estimate` adds `activation_bytes` to the model-state terms.
"""

from __future__ import annotations

from typing import Any

from peftlab.presets import (
    ATTN_IMPLEMENTATIONS,
    FP32_BYTES,
    HALF_BYTES,
    LLAMA_LIKE,
    METHODS,
    PRECISIONS,
    adapter_bytes,
    check_choice,
    default_targets,
    dims,
    preset,
    targeted_layers,
)


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
    n_layers = dims(preset(config))[2]
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
    check_choice("method", method, METHODS)
    check_choice("precision", precision, PRECISIONS)
    check_choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS)
    for label, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{label}={value}: must be a positive integer")
    h, a, n_layers, vocab = dims(config)
    s, tokens = seq_len, batch_size * seq_len
    if config.model_type in LLAMA_LIKE:
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
    adapter = adapter_bytes(precision)
    lora: dict[str, float] = {}
    if not full:
        targets = target_modules if target_modules is not None else default_targets(config)
        for t in targeted_layers(config, r, targets):
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
        "RoPE cos, sin": rope if config.model_type in LLAMA_LIKE else 0,
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


def korthikanti_layer_bytes(config: Any, batch_size: int, seq_len: int) -> int:
    """Korthikanti et al. (2022, table 2): s*b*h*(34 + 5*a*s/h) bytes per layer in 16-bit for a
    GPT block (stored softmax, dropout masks, GeLU MLP)."""
    h, a, _, _ = dims(preset(config))
    s, b = seq_len, batch_size
    return s * b * h * 34 + 5 * a * s * s * b


def korthikanti_bytes(
    config: Any, batch_size: int, seq_len: int, gradient_checkpointing: bool = False
) -> int:
    """Korthikanti et al.'s whole model: `korthikanti_layer_bytes` per layer, or with full
    recomputation 2*s*b*h per layer plus one layer; plus fp32 logits s*b*V*4. Kept to compare
    with `activation_bytes`."""
    h, _, n_layers, vocab = dims(preset(config))
    s, b = seq_len, batch_size
    per_layer = korthikanti_layer_bytes(config, batch_size, seq_len)
    logits = s * b * vocab * FP32_BYTES
    if gradient_checkpointing:
        return n_layers * 2 * s * b * h + per_layer + logits
    return n_layers * per_layer + logits
