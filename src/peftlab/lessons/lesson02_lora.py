"""Figures and tables for the LoRA lesson: parameters vs rank, loss curves, singular values
of dW, and the markdown tables lesson 02 prints.

Figures are matplotlib Figure objects (no pyplot state, so a notebook shows each once and a
test can inspect it); tables are markdown strings built from numbers the package computes.
"""

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import nn

from peftlab import lora, memory
from peftlab.tables import markdown_table

SMALL = (5.5, 3.2)
LESSON_TARGETS = {"q_proj, v_proj": ["q_proj", "v_proj"], "all linear layers": "all-linear"}
LESSON_RANKS = (1, 8, 64)


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


def meta_model(name: str) -> nn.Module:
    """A model of a preset's shape (e.g. "llama-2-7b") on the meta device: no memory, no weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(memory.preset(name))


def rank_rows(
    model: nn.Module, ranks: Sequence[int], targets: Mapping[str, lora.Targets]
) -> list[dict]:
    """LoRA's trainable parameters at each rank for each choice of target modules."""
    total = sum(p.numel() for p in model.parameters())
    return [
        {"r": r, "total": total}
        | {label: lora.lora_param_count(model, t, r) for label, t in targets.items()}
        for r in ranks
    ]


def _first_left(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table with the first column left-aligned and numbers right-aligned."""
    return markdown_table(header, body, ["---"] + ["---:"] * (len(header) - 1)) + "\n"


def rank_table(rows: Sequence[Mapping]) -> str:
    """r, then trainable parameters and their share of the model for each target choice."""
    labels = [k for k in rows[0] if k not in ("r", "total")]
    body = [
        [str(row["r"])] + [f"{row[k]:,} ({row[k] / row['total']:.3%})" for k in labels]
        for row in rows
    ]
    return _first_left(["r", *labels], body)


def results_table(rows: Sequence[Mapping]) -> str:
    """One line per run: what trained, for how many steps, how much of the model, the final
    training loss (None for the untrained base) and the held-out rubric."""
    body = [
        [
            row["run"],
            str(row["steps"]),
            f"{row['trainable']:,} ({row['trainable'] / row['total']:.2%})",
            "–" if row["final_loss"] is None else f"{row['final_loss']:.2f}",
            f"{row['rubric']:.2f}",
        ]
        for row in rows
    ]
    header = ["run", "steps", "trainable parameters", "final loss", "held-out rubric"]
    return _first_left(header, body)
