"""The QLoRA lesson's widget: a blocksize explorer (ipywidgets) on real weights (notebook 03)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import torch

from peftlab import nf4


def explorer_html(
    weights: Mapping[str, torch.Tensor], blocksize: int, method: str, double_quant: bool
) -> str:
    """The explorer's readout: bits per parameter, storage, and round-trip error."""
    err = nf4.combined_error(weights, method, blocksize, double_quant)
    n = sum(w.numel() for w in weights.values())
    rows = [
        ("bits per parameter", f"{err.bits_per_parameter:.4f}"),
        ("storage", f"{n * err.bits_per_parameter / 8 / 1e6:.3f} MB (bf16: {2 * n / 1e6:.3f} MB)"),
        ("RMS error / RMS weight", f"{100 * err.mse**0.5 / nf4.weights_rms(weights):.2f}%"),
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
