"""peftlab.nf4 against the paper's arithmetic and, byte for byte, against bitsandbytes on the CPU.

bitsandbytes has two CPU paths for 4-bit dequantization: a C++ kernel and a PyTorch reference
(`backends.default.ops._dequantize_4bit_compute`, its fallback). In bitsandbytes 0.50.2 the C++
kernel's AVX-512 branch is wrong when a block of the flattened weight crosses a row (rows whose
length is a multiple of 16 but not of the blocksize): see `test_where_the_cpu_kernel_is_wrong`.
On every other shape we compare with the kernel itself; on all shapes with the reference.
"""

import math

import bitsandbytes.functional as bnbf
import pytest
import torch
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

from peftlab import nf4, seed_everything

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (shape, blocksize): square, smaller than a block, odd sizes, 1-D with a partial last block,
# rows that are whole blocks, and a blocksize larger than the tensor.
CASES = [
    ((64, 64), 64),
    ((3, 5), 64),
    ((7,), 32),
    ((130,), 64),
    ((33, 65), 64),
    ((48, 128), 128),
    ((10, 100), 64),
    ((5, 512), 256),
    ((2, 1000), 4096),
]


@pytest.fixture(autouse=True, scope="module")
def eager_bitsandbytes():
    """bitsandbytes wraps its PyTorch fallback in torch.compile; eager gives the same numbers
    without a compile per shape (seconds each on two cores)."""
    torch.compiler.set_stance("force_eager")
    yield
    torch.compiler.set_stance("default")


def weights(shape, dtype, seed=0):
    seed_everything(seed)
    return (torch.randn(shape) * 0.02).to(dtype)


def kernel_is_correct_for(shape, blocksize):
    """Shapes on which bitsandbytes' C++ CPU kernel gives the reference result (see module doc)."""
    cols = shape[-1]
    rows = math.prod(shape[:-1])
    return cols % 2 == 1 or cols % blocksize == 0 or rows == 1 or cols % 16 != 0


def reference_dequantize(packed, absmax, code, blocksize, shape, dtype):
    return _dequantize_4bit_compute(packed.reshape(-1), absmax, code, blocksize, shape, dtype)


# --- the codes ---------------------------------------------------------------------------------


def test_nf4_code_equals_bitsandbytes_table():
    table = bnbf.get_4bit_type("nf4", device="cpu")
    assert nf4.NF4_CODE.shape == (16,)
    assert (nf4.NF4_CODE - table).abs().max().item() <= 1e-6


def test_nf4_code_shape_of_the_idea():
    code = nf4.NF4_CODE
    assert torch.all(code[1:] > code[:-1])
    assert code[0].item() == -1.0 and code[7].item() == 0.0 and code[15].item() == 1.0
    assert int((code > 0).sum()) == 8 and int((code < 0).sum()) == 7


def test_nf4_offset_is_the_qlora_midpoint():
    assert nf4.NF4_OFFSET == pytest.approx(((1 - 1 / 30) + (1 - 1 / 32)) / 2, abs=1e-7)


def test_nf4_levels_sit_at_evenly_spaced_normal_probabilities():
    """Undo the scaling, apply the normal CDF (math.erf, not torch): even steps in probability."""
    top = math.sqrt(2) * torch.erfinv(torch.tensor(2 * nf4.NF4_OFFSET - 1, dtype=torch.float64))
    cdf = [0.5 * (1 + math.erf(v * top.item() / math.sqrt(2))) for v in nf4.NF4_CODE.tolist()]
    steps = [b - a for a, b in zip(cdf, cdf[1:], strict=False)]
    negative_step = (nf4.NF4_OFFSET - 0.5) / 7
    positive_step = (nf4.NF4_OFFSET - 0.5) / 8
    assert steps[:7] == pytest.approx([negative_step] * 7, abs=1e-6)
    assert steps[7:] == pytest.approx([positive_step] * 8, abs=1e-6)
    assert cdf[0] == pytest.approx(1 - nf4.NF4_OFFSET, abs=1e-6)
    assert cdf[-1] == pytest.approx(nf4.NF4_OFFSET, abs=1e-6)


def test_fp4_and_int4_codes():
    assert torch.equal(nf4.FP4_CODE, bnbf.get_4bit_type("fp4", device="cpu"))
    levels = sorted(set(nf4.INT4_CODE.tolist()))
    assert levels == pytest.approx([k / 7 for k in range(-7, 8)])
    assert nf4.INT4_CODE.numel() == 16


def test_dynamic_code_equals_bitsandbytes():
    code = nf4.DYNAMIC_CODE
    assert torch.equal(code, bnbf.create_dynamic_map())
    assert code.numel() == 256 and torch.all(code[1:] >= code[:-1])
    assert code.max().item() == 1.0 and code.abs().min().item() == 0.0


# --- parity with bitsandbytes: 4-bit ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "blocksize"), CASES)
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_quantize_and_dequantize_match_bitsandbytes(shape, blocksize, dtype, quant_type):
    w = weights(shape, dtype)
    code = nf4.CODES[quant_type]
    packed, absmax = nf4.quantize_4bit(w, code, blocksize)
    bnb_packed, state = bnbf.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type)

    assert packed.dtype == torch.uint8 and packed.numel() == (w.numel() + 1) // 2
    assert torch.equal(packed, bnb_packed.reshape(-1))
    assert torch.equal(absmax, state.absmax)

    ours = nf4.dequantize_4bit(packed, absmax, shape, code, blocksize, dtype)
    assert ours.dtype == dtype and ours.shape == w.shape
    reference = reference_dequantize(packed, absmax, code, blocksize, shape, dtype)
    assert torch.equal(ours.reshape(-1), reference.reshape(-1))
    if kernel_is_correct_for(shape, blocksize):
        # The C++ kernel returns 1-D weights as (1, n): compare values, not that quirk.
        assert torch.equal(ours.reshape(-1), bnbf.dequantize_4bit(bnb_packed, state).reshape(-1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "blocksize"), CASES)
def test_double_quantized_statistics_match_bitsandbytes(shape, blocksize, dtype):
    w = weights(shape, dtype, seed=1)
    packed, absmax = nf4.quantize_nf4(w, blocksize)
    bnb_packed, state = bnbf.quantize_4bit(
        w, blocksize=blocksize, quant_type="nf4", compress_statistics=True
    )
    dq = nf4.double_quantize(absmax)

    assert torch.equal(packed, bnb_packed.reshape(-1))
    assert torch.equal(dq.codes, state.absmax)
    assert torch.equal(dq.absmax, state.state2.absmax)
    assert torch.equal(dq.offset, state.offset)
    assert state.state2.blocksize == 256 and torch.equal(state.state2.code, nf4.DYNAMIC_CODE)

    restored_absmax = nf4.double_dequantize(*dq)
    bnb_absmax = bnbf.dequantize_blockwise(state.absmax, state.state2) + state.offset
    assert torch.equal(restored_absmax, bnb_absmax)

    ours = nf4.dequantize_nf4(packed, restored_absmax, shape, blocksize, dtype)
    if kernel_is_correct_for(shape, blocksize):
        assert torch.equal(ours.reshape(-1), bnbf.dequantize_4bit(bnb_packed, state).reshape(-1))


def test_where_the_cpu_kernel_is_wrong():
    """A block crosses rows of 96 (a multiple of 16, not of 64): on AVX-512 machines bitsandbytes
    0.50.2's C++ kernel scales with the wrong absmax. Ours equals bitsandbytes' own reference
    there, so its error can only be smaller or equal (equal where the kernel is right)."""
    w = weights((8, 96), torch.float32, seed=2)
    packed, absmax = nf4.quantize_nf4(w)
    bnb_packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    ours = nf4.dequantize_nf4(packed, absmax, w.shape)
    reference = reference_dequantize(packed, absmax, nf4.NF4_CODE, 64, w.shape, torch.float32)
    kernel = bnbf.dequantize_4bit(bnb_packed, state)
    assert torch.equal(ours, reference)
    assert (ours - w).pow(2).mean() <= (kernel - w).pow(2).mean()


# --- second level: the grid lookup --------------------------------------------------------------


def test_grid_lookup_is_nearest_within_one_grid_step():
    """bitsandbytes' CPU 8-bit kernel rounds to a 65,536-point grid first (see nf4 docstring):
    the level it picks is never worse than the nearest by more than one grid step, 2/65535."""
    seed_everything(3)
    x = torch.rand(200_000) * 2 - 1
    code = nf4.DYNAMIC_CODE
    picked = code[nf4._nearest_level_on_grid(x, code)]
    nearest = code[(x[:, None] - code[None, :]).abs().argmin(dim=1)]
    slack = (x - picked).abs() - (x - nearest).abs()
    assert slack.max().item() <= 2 / 65535
    assert (picked != nearest).float().mean().item() < 0.01


def test_double_quantization_keeps_absmax_close():
    seed_everything(4)
    absmax = torch.rand(10_000) * 0.1 + 0.01
    restored = nf4.double_dequantize(*nf4.double_quantize(absmax))
    assert restored.shape == absmax.shape
    assert (restored - absmax).abs().max().item() < 0.01 * absmax.max().item()


# --- the arithmetic -----------------------------------------------------------------------------


def test_bits_per_parameter_formulas():
    assert nf4.bits_per_parameter(64) - 4 == 0.5
    assert nf4.bits_per_parameter(64, double_quant=True) - 4 == 0.126953125
    saving = nf4.bits_per_parameter(64) - nf4.bits_per_parameter(64, double_quant=True)
    assert saving == 0.373046875


def test_bits_per_parameter_equals_the_bytes_stored():
    n = 64 * 256 * 4
    w = weights((n,), torch.float32)
    packed, absmax = nf4.quantize_nf4(w)
    single = (packed.numel() * 8 + absmax.numel() * 32) / n
    assert single == nf4.bits_per_parameter(64)
    dq = nf4.double_quantize(absmax)
    double = (packed.numel() * 8 + dq.codes.numel() * 8 + dq.absmax.numel() * 32) / n
    assert double == nf4.bits_per_parameter(64, double_quant=True)


def test_levels_times_absmax_survive_the_round_trip_exactly():
    w = (nf4.NF4_CODE * 0.75).repeat(8)
    packed, absmax = nf4.quantize_nf4(w)
    assert torch.equal(absmax, torch.full((2,), 0.75))
    assert torch.equal(nf4.dequantize_nf4(packed, absmax, w.shape), w)


def test_nibble_order_first_value_in_the_high_nibble():
    w = torch.tensor([-1.0, 1.0, 0.0])
    packed, _ = nf4.quantize_nf4(w)
    assert packed.tolist() == [0x0F, 0x77]  # the odd last value is padded with 0, level 7
    assert packed.tolist() == bnbf.quantize_4bit(w, quant_type="nf4")[0].reshape(-1).tolist()


def test_quantization_error_on_normal_weights():
    w = weights((256, 256), torch.float32, seed=5)
    errors = {m: nf4.quantization_error(w, m) for m in ("nf4", "fp4", "int4")}
    assert errors["nf4"].mse < errors["int4"].mse < errors["fp4"].mse
    assert all(e.bits_per_parameter == 4.5 for e in errors.values())
    # Worst case: half the widest gap between levels, times the largest absmax.
    widest_half_gap = (nf4.NF4_CODE[1:] - nf4.NF4_CODE[:-1]).max().item() / 2
    assert errors["nf4"].max_error <= widest_half_gap * w.abs().max().item() * (1 + 1e-6)
    assert errors["int4"].max_error <= w.abs().max().item() / 14 * (1 + 1e-6)

    doubled = nf4.quantization_error(w, "nf4", double_quant=True)
    assert doubled.bits_per_parameter == 4.126953125
    assert doubled.mse == pytest.approx(errors["nf4"].mse, rel=0.02)


def test_smaller_blocks_cost_bits_and_save_error():
    w = weights((128, 512), torch.float32, seed=6)
    small, large = nf4.quantization_error(w, "nf4", 32), nf4.quantization_error(w, "nf4", 1024)
    assert small.mse < large.mse
    assert small.bits_per_parameter > large.bits_per_parameter


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("blocksize", [0, 16, 48, 8192])
def test_unsupported_blocksize(blocksize):
    with pytest.raises(ValueError, match=f"blocksize={blocksize}"):
        nf4.quantize_nf4(torch.randn(64), blocksize)


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (torch.empty(0, 64), "empty"),
        (torch.tensor([1.0, float("nan")]), "NaN"),
        (torch.tensor([1.0, float("inf")]), "infinite"),
        (torch.tensor([1, 2, 3], dtype=torch.int8), "integer"),
        (torch.tensor([1.0], dtype=torch.float64), "float64"),
    ],
)
def test_bad_weights(w, match):
    with pytest.raises(ValueError, match=match):
        nf4.quantize_nf4(w)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        nf4.quantize_nf4([0.1, 0.2])


def test_bad_dequantize_inputs():
    packed, absmax = nf4.quantize_nf4(torch.randn(128))
    with pytest.raises(ValueError, match="needs 64 uint8 bytes"):
        nf4.dequantize_nf4(packed[:32], absmax, (64, 2))
    with pytest.raises(ValueError, match="absmax has 2 values"):
        nf4.dequantize_nf4(packed, absmax, (128,), blocksize=32)
    with pytest.raises(ValueError, match="dtype=torch.int32"):
        nf4.dequantize_nf4(packed, absmax, (128,), dtype=torch.int32)


def test_bad_method_and_second_level_blocksize():
    with pytest.raises(ValueError, match="method='int8'"):
        nf4.quantization_error(torch.randn(64), "int8")
    with pytest.raises(ValueError, match="blocksize=32"):
        nf4.double_quantize(torch.rand(100), blocksize=32)
    dq = nf4.double_quantize(torch.rand(300))
    with pytest.raises(ValueError, match="pass the output of double_quantize"):
        nf4.double_dequantize(dq.codes, dq.absmax, dq.offset, blocksize=64)
