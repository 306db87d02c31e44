"""Lesson 05, the customer-support demo (notebook 05, lessons/05-customer-support-demo.md).

Its workflow sits on top of `compare.generate`, `finetune.train_lora` and `rubric.score_reply`:
scored rows for a before/after, the pass rate of each rubric criterion, and a small sweep over
LoRA rank and training steps that shows what each knob buys. Its figures are matplotlib Figures
built without pyplot state; its tables are HTML or markdown strings the notebook displays and the
lesson quotes.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from matplotlib.figure import Figure

from peftlab import base_model, compare, finetune, support_data
from peftlab.compare import score_rows  # noqa: F401  (the notebook's scored rows)
from peftlab.rubric import CRITERIA, mean_score
from peftlab.seed import seed_everything

SIDES = ("before", "after")


def rubric_by_criterion(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Share of replies that pass each criterion, before and after, plus the mean score.

    Works on `score_rows` output and on `Comparison.examples` alike.
    """
    if not rows:
        raise ValueError("no rows to summarize: score at least one complaint")
    summary = {}
    for side in SIDES:
        marks = [row[f"{side}_marks"] for row in rows]
        summary[side] = {c: sum(bool(m[c]) for m in marks) / len(marks) for c in CRITERIA}
        summary[side]["score"] = sum(m["score"] for m in marks) / len(marks)
    return summary


@dataclass(frozen=True)
class SweepPoint:
    """One fine-tune of the sweep: its rank and steps, and what it bought."""

    r: int
    steps: int
    score: float
    trainable_params: int
    final_loss: float
    train_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def run_sweep(
    ranks: Sequence[int],
    steps: Sequence[int],
    complaints: Sequence[str],
    *,
    model_name: str | None = None,
    n_examples: int = 400,
    batch_size: int = 16,
    seed: int = 0,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Fine-tune a fresh base model for every (rank, steps) pair and score it on `complaints`.

    Each run starts from the same seed and the same untouched base weights, so the only
    difference between two points is the knob that changed. Nothing is saved to disk.
    """
    if not ranks or not steps:
        raise ValueError("ranks and steps must each name at least one value, e.g. ranks=(1, 8)")
    if not complaints:
        raise ValueError("no complaints to score: give at least one")
    examples = support_data.finetune_set(n=n_examples, seed=seed)
    points = []
    for r in ranks:
        for n_steps in steps:
            seed_everything(seed)
            model, tokenizer = base_model.load(model_name)
            result = finetune.train_lora(
                model, tokenizer, examples, r=r, alpha=2 * r, steps=n_steps,
                batch_size=batch_size, target_modules=compare.demo_targets(model_name),
                seed=seed, run_name=None, progress=False,
            )  # fmt: skip
            replies = compare.generate(result.model, tokenizer, complaints)
            point = SweepPoint(
                r=r,
                steps=n_steps,
                score=mean_score(replies, complaints),
                trainable_params=result.trainable_params,
                final_loss=result.losses[-1][1] if result.losses else float("nan"),
                train_seconds=result.train_seconds,
            )
            points.append(point)
            if on_point is not None:
                on_point(point)
    return points


def data_facts(n_finetune: int = 400, n_heldout: int = 60, seed: int = 0) -> dict[str, int]:
    """Sizes of the fine-tune set and the held-out set, and how little the two share."""
    train = support_data.finetune_set(n=n_finetune, seed=seed)
    heldout = support_data.heldout_complaints(n=n_heldout, seed=seed)
    shared = set(support_data.FINETUNE_NOUNS) & set(support_data.HELDOUT_NOUNS)
    return {
        "finetune_examples": len(train),
        "heldout_complaints": len(heldout),
        "finetune_nouns": len(support_data.FINETUNE_NOUNS),
        "heldout_nouns": len(support_data.HELDOUT_NOUNS),
        "finetune_problems": len(support_data.FINETUNE_PROBLEMS),
        "heldout_problems": len(support_data.HELDOUT_PROBLEMS),
        "finetune_templates": len(support_data.FINETUNE_TEMPLATES),
        "heldout_templates": len(support_data.HELDOUT_TEMPLATES),
        "shared_nouns": len(shared),
        "complaints_in_both": len({ex.complaint for ex in train} & set(heldout)),
    }


MEMORY_CASES = (
    ("peftlab-base", "lora"),
    ("smollm2-135m", "lora"),
    ("smollm2-135m", "qlora"),
    ("llama-2-7b", "full"),
    ("llama-2-7b", "lora"),
    ("llama-2-7b", "qlora"),
)


def training_memory_rows(
    cases: Sequence[tuple[str, str]] = MEMORY_CASES, r: int = 8, batch_size: int = 4,
    seq_len: int = 512,
) -> list[dict]:  # fmt: skip
    """Training memory (`peftlab.memory.estimate`, bytes) per (preset, method), and the GPUs
    it fits; what you need before pointing the notebook at a real model."""
    from peftlab import memory

    rows = []
    for name, method in cases:
        config = memory.preset(name)
        total = memory.estimate(config, method, r=r, batch_size=batch_size, seq_len=seq_len).total
        rows.append({"model": name, "method": method, "params": memory.count_params(config),
                     "total_bytes": total, "fits": memory.fits(total)})  # fmt: skip
    return rows


LESSON = "05-customer-support-demo.md"
NOTEBOOK = "05_customer_support_demo.ipynb"
TRAINS = True
TOLERANCE: dict = {}  # fp32 training and greedy replies: the figures repeat on every CPU


def results(
    name: str | None = None,
    *,
    seed: int = 0,
    steps: int = 100,
    n_heldout: int = 12,
    sweep_ranks: Sequence[int] = (1, 8),
    sweep_steps: Sequence[int] = (20, 50),
    sweep_n: int = 6,
    on_loss: Callable[[int, float], None] | None = None,
) -> dict:
    """Everything lesson 05 and notebook 05 compute: the data, the fine-tune (LoRA r=8, alpha
    16, `steps` steps of 16 chats, its adapter saved), the before/after on the lesson's complaint
    and `n_heldout` held-out ones, the sweep over `sweep_ranks` x `sweep_steps` scored on the
    first `sweep_n` of those, and the memory table.

    Cached (`lessons.cache`): the notebook and the lesson test share one run. `on_loss(step,
    loss)` sees the fine-tune's losses as they come in, or all at once when they are read back.
    """
    from peftlab.lessons.cache import cached

    seen: list[int] = []

    def record(step: int, loss: float) -> None:
        seen.append(step)
        on_loss(step, loss)

    sweep = {"ranks": tuple(sweep_ranks), "steps": tuple(sweep_steps), "n": sweep_n}
    results = cached(
        "lesson05", _compute, files=True, live={"on_loss": record if on_loss else None},
        name=name, seed=seed, steps=steps, n_heldout=n_heldout, sweep=sweep,
    )  # fmt: skip
    if on_loss is not None and not seen:  # read back from the cache: replay the curve
        for step, loss in results["losses"]:
            on_loss(step, loss)
    return results


def _compute(name, seed, steps, n_heldout, sweep, scratch, on_loss=None) -> dict:
    seed_everything(seed)  # as notebook 05 does first: the LoRA init draws from this generator
    heldout = [
        support_data.LESSON_COMPLAINT,
        *support_data.heldout_complaints(n_heldout, seed=seed),
    ]
    base, tokenizer = base_model.load(name)
    model, _ = base_model.load(name)
    befores = compare.generate(base, tokenizer, heldout)
    run = finetune.train_lora(
        model, tokenizer, support_data.finetune_set(seed=seed), r=8, alpha=16, steps=steps,
        target_modules=compare.demo_targets(name), seed=seed, run_name="support",
        runs_dir=scratch, progress=False, on_loss=on_loss,
    )  # fmt: skip
    rows = score_rows(heldout, befores, compare.generate(run.model, tokenizer, heldout))
    points = run_sweep(sweep["ranks"], sweep["steps"], heldout[: sweep["n"]], model_name=name,
                       seed=seed)  # fmt: skip
    return {
        "heldout": heldout, "rows": rows, "losses": run.losses, "adapter_dir": run.adapter_dir,
        "sweep": points, "data": data_facts(seed=seed), "memory": training_memory_rows(),
        "trainable_params": run.trainable_params, "total_params": run.total_params,
        "train_seconds": run.train_seconds,
    }  # fmt: skip


def quotes(results: Mapping) -> dict[str, str]:
    """Every table lesson 05 quotes, by region name."""
    rows = results["rows"]
    return {
        "data": data_markdown(results["data"]),
        "example": example_markdown(rows[0]),
        "criteria": criteria_markdown(rubric_by_criterion(rows), len(rows)),
        "sweep": sweep_markdown(results["sweep"]),
        "memory": training_memory_markdown(results["memory"]),
    }


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

    `by_criterion` is `rubric_by_criterion(rows)`.
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


def training_memory_markdown(
    rows: Sequence[dict], gpu: str = "24 GB consumer (RTX 3090/4090)"
) -> str:
    """`training_memory_rows` as a markdown table, in GiB (2**30 bytes)."""
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
    """`data_facts()` as a markdown table: fine-tune set vs held-out set."""
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
