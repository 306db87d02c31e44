"""Figures for the LoRA lesson: parameters vs rank, loss curves, singular values of dW.

Each function takes numbers the package computed and returns a matplotlib Figure (no pyplot
state, so a notebook shows it once and a test can inspect it).
"""

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure

SMALL = (5.5, 3.2)


def plot_params_vs_rank(
    ranks: Sequence[int], counts: Mapping[str, Sequence[int]], total: int
) -> Figure:
    """Trainable LoRA parameters against rank for each choice of target modules, beside the
    model's full parameter count (what full fine-tuning trains)."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    for label, values in counts.items():
        ax.plot(ranks, values, marker="o", label=f"LoRA on {label}")
    ax.axhline(total, color="black", linestyle="--", label=f"full fine-tune ({total:,})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(ranks), [str(r) for r in ranks])
    ax.set_xlabel("rank r")
    ax.set_ylabel("trainable parameters")
    ax.set_title("LoRA trains r (d_in + d_out) numbers per adapted matrix")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_losses(curves: Mapping[str, Sequence[tuple[int, float]]]) -> Figure:
    """Training loss (reply tokens only) against step, one line per run."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    for label, points in curves.items():
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on reply tokens")
    ax.set_title("Training loss")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_singular_values(spectra: Mapping[str, torch.Tensor], r: int, first: int = 32) -> Figure:
    """The first singular values of each dW, divided by the largest, on a log scale; a LoRA
    update of rank r has at most r that are not zero."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    for label, values in spectra.items():
        shown = (values[:first] / values[0]).clamp_min(1e-8)
        ax.plot(range(1, len(shown) + 1), shown.tolist(), marker=".", label=label)
    ax.axvline(r, color="gray", linestyle=":", label=f"r = {r}")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("sigma_i / sigma_1")
    ax.set_title("Singular values of the learned update dW")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
