"""NF4 from scratch: QLoRA's 4-bit NormalFloat code, blockwise absmax and double quantization.

The idea (Dettmers et al., QLoRA, arXiv 2305.14314): trained weights are close to normal, so
put the 16 levels of a 4-bit code at quantiles of N(0, 1) and every level gets about the same
share of the weights. Each block of 64 weights is divided by its absolute maximum (absmax) so it
fits [-1, 1]; each weight is stored as the 4-bit index of its nearest level; each block keeps
its absmax. Double quantization then stores those absmax values in 8 bits instead of 32.

Every step is written to give the same bytes as bitsandbytes on the CPU; where bitsandbytes
does something for speed rather than for the idea, the docstring says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
SECOND_LEVEL_BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# Phi^-1(1) is infinite, so the outermost quantile is taken at this probability instead. To the
# 7 digits given it is the mean of 1 - 1/(2*15) and 1 - 1/(2*16): where the outermost of 15,
# and of 16, evenly spaced quantiles would sit.
NF4_OFFSET = 0.9677083


def normal_float_code(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels: 8 positive and 7 negative normal quantiles and an exact 0, in [-1, 1].

    Built as bitsandbytes' `create_normal_map(offset, use_extra_value=True)` builds it: evenly
    spaced probabilities from `offset` down to 0.5 (0.5 itself dropped: it would give 0),
    through the inverse normal CDF, then divided by the largest level so that +1 is a level.
    """
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    p_positive = torch.linspace(offset, 0.5, 9)[:-1].double()
    p_negative = torch.linspace(offset, 0.5, 8)[:-1].double()
    zero = torch.zeros(1, dtype=torch.float64)
    levels = torch.cat([-normal.icdf(p_negative), zero, normal.icdf(p_positive)])
    levels = levels.float().sort().values
    return levels / levels.max()


NF4_CODE = normal_float_code()

# bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit). The position in this table is the
# stored 4-bit pattern: the low 3 bits pick a magnitude, the high bit the sign.
_FP4_MAGNITUDES = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0)
FP4_CODE = torch.tensor(_FP4_MAGNITUDES + tuple(-m for m in _FP4_MAGNITUDES)) / 12.0

# Plain absmax INT4: 15 evenly spaced levels k/7, k = -7..7, and a second zero for the 16th
# pattern, so that -1, 0 and +1 are all exact (the same levels as bitsandbytes' "int4").
INT4_CODE = torch.cat([torch.arange(-7.0, 8.0), torch.zeros(1)]) / 7.0

CODES = {"nf4": NF4_CODE, "fp4": FP4_CODE, "int4": INT4_CODE}


def dynamic_code() -> torch.Tensor:
    """bitsandbytes' signed 8-bit "dynamic" code, used for the second level of double quantization.

    Levels cover seven decades: for decade 10^(i-6), i = 0..6, the 2^i midpoints of an even
    split of [0.1, 1], with both signs, plus 0 and 1. Dense near zero, sparse near one.
    """
    levels = [0.0, 1.0]
    for i in range(7):
        edges = torch.linspace(0.1, 1, 2**i + 1)
        means = (edges[:-1] + edges[1:]) / 2.0
        decade = 10.0 ** (i - 6)
        levels += (decade * means).tolist() + (-decade * means).tolist()
    return torch.tensor(sorted(levels))


DYNAMIC_CODE = dynamic_code()


def _check_weights(w: torch.Tensor) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w={type(w).__name__}: pass a torch.Tensor of weights")
    if not w.is_floating_point():
        raise ValueError(
            f"dtype={w.dtype}: integer tensors are already quantized; pass float32, bfloat16 "
            "or float16 weights"
        )
    if w.dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype={w.dtype}: pass float32, bfloat16 or float16 (w.float())")
    if w.numel() == 0:
        raise ValueError(f"shape={tuple(w.shape)}: cannot quantize an empty tensor")
    bad = int((~torch.isfinite(w)).sum())
    if bad:
        raise ValueError(
            f"w has {bad} NaN or infinite values: absmax scaling needs finite weights; "
            "find where they came from before quantizing"
        )


def _check_blocksize(blocksize: int, allowed: tuple[int, ...] = BLOCKSIZES) -> None:
    if blocksize not in allowed:
        raise ValueError(f"blocksize={blocksize}: bitsandbytes supports {allowed}")


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype={dtype}: dequantize to float32, bfloat16 or float16")


def absmax_scale(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block absmax, and every value divided by its block's absmax (so in [-1, 1])."""
    full = flat.numel() - flat.numel() % blocksize
    blocks = flat[:full].view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    # An all-zero block: scale by 1/1e-38 (0 stays 0). Full blocks multiply by the reciprocal and
    # keep absmax 0; the last, partial block divides and stores 1e-38. That is bitsandbytes'
    # arithmetic, kept so that the bytes match.
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)[:, None])).reshape(-1)
    tail = flat[full:]
    if tail.numel():
        tail_absmax = tail.abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, tail_absmax[None]])
        scaled = torch.cat([scaled, tail / tail_absmax])
    return absmax, scaled.clamp(-1.0, 1.0)


def _nearest_level(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index into `code` of the level nearest each x; a tie goes to the lower level."""
    order = torch.argsort(code)
    midpoints = (code[order[:-1]] + code[order[1:]]) / 2
    return order[torch.bucketize(x, midpoints)]


def pack_nibbles(indices: torch.Tensor) -> torch.Tensor:
    """Two 4-bit indices per byte: the first in the high nibble, the second in the low one."""
    indices = indices.to(torch.uint8)
    return (indices[0::2] << 4) | indices[1::2]


def unpack_nibbles(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first `n` 4-bit indices back out of `pack_nibbles`' bytes."""
    return torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)[:n]


def quantize_4bit(
    w: torch.Tensor, code: torch.Tensor = NF4_CODE, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization of `w` to a 16-level `code`: (packed uint8, fp32 absmax).

    `packed` holds ceil(numel / 2) bytes in bitsandbytes' order (row-major, first value in
    the high nibble); `absmax` one value per block of `blocksize` weights.
    """
    _check_weights(w)
    _check_blocksize(blocksize)
    absmax, scaled = absmax_scale(w.detach().reshape(-1).float(), blocksize)
    if scaled.numel() % 2:
        scaled = torch.nn.functional.pad(scaled, (0, 1))
    return pack_nibbles(_nearest_level(scaled, code.to(scaled.device))), absmax


def dequantize_4bit(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    code: torch.Tensor = NF4_CODE,
    blocksize: int = 64,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Weights back from `quantize_4bit`: level times block absmax in fp32, then cast to `dtype`."""
    dtype = torch.float32 if dtype is None else dtype
    _check_blocksize(blocksize)
    _check_dtype(dtype)
    n = math.prod(shape)
    if packed.dtype != torch.uint8 or packed.numel() != (n + 1) // 2:
        raise ValueError(
            f"packed={packed.dtype}[{packed.numel()}]: shape {tuple(shape)} needs "
            f"{(n + 1) // 2} uint8 bytes from quantize_4bit"
        )
    if absmax.numel() != -(-n // blocksize):
        raise ValueError(
            f"absmax has {absmax.numel()} values: shape {tuple(shape)} with blocksize="
            f"{blocksize} has {-(-n // blocksize)} blocks; pass the blocksize used to quantize"
        )
    levels = code.to(packed.device)[unpack_nibbles(packed.reshape(-1), n).long()]
    scale = absmax.reshape(-1).float().repeat_interleave(blocksize)[:n]
    return (levels * scale).reshape(shape).to(dtype)


def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4 quantization: (packed uint8, fp32 absmax), byte for byte what bitsandbytes stores."""
    return quantize_4bit(w, NF4_CODE, blocksize)


def dequantize_nf4(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    blocksize: int = 64,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Inverse of `quantize_nf4`: NF4 level times block absmax, as `dtype` (default float32)."""
    return dequantize_4bit(packed, absmax, shape, NF4_CODE, blocksize, dtype)


def _nearest_level_on_grid(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Nearest level as bitsandbytes' CPU 8-bit kernel finds it, through a 65,536-point grid.

    For speed, bitsandbytes rounds x in [-1, 1] to the nearest of 65,536 evenly spaced grid
    points and returns the level nearest that grid point (precomputed). When x lies within half
    a grid step (1.5e-5) of a midpoint between levels, that can be the second-nearest level.
    """
    grid_size = 65536
    grid = -1.0 + (2.0 * torch.arange(grid_size, dtype=torch.float32)) / (grid_size - 1)
    level_of_grid_point = torch.bucketize(grid, (code[:-1] + code[1:]) * 0.5)
    grid_index = ((x.clamp(-1.0, 1.0) + 1.0) * 0.5 * (grid_size - 1) + 0.5).long()
    return level_of_grid_point[grid_index]


def quantize_blockwise_8bit(
    x: torch.Tensor, code: torch.Tensor = DYNAMIC_CODE, blocksize: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization of `x` to a sorted 256-level code: (uint8, fp32 absmax)."""
    _check_blocksize(blocksize, SECOND_LEVEL_BLOCKSIZES)
    flat = x.reshape(-1).float()
    n = flat.numel()
    absmax = torch.nn.functional.pad(flat, (0, -n % blocksize)).view(-1, blocksize).abs().amax(1)
    inverse = torch.where(absmax > 0, 1.0 / absmax, 0.0).repeat_interleave(blocksize)[:n]
    indices = _nearest_level_on_grid(flat * inverse, code)
    zero_block = (absmax == 0).repeat_interleave(blocksize)[:n]
    return torch.where(zero_block, 0, indices).to(torch.uint8), absmax


class DoubleQuant(NamedTuple):
    """Absmax values stored in 8 bits: codes, one fp32 absmax per 256 codes, and the fp32 mean."""

    codes: torch.Tensor
    absmax: torch.Tensor
    offset: torch.Tensor


def double_quantize(absmax: torch.Tensor, blocksize: int = 256) -> DoubleQuant:
    """Quantize the first-level absmax values to 8 bits, as bitsandbytes' compress_statistics does.

    The absmax values are all positive and similar; subtracting their mean centres them on 0,
    so the signed 8-bit dynamic code spends its levels on the differences.
    """
    _check_weights(absmax)
    offset = absmax.float().mean()
    codes, absmax2 = quantize_blockwise_8bit(absmax.float() - offset, DYNAMIC_CODE, blocksize)
    return DoubleQuant(codes, absmax2, offset)


def double_dequantize(
    codes: torch.Tensor, absmax: torch.Tensor, offset: torch.Tensor, blocksize: int = 256
) -> torch.Tensor:
    """First-level absmax values back from `double_quantize`: level x absmax2 + mean, in fp32."""
    _check_blocksize(blocksize, SECOND_LEVEL_BLOCKSIZES)
    if codes.dtype != torch.uint8 or absmax.numel() != -(-codes.numel() // blocksize):
        raise ValueError(
            f"codes={codes.dtype}[{codes.numel()}], absmax[{absmax.numel()}]: pass the output "
            f"of double_quantize and the blocksize it used ({blocksize} given)"
        )
    n = codes.numel()
    levels = DYNAMIC_CODE.to(codes.device)[codes.reshape(-1).long()]
    return levels * absmax.float().repeat_interleave(blocksize)[:n] + offset


def bits_per_parameter(
    blocksize: int = 64, double_quant: bool = False, second_blocksize: int = 256, bits: int = 4
) -> float:
    """Storage per weight: `bits` + 32/blocksize, or with double quantization
    `bits` + 8/blocksize + 32/(blocksize * second_blocksize) (one fp32 mean per tensor ignored)."""
    if not double_quant:
        return bits + 32 / blocksize
    return bits + 8 / blocksize + 32 / (blocksize * second_blocksize)


class QuantError(NamedTuple):
    """How far the 4-bit round trip lands from the original weights, and what it costs."""

    mse: float
    max_error: float
    bits_per_parameter: float


def quantization_error(
    w: torch.Tensor, method: str = "nf4", blocksize: int = 64, double_quant: bool = False
) -> QuantError:
    """Quantize `w` with `method` ("nf4", "fp4" or "int4"), dequantize, and measure the error."""
    if method not in CODES:
        raise ValueError(f"method={method!r}: choose one of {sorted(CODES)}")
    code = CODES[method]
    packed, absmax = quantize_4bit(w, code, blocksize)
    if double_quant:
        absmax = double_dequantize(*double_quantize(absmax))
    restored = dequantize_4bit(packed, absmax, w.shape, code, blocksize)
    error = restored - w.detach().float()
    return QuantError(
        mse=error.pow(2).mean().item(),
        max_error=error.abs().max().item(),
        bits_per_parameter=bits_per_parameter(blocksize, double_quant),
    )


def combined_error(
    weights: Mapping[str, torch.Tensor],
    method: str = "nf4",
    blocksize: int = 64,
    double_quant: bool = False,
) -> QuantError:
    """`quantization_error` over several tensors, each quantized on its own as
    bitsandbytes does per layer: mean squared error over all weights, largest error of any."""
    total_sq, count, worst = 0.0, 0, 0.0
    for w in weights.values():
        err = quantization_error(w, method, blocksize, double_quant)
        total_sq += err.mse * w.numel()
        count += w.numel()
        worst = max(worst, err.max_error)
    return QuantError(total_sq / count, worst, bits_per_parameter(blocksize, double_quant))


def weights_rms(weights: Mapping[str, torch.Tensor]) -> float:
    """Root mean square of all the weights together (the yardstick for the errors)."""
    flat = torch.cat([w.reshape(-1) for w in weights.values()])
    return flat.pow(2).mean().sqrt().item()
