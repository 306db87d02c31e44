"""Figures and tables for the customer-support lesson (notebook 05, lessons/05).

Figures are matplotlib Figures built without pyplot state (safe in tests and under nbval);
tables are HTML or markdown strings the notebook displays and the lesson quotes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from peftlab.rubric import CRITERIA

SMALL = (6.0, 3.0)
BEFORE_COLOR, AFTER_COLOR = "#8c959f", "#1f6feb"
PASS, FAIL = "&#10003;", "&#10007;"


class LossCurve:
    """An `on_loss(step, loss)` callback that records the training loss and can draw it.

    With `live=True` (in Jupyter) it redraws one displayed figure as the losses arrive; otherwise
    it only records, and `figure()` draws the final curve.
    """

    def __init__(self, live: bool = False, title: str = "LoRA fine-tune: training loss") -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.title = title
        self.live = live
        self._handle = None

    def __call__(self, step: int, loss: float) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        if self.live:
            from IPython.display import display

            fig = self.figure()
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)

    def figure(self) -> Figure:
        """The loss against the optimizer step, so far."""
        fig = Figure(figsize=SMALL, layout="constrained")
        ax = fig.add_subplot()
        ax.plot(self.steps, self.losses, marker="o", markersize=3, color=AFTER_COLOR)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss on reply tokens")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        return fig


def criteria_bars(by_criterion: Mapping[str, Mapping[str, float]]) -> Figure:
    """Bars of the share of replies passing each criterion, before vs after fine-tuning.

    `by_criterion` is `support_demo.rubric_by_criterion(rows)`.
    """
    fig = Figure(figsize=SMALL, layout="constrained")
    ax = fig.add_subplot()
    labels = [*CRITERIA, "score"]
    width = 0.38
    sides = ((-width / 2, "before", BEFORE_COLOR), (width / 2, "after", AFTER_COLOR))
    for offset, side, color in sides:
        values = [100 * by_criterion[side][c] for c in labels]
        bars = ax.bar([i + offset for i in range(len(labels))], values, width, label=side,
                      color=color)  # fmt: skip
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(labels)), labels=["greeting", "acknowledges", "action", "timeline",
                                              "mean score"])  # fmt: skip
    ax.set_ylim(0, 115)
    ax.set_ylabel("% of held-out replies")
    ax.set_title("Rubric before vs after LoRA")
    ax.legend(loc="upper left", ncols=2, frameon=False)
    return fig


def sweep_figure(points: Sequence) -> Figure:
    """Mean rubric score against training steps, one line per LoRA rank (`SweepPoint`s)."""
    fig = Figure(figsize=SMALL, layout="constrained")
    ax = fig.add_subplot()
    for r in sorted({p.r for p in points}):
        mine = sorted((p for p in points if p.r == r), key=lambda p: p.steps)
        params = mine[0].trainable_params
        ax.plot([p.steps for p in mine], [p.score for p in mine], marker="o",
                label=f"r = {r} ({params:,} trainable)")  # fmt: skip
    ax.set_xlabel("training steps")
    ax.set_ylabel("mean rubric score")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("What rank and steps buy")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return fig


def _marks(marks: Mapping[str, bool]) -> str:
    return " ".join(
        f"<span title='{c}' style='color:{'#1a7f37' if marks[c] else '#cf222e'}'>"
        f"{PASS if marks[c] else FAIL}</span>"
        for c in CRITERIA
    )


def rows_html(rows: Sequence[dict]) -> str:
    """Side-by-side table: complaint, before and after replies, marks per criterion, scores."""
    legend = " ".join(f"{i + 1}. {c}" for i, c in enumerate(CRITERIA))
    head = "<tr><th>complaint</th><th>before</th><th>marks</th><th>after</th><th>marks</th></tr>"
    body = "".join(
        "<tr>"
        f"<td>{html.escape(r['complaint'])}</td>"
        f"<td>{html.escape(r['before'])}</td>"
        f"<td>{_marks(r['before_marks'])} ({r['before_score']:.2f})</td>"
        f"<td>{html.escape(r['after'])}</td>"
        f"<td>{_marks(r['after_marks'])} ({r['after_score']:.2f})</td>"
        "</tr>"
        for r in rows
    )
    return (
        f"<p><i>marks, in order: {legend}</i></p>"
        f"<table style='text-align:left'>{head}{body}</table>"
    )


def criteria_markdown(by_criterion: Mapping[str, Mapping[str, float]], n: int) -> str:
    """The before/after pass rates as a markdown table (the lesson quotes it)."""
    lines = [
        f"| criterion (share of {n} replies) | before | after |",
        "|---|---:|---:|",
    ]
    for c in CRITERIA:
        before, after = by_criterion["before"][c], by_criterion["after"][c]
        lines.append(f"| {c} | {before:.0%} | {after:.0%} |")
    before, after = by_criterion["before"]["score"], by_criterion["after"]["score"]
    lines.append(f"| **mean score** | {before:.2f} | {after:.2f} |")
    return "\n".join(lines)


def sweep_markdown(points: Sequence) -> str:
    """The sweep as a markdown table: rank, steps, trainable parameters, final loss, score."""
    lines = [
        "| rank r | steps | trainable params | final loss | mean score |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p.r} | {p.steps} | {p.trainable_params:,} | {p.final_loss:.2f} | {p.score:.2f} |"
        for p in points
    ]
    return "\n".join(lines)


def memory_markdown(rows: Sequence[dict], gpu: str = "24 GB consumer (RTX 3090/4090)") -> str:
    """`support_demo.memory_rows` as a markdown table, in GiB (2**30 bytes)."""
    card = gpu.split(" (")[0]
    lines = [
        f"| model | parameters | method | training memory (GiB) | fits a {card} GPU |",
        "|---|---:|---|---:|:---:|",
    ]
    lines += [
        f"| {r['model']} | {r['params'] / 1e6:,.1f} M | {r['method']} | "
        f"{r['total_bytes'] / 2**30:.2f} | {'yes' if r['fits'][gpu] else 'no'} |"
        for r in rows
    ]
    return "\n".join(lines)


def data_markdown(facts: Mapping[str, int]) -> str:
    """`support_demo.data_facts()` as a markdown table: fine-tune set vs held-out set."""
    lines = ["| | fine-tune set | held-out set |", "|---|---:|---:|"]
    lines.append(f"| complaints | {facts['finetune_examples']} | {facts['heldout_complaints']} |")
    for part in ("nouns", "problems", "templates"):
        label = {"nouns": "product nouns", "problems": "kinds of problem",
                 "templates": "sentence frames"}[part]  # fmt: skip
        lines.append(f"| {label} | {facts[f'finetune_{part}']} | {facts[f'heldout_{part}']} |")
    lines.append(
        f"| shared between the two | {facts['shared_nouns']} nouns | "
        f"{facts['complaints_in_both']} complaints |"
    )
    return "\n".join(lines)


def example_markdown(row: Mapping) -> str:
    """One complaint's before and after replies with their scores, as a markdown table."""
    return "\n".join([
        f"| \"{row['complaint']}\" | reply | rubric score |",
        "|---|---|---:|",
        f"| before fine-tuning | {row['before']} | {row['before_score']:.2f} |",
        f"| after fine-tuning | {row['after']} | {row['after_score']:.2f} |",
    ])  # fmt: skip
