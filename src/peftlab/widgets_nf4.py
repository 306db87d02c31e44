"""The interactive parts of the QLoRA lesson: a blocksize explorer (ipywidgets) on real weights,
and a checker for the notebook's dequantization exercise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import torch

from peftlab import nf4
from peftlab.plots_nf4 import combined_error, weights_rms


def explorer_html(
    weights: Mapping[str, torch.Tensor], blocksize: int, method: str, double_quant: bool
) -> str:
    """The explorer's readout: bits per parameter, storage, and round-trip error."""
    err = combined_error(weights, method, blocksize, double_quant)
    n = sum(w.numel() for w in weights.values())
    rows = [
        ("bits per parameter", f"{err.bits_per_parameter:.4f}"),
        ("storage", f"{n * err.bits_per_parameter / 8 / 1e6:.3f} MB (bf16: {2 * n / 1e6:.3f} MB)"),
        ("RMS error / RMS weight", f"{100 * err.mse**0.5 / weights_rms(weights):.2f}%"),
        ("MSE", f"{err.mse:.3e}"),
        ("max error", f"{err.max_error:.4f}"),
    ]
    cells = "".join(f"<tr><td>{k}</td><td style='text-align:right'>{v}</td></tr>" for k, v in rows)
    title = f"{method.upper()}{' + double quant' if double_quant else ''}, blocksize {blocksize}"
    return f"<b>{title}</b> on {n:,} weights<table>{cells}</table>"


def blocksize_explorer(
    weights: Mapping[str, torch.Tensor] | torch.Tensor,
    blocksizes: Sequence[int] = nf4.BLOCKSIZES,
) -> widgets.VBox:
    """A blocksize slider, a code chooser and a double-quantization box over `weights`;
    the readout below recomputes on every change (results cached per setting)."""
    if isinstance(weights, torch.Tensor):
        weights = {"weight": weights}
    for b in blocksizes:
        nf4._check_blocksize(b)
    cache: dict[tuple, str] = {}

    def readout(blocksize: int, method: str, double_quant: bool) -> str:
        key = (blocksize, method, double_quant)
        if key not in cache:
            cache[key] = explorer_html(weights, *key)
        return cache[key]

    start = 64 if 64 in blocksizes else blocksizes[0]
    slider = widgets.SelectionSlider(options=list(blocksizes), value=start, description="blocksize")
    method = widgets.ToggleButtons(options=list(nf4.CODES), value="nf4", description="code")
    double = widgets.Checkbox(value=False, description="double quantization")
    out = widgets.HTML(readout(start, "nf4", False))

    def update(_change=None) -> None:
        out.value = readout(slider.value, method.value, double.value)

    for control in (slider, method, double):
        control.observe(update, names="value")
    return widgets.VBox([slider, method, double, out])


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
