"""Lesson 07, the PEFT family side by side (notebook 07, lessons/07-peft-methods.md).

`results` runs `peft_family.compare_family` at the notebook's scale (cached: one run serves the
notebook and the lesson test); the functions below format its tables and draw its figures.
`benchmarks/peft_methods.py` runs the same protocol at a larger scale, on any causal LM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from peftlab import peft_family
from peftlab.peft_family import FamilyBudget, MethodResult
from peftlab.peft_methods import CORE, REFERENCE
from peftlab.seed import one_thread
from peftlab.tables import markdown_table

LESSON = "07-peft-methods.md"
NOTEBOOK = "07_peft_methods.ipynb"
TRAINS = True
LESSON_PROTOCOL = FamilyBudget()
# Seconds per step are wall-clock timings on a shared CPU: their ratios to LoRA move between
# runs. Losses and scores are computed on one thread and repeat on one CPU; on another CPU's
# kernels their last digit may move (a loss in its third decimal, one reply of the held-out set
# in a score).
ONE_REPLY = 1 / LESSON_PROTOCOL.n_heldout + 0.01
TOLERANCE = {
    "costs": {"s/step / LoRA": 0.5},
    "results": {"train loss": 0.01, "val loss": 0.01, "score": ONE_REPLY, "spread": ONE_REPLY},
    "lora score": ONE_REPLY,
    "prefix score": ONE_REPLY,
    "prompt score": ONE_REPLY,
    "dora step ratio": 0.5,
    "lr grid": {"val loss 1": 0.02, "val loss 2": 0.02},
}
# A run whose validation loss ends above this has diverged: its exact loss is chaotic (it moves
# by tenths between CPUs), so the grid table says "diverged" instead. Every run that learns ends
# far below it (prompt tuning, the slowest, near 1.1); one that blows up ends far above it.
DIVERGED = 1.5
KB = 1e3
WORKERS = 2


def results(
    model_name: str | None = None,
    *,
    protocol: FamilyBudget = LESSON_PROTOCOL,
    methods: Sequence[str] = CORE,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Every method of `methods` trained and scored under `protocol` (`compare_family`), each
    run on one thread so that losses and scores repeat, two methods at a time in two worker
    processes. About two minutes the first time on two cores, then read from `lessons.cache`;
    `progress(line)` sees one line per run, method by method, when the workers are done."""
    from peftlab.lessons.cache import cached

    return cached(
        "lesson07", _compute, files=True, live={"progress": progress}, model_name=model_name,
        protocol=protocol, methods=tuple(methods),
    )  # fmt: skip


def quotes(results: Mapping) -> dict[str, str]:
    """Every table and number lesson 07 quotes, by region name."""
    methods = by_method(results)
    ref = methods[REFERENCE]
    full = methods["full fine-tuning"]
    merging = [r for r in results["results"] if r.merges]
    top = sum(r.lr == max(r.lr_val_losses) for r in results["results"])
    return {
        "protocol": protocol_text(results["protocol"]),
        "results": results_table(results),
        "costs": costs_table(results),
        "lr grid": lr_table(results),
        "unsupported": unsupported_text(results),
        "lora params": f"{ref.trainable_params:,}",
        "full params": f"{full.trainable_params:,}",
        "lora score": f"{ref.score:.2f}",
        "prefix score": f"{methods['prefix tuning'].score:.2f}",
        "prompt score": f"{methods['prompt tuning'].score:.2f}",
        "dora step ratio": f"{methods['DoRA'].seconds_per_step / ref.seconds_per_step:.1f}x",
        "dora memory ratio": f"{methods['DoRA'].memory_bytes / ref.memory_bytes:.1f}x",
        "full memory ratio": f"{full.memory_bytes / ref.memory_bytes:.1f}x",
        "7b memory ratio": f"{seven_b_memory_ratio(False):.1f}x",
        "7b memory ratio checkpointed": f"{seven_b_memory_ratio(True):.1f}x",
        "merge count": f"{sum(r.merge_identical is True for r in merging)} of {len(merging)}",
        "grid top": f"{top} of {len(results['results'])}",
        "lora disk": f"{ref.disk_bytes / KB:,.0f} kB",
        "full disk": f"{full.disk_bytes / 1e6:,.1f} MB",
    }


def _compute(model_name, protocol, methods, scratch: Path, progress=None) -> dict:
    # two methods at a time in two processes, one thread each: the same results, in about half
    # the time on two cores (compare_family)
    workers = min(WORKERS, os.cpu_count() or 1)
    with one_thread():
        return peft_family.compare_family(protocol, methods, model_name, scratch, progress, workers)


def by_method(results: Mapping) -> dict[str, MethodResult]:
    return {r.method: r for r in results["results"]}


def _merge_cell(r: MethodResult) -> str:
    if not r.merges:
        return "no"
    return "yes, identical replies" if r.merge_identical else "yes, replies differ"


def results_table(results: Mapping) -> str:
    """What each method bought: trainable parameters (peft's count), its learning rate (picked
    on validation loss), losses, held-out rubric score (mean and spread over seeds)."""
    rows = [
        (r.method, f"{r.trainable_params:,}", f"{r.lr:g}",
         f"{statistics_mean(r.train_loss):.3f}", f"{statistics_mean(r.val_loss):.3f}",
         f"{r.score:.2f}", f"{r.score_spread:.2f}")
        for r in results["results"]
    ]  # fmt: skip
    header = ("method", "trainable params", "lr", "train loss", "val loss", "score", "spread")
    return markdown_table(header, rows, ("---",) + ("---:",) * 6)


def statistics_mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def costs_table(results: Mapping) -> str:
    """What each method cost: bytes on disk, measured training memory and step time against
    LoRA, and whether it merges into the base."""
    ref = by_method(results)[REFERENCE]
    rows = [
        (r.method, f"{r.disk_bytes / KB:,.0f}", f"{r.memory_bytes / ref.memory_bytes:.2f}",
         f"{r.seconds_per_step / ref.seconds_per_step:.2f}", _merge_cell(r))
        for r in results["results"]
    ]  # fmt: skip
    header = ("method", "on disk (kB)", "memory / LoRA", "s/step / LoRA", "merges")
    return markdown_table(header, rows, ("---", "---:", "---:", "---:", "---"))


def lr_table(results: Mapping) -> str:
    """Validation loss at each learning rate of the grid (first seed): the chosen one is lowest."""
    rows = []
    for r in results["results"]:
        cells = [c for lr, loss in r.lr_val_losses.items() for c in (f"{lr:g}", _loss(loss))]
        rows.append((r.method, *cells, f"{r.lr:g}"))
    n = len(results["protocol"].lr_factors)
    header = ("method", *(c for i in range(n) for c in (f"lr {i + 1}", f"val loss {i + 1}")))
    return markdown_table((*header, "chosen"), rows, ("---",) + ("---:",) * (2 * n + 1))


def _loss(loss: float) -> str:
    return f"{loss:.3f}" if loss < DIVERGED else "diverged"


def unsupported_text(results: Mapping) -> str:
    bad = results["unsupported"]
    if not bad:
        return "every method trained"
    return "; ".join(f"{u.method}: `{u.error}`" for u in bad)


def protocol_text(protocol: FamilyBudget) -> str:
    factors = ", ".join(f"{f:g}" for f in protocol.lr_factors)
    return (
        f"{protocol.steps} steps of {protocol.batch_size} chats from "
        f"{protocol.n_train - protocol.n_val} fine-tune examples ({protocol.n_val} held back "
        f"for validation), learning rates base x ({factors}), {len(protocol.seeds)} seeds, "
        f"{protocol.n_heldout} held-out complaints"
    )


def plot_score_vs_params(results: Mapping) -> Figure:
    """Held-out score against trainable parameters (log x), error bars the spread over seeds."""
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.subplots()
    groups: dict[int, list[MethodResult]] = {}
    for r in results["results"]:
        ax.errorbar(r.trainable_params, r.score, yerr=r.score_spread, fmt="o", capsize=3)
        groups.setdefault(r.trainable_params, []).append(r)
    for i, (params, rows) in enumerate(sorted(groups.items())):  # one label per x, staggered
        label = ", ".join(r.method for r in rows)
        offset = (5, (4, -11, 15, -22)[i % 4])
        ax.annotate(label, (params, rows[0].score), fontsize=7, xytext=offset,
                    textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("held-out rubric score")
    ax.set_ylim(-0.08, 1.12)
    ax.set_title("what each method bought, same steps and data (toy scale)", fontsize=9)
    return fig


def plot_costs(results: Mapping) -> Figure:
    """Seconds per step and measured training memory, each relative to LoRA."""
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    time_ax, mem_ax = fig.subplots(1, 2, sharey=True)
    rows = results["results"]
    ref = by_method(results)[REFERENCE]
    names = [r.method for r in rows]
    time_ax.barh(names, [r.seconds_per_step / ref.seconds_per_step for r in rows])
    mem_ax.barh(names, [r.memory_bytes / ref.memory_bytes for r in rows], color="#ff7f0e")
    for ax, title in ((time_ax, "seconds per step / LoRA"), (mem_ax, "training memory / LoRA")):
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    time_ax.invert_yaxis()
    return fig


def seven_b_memory_ratio(gradient_checkpointing: bool) -> float:
    """Full fine-tuning's training memory over the lesson's LoRA (r=8, every linear layer) on
    Llama-2-7B, one 512-token sequence, by `peftlab.memory` (lesson 01's calculator): what the
    toy model's measured ratio becomes at 7B, where the weights, not the activations, dominate."""
    from peftlab import memory

    kwargs = dict(batch_size=1, seq_len=512, gradient_checkpointing=gradient_checkpointing)
    full = memory.estimate("llama-2-7b", "full", **kwargs)
    lora = memory.estimate("llama-2-7b", "lora", r=8, target_modules="all-linear", **kwargs)
    return full.total / lora.total
