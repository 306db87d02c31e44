"""Checkers for the notebooks' exercises: the learner writes a function, the checker compares it
with the package's own implementation and names the usual mistake when it differs."""

from collections.abc import Callable

import torch
from torch import nn

from peftlab import memory, nf4
from peftlab.lora import LoRALinear
from peftlab.seed import seed_everything

LoraForward = Callable[..., torch.Tensor]

# Notebook 01's exercise: LoRA parameters at rank 16 on Mistral-7B's k_proj and v_proj.
GQA_MODEL, GQA_RANK, GQA_TARGETS = "mistral-7b", 16, ("k_proj", "v_proj")


def _lora_case(r: int = 4, alpha: float = 8.0) -> tuple[LoRALinear, torch.Tensor]:
    seed_everything(0)
    layer = LoRALinear(nn.Linear(12, 10, bias=False), r=r, alpha=alpha)
    nn.init.normal_(layer.lora_B.weight)  # a trained-looking B; with B = 0 any answer "works"
    return layer, torch.randn(3, 12)


def _usual_mistakes(x, w0, a, b, alpha: float, r: int) -> dict[str, torch.Tensor]:
    """Wrong answers learners often write, each with the hint that fixes it."""
    low_rank = x @ a.T @ b.T
    return {
        "scaled by alpha instead of alpha / r (a bug that once shipped in a popular book's code)": (
            x @ w0.T + alpha * low_rank
        ),
        "the low-rank term is not scaled: multiply B A x by alpha / r": x @ w0.T + low_rank,
        "scaled by alpha / sqrt(r): that is rsLoRA, the task is plain LoRA": (
            x @ w0.T + alpha / r**0.5 * low_rank
        ),
        "the frozen term W0 x is missing: LoRA adds to the base output": alpha / r * low_rank,
        "only W0 x: the low-rank update B A x is missing": x @ w0.T,
    }


def check_lora_forward(fn: LoraForward) -> bool:
    """Check `fn(x, W0, A, B, alpha, r) -> h` against LoRALinear; print a verdict and a hint.

    Shapes follow nn.Linear: x (batch, in), W0 (out, in), A (r, in), B (out, r).
    """
    layer, x = _lora_case()
    w0 = layer.base_layer.weight.detach()
    a, b = layer.lora_A.weight.detach(), layer.lora_B.weight.detach()
    with torch.no_grad():
        expected = layer(x)
    try:
        got = fn(x, w0, a, b, layer.alpha, layer.r)
    except NotImplementedError:
        print("Not written yet: replace `raise NotImplementedError` with the LoRA forward.")
        return False
    if not isinstance(got, torch.Tensor):
        print(f"Return a torch.Tensor, not {type(got).__name__}.")
        return False
    if got.shape != expected.shape:
        print(
            f"Shape {tuple(got.shape)}, expected {tuple(expected.shape)}: x is (batch, in), "
            "W0 is (out, in), A is (r, in), B is (out, r); multiply by transposes (x @ A.T)."
        )
        return False
    if torch.allclose(got, expected, atol=1e-5):
        print("Correct: h = W0 x + (alpha / r) B A x, equal to peftlab.lora.LoRALinear.")
        return True
    for hint, wrong in _usual_mistakes(x, w0, a, b, layer.alpha, layer.r).items():
        if torch.allclose(got, wrong, atol=1e-5):
            print(f"Not yet: {hint}.")
            return False
    error = (got - expected).abs().max().item()
    print(f"Not yet: largest difference {error:.3g}; recall h = W0 x + (alpha / r) B A x.")
    return False


def _dequantize_mistakes(packed: torch.Tensor, absmax: float, n: int) -> dict[str, torch.Tensor]:
    """Wrong answers learners often write, each with the hint that fixes it."""
    high, low = packed >> 4, packed & 0x0F
    swapped = torch.stack([low, high], dim=1).reshape(-1)[:n].long()
    ordered = torch.stack([high, low], dim=1).reshape(-1)[:n].long()
    return {
        "nibble order: the first value is in the high 4 bits (byte >> 4), the second in the low": (
            nf4.NF4_CODE[swapped] * absmax
        ),
        "not scaled: multiply each level by the block's absmax": nf4.NF4_CODE[ordered],
        "the index is not the value: look it up in the code, NF4_CODE[index]": (
            ordered.float() * absmax
        ),
    }


def check_dequantize_block(fn) -> bool:
    """Check `fn(packed, absmax, n) -> weights` (one NF4 block) against `nf4.dequantize_nf4`;
    print a verdict and, for a usual mistake, the hint that fixes it."""
    generator = torch.Generator().manual_seed(0)
    for n in (64, 7):
        w = torch.randn(n, generator=generator) * 0.02
        packed, absmax = nf4.quantize_nf4(w, blocksize=64)
        expected = nf4.dequantize_nf4(packed, absmax, (n,), blocksize=64)
        try:
            got = torch.as_tensor(fn(packed.clone(), absmax.item(), n)).float().reshape(-1)
        except NotImplementedError:
            print("Not written yet: replace `raise NotImplementedError` with your dequantization.")
            return False
        except Exception as exc:  # the learner's code: report, don't crash the notebook
            print(f"Not yet: your function raised {type(exc).__name__}: {exc}")
            return False
        if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-7):
            continue
        for hint, wrong in _dequantize_mistakes(packed, absmax.item(), n).items():
            if got.shape == wrong.shape and torch.allclose(got, wrong, atol=1e-7):
                print(f"Not yet ({n} weights): {hint}.")
                return False
        print(f"Not yet ({n} weights): expected {expected[:4].tolist()}, got {got[:4].tolist()}")
        return False
    print("Correct: your dequantization matches peftlab.nf4 (and so bitsandbytes).")
    return True


def _gqa_mistakes() -> dict[str, int]:
    """Wrong counts learners often write for notebook 01's exercise, each with its hint."""
    config = memory.preset(GQA_MODEL)
    h, layers, r = config.hidden_size, config.num_hidden_layers, GQA_RANK
    kv = config.num_key_value_heads * (config.head_dim or h // config.num_attention_heads)
    return {
        "k_proj and v_proj are not square under grouped-query attention: they map "
        f"{h} features to {kv}, so each adds r * ({h} + {kv})": layers * 2 * r * (h + h),
        f"one layer only: multiply by the model's {layers} layers": 2 * r * (h + kv),
        "only one of k_proj and v_proj: count both": layers * r * (h + kv),
        "A and B together hold r * (d_in + d_out) numbers, not r * d_out": layers * 2 * r * kv,
    }


def check_gqa_lora_params(answer: object) -> bool:
    """Check notebook 01's exercise: the LoRA parameters at rank 16 on Mistral-7B's k_proj and
    v_proj, against `memory.lora_params`; print a verdict and, for a usual mistake, its hint."""
    expected = memory.lora_params(GQA_MODEL, GQA_RANK, list(GQA_TARGETS))
    if answer is None:
        print("Not written yet: set your_answer to your count (an integer).")
        return False
    if isinstance(answer, bool) or not isinstance(answer, int | float) or answer != int(answer):
        print(f"Not yet: give a whole number of parameters, not {answer!r}.")
        return False
    if int(answer) == expected:
        print(f"Correct: {expected:,}, as peftlab.memory.lora_params counts it.")
        return True
    for hint, wrong in _gqa_mistakes().items():
        if int(answer) == wrong:
            print(f"Not yet: {hint}.")
            return False
    print(f"Not yet: {int(answer):,} is {int(answer) / expected:.2f}x the right count.")
    return False
