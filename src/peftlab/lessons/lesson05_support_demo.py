"""Lesson 05, the customer-support demo (notebook 05, lessons/05-customer-support-demo.md).

Its workflow sits on top of `generate.generate`, `finetune.train_lora` and `rubric.score_reply`:
scored rows for a before/after, the pass rate of each rubric criterion, the same tuned model on
complaints written the way customers write ("in the wild", `support_data.wild_complaints`)
measured beside the template-made held-out ones (`compare.measures`, with `rubric.faithful`),
and a small sweep over LoRA rank and training steps that shows what each knob buys. Its figures
are matplotlib Figures built without pyplot state; its tables are HTML or markdown strings the
notebook displays and the lesson quotes.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from matplotlib.figure import Figure

from peftlab import base_model, compare, finetune, rubric, support_data
from peftlab.compare import score_rows  # noqa: F401  (the notebook's scored rows)
from peftlab.generate import generate
from peftlab.lessons import lesson01_peft_basics as lesson01
from peftlab.rubric import CRITERIA, mean_score
from peftlab.seed import seed_everything

LESSON = "05-customer-support-demo.md"
NOTEBOOK = "05_customer_support_demo.ipynb"
TRAINS = True
TOLERANCE: dict = {}  # fp32 training and greedy replies: the figures repeat on every CPU


def results(
    model_name: str | None = None,
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
    and `n_heldout` held-out ones, the same two models on the wild set
    (`support_data.wild_complaints`, its facts counted by `wild_facts`), the sweep over
    `sweep_ranks` x `sweep_steps` scored on the first `sweep_n` held-out complaints, and the
    memory table.

    Cached (`lessons.cache`): the notebook and the lesson test share one run. `on_loss(step,
    loss)` sees the fine-tune's losses as they come in, or all at once when they are read back.
    """
    from peftlab.lessons.cache import cached

    seen: list[int] = []

    def record(step: int, loss: float) -> None:
        seen.append(step)
        on_loss(step, loss)

    sweep = {"ranks": tuple(sweep_ranks), "steps": tuple(sweep_steps), "n": sweep_n}
    wild = tuple(support_data.wild_complaints())  # in the key: the file is not package source
    results = cached(
        "lesson05", _compute, files=True, live={"on_loss": record if on_loss else None},
        model_name=model_name, seed=seed, steps=steps, n_heldout=n_heldout, sweep=sweep,
        wild=wild,
    )  # fmt: skip
    if on_loss is not None and not seen:  # read back from the cache: replay the curve
        for step, loss in results["losses"]:
            on_loss(step, loss)
    memory_rows = lesson01.training_memory_rows()
    return results | {"memory": memory_rows, "hyperparameters": hyperparameters()}


def quotes(results: Mapping) -> dict[str, str]:
    """Every table lesson 05 quotes, by region name."""
    rows = results["rows"]
    return {
        "data": data_markdown(results["data"]),
        "example": example_markdown(rows[0]),
        "criteria": criteria_markdown(rubric_by_criterion(rows), len(rows)),
        "sweep": sweep_markdown(results["sweep"]),
        "memory": lesson01.training_memory_markdown(results["memory"]),
        "memory verdict": lesson01.memory_verdict(results["memory"]),
        "hyperparameters": hyperparameters_markdown(results["hyperparameters"]),
        "trainable share": share_sentence(results["trainable_params"], results["total_params"]),
        "hidden size": str(results["hidden_size"]),
        "wild data": wild_markdown(results["wild"]),
        "sets": sets_markdown({"held-out": rows, "in the wild": results["wild_rows"]}),
        "wild worst": worst_markdown(results["wild_rows"]),
        **wild_numbers(rows, results["wild_rows"]),
    }


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
            replies = generate(result.model, tokenizer, complaints)
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


REPLY_PARTS = (
    support_data.ACKNOWLEDGEMENTS + support_data.QUESTION_ACKNOWLEDGEMENTS
    + support_data.ACTIONS + support_data.GENERAL_ACTIONS + support_data.TIMELINES
)  # fmt: skip


def data_facts(
    n_finetune: int = 400, n_heldout: int = 60, seed: int = 0, n_scored: int = 12
) -> dict[str, int]:
    """What the held-out complaints are held out from, counted.

    From the fine-tune set: their product nouns, kinds of problem and sentence frames, so no
    complaint is in both. Not from the base model's pretraining corpus
    (`base_model.build_embedded`'s, at its defaults): its blunt support chats draw on every noun,
    problem and frame, held-out ones included, and its letters use the fine-tune replies'
    acknowledgements, actions and timelines.
    """
    import inspect

    train = support_data.finetune_set(n=n_finetune, seed=seed)
    heldout = support_data.heldout_complaints(n=n_heldout, seed=seed)
    build = inspect.signature(base_model.build_embedded).parameters
    corpus = support_data.base_corpus(n_docs=build["n_docs"].default, seed=build["seed"].default)
    chats = {doc.chat[0] for doc in corpus if doc.chat}
    prose = " ".join(doc.text for doc in corpus if doc.text) + " " + " ".join(chats)

    def in_corpus(words) -> int:
        return sum(any(w in prose for w in ([w] if isinstance(w, str) else w)) for w in words)

    def frames(templates) -> int:
        return sum(any(c.startswith(t.split("{")[0]) for c in chats) for t in templates)

    def phrases(parts) -> int:
        return sum(part.split("{")[0] in prose for part in parts)

    return {
        "finetune_examples": len(train),
        "heldout_complaints": len(heldout),
        "corpus_chats": len(chats),
        "finetune_nouns": len(set(support_data.FINETUNE_NOUNS) | set(support_data.FINETUNE_GOODS)),
        "heldout_nouns": len(support_data.HELDOUT_NOUNS),
        "corpus_heldout_nouns": in_corpus(support_data.HELDOUT_NOUNS),
        "finetune_problems": len({ex.problem for ex in train}),
        "heldout_problems": len(support_data.HELDOUT_PROBLEMS),
        "corpus_heldout_problems": in_corpus(p.phrasings for p in support_data.HELDOUT_PROBLEMS),
        "finetune_templates": len(support_data.FINETUNE_TEMPLATES),
        "heldout_templates": len(support_data.HELDOUT_TEMPLATES),
        "corpus_heldout_templates": frames(support_data.HELDOUT_TEMPLATES),
        "shared_nouns": len(set(support_data.FINETUNE_NOUNS) & set(support_data.HELDOUT_NOUNS)),
        "complaints_in_both": len({ex.complaint for ex in train} & set(heldout)),
        "heldout_in_corpus": sum(c in chats for c in heldout),
        "scored": min(n_scored, len(heldout)),
        "scored_in_corpus": sum(c in chats for c in heldout[:n_scored]),
        "reply_parts": len(REPLY_PARTS),
        "corpus_reply_parts": phrases(REPLY_PARTS),
    }


def wild_facts(n_finetune: int = 400, n_heldout: int = 60, seed: int = 0, run: int = 5) -> dict:
    """What the wild set is, counted: its size and forms, how much of it the world's word lists
    know, and how much it shares with what built the model (`support_data.shared_runs`: runs of
    `run` words, or a whole shorter complaint, against the base corpus at
    `base_model.build_embedded`'s defaults, the fine-tune set and the held-out complaints;
    sentences found whole in the corpus).
    """
    import inspect
    import re

    wild = support_data.wild_complaints()
    build = inspect.signature(base_model.build_embedded).parameters
    corpus = base_model.corpus_texts(  # the texts it was pretrained on, chats as the model saw them
        support_data.base_corpus(n_docs=build["n_docs"].default, seed=build["seed"].default)
    )
    train = support_data.finetune_set(n=n_finetune, seed=seed)
    train_texts = [t for ex in train for t in (ex.complaint, ex.reply)]
    corpus_sentences = {s for text in corpus for s in support_data.sentences(text)}
    lengths = [len(c.split()) for c in wild]
    world_nouns = set(rubric.PRODUCTS)
    return {
        "complaints": len(wild),
        "min_words": min(lengths),
        "max_words": max(lengths),
        "questions": sum("?" in c for c in wild),
        "several_sentences": sum(len(support_data.sentences(c)) > 1 for c in wild),
        "numbers": sum(bool(re.search(r"\d", c)) for c in wild),
        "lowercase": sum(c[0].islower() for c in wild),
        "world_product": sum(bool(world_nouns & set(support_data.words(c))) for c in wild),
        "run": run,
        "shared_corpus": len(support_data.shared_runs(wild, corpus, run)),
        "shared_finetune": len(support_data.shared_runs(wild, train_texts, run)),
        "shared_heldout": len(
            support_data.shared_runs(wild, support_data.heldout_complaints(n_heldout, seed), run)
        ),
        "sentences_in_corpus": sum(
            s in corpus_sentences for c in wild for s in support_data.sentences(c)
        ),
    }


def wild_markdown(facts: Mapping[str, int]) -> str:
    """`wild_facts()` as a markdown table."""
    f = facts
    rows = [
        ("complaints", f"{f['complaints']}, {f['min_words']} to {f['max_words']} words each"),
        ("questions / of several sentences", f"{f['questions']} / {f['several_sentences']}"),
        ("with a number (order, price, date) / starting in lowercase",
         f"{f['numbers']} / {f['lowercase']}"),
        ("naming a product noun of the world's word lists", f"{f['world_product']}"),
        (f"sharing a run of {f['run']} words with the base corpus / fine-tune set / held-out set",
         f"{f['shared_corpus']} / {f['shared_finetune']} / {f['shared_heldout']}"),
        ("sentences found whole in the base corpus", f"{f['sentences_in_corpus']}"),
    ]  # fmt: skip
    lines = ["| the wild set | |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    return "\n".join(lines)


MEASURE_LABELS = {
    "rubric": "mean rubric score",
    "acknowledges": "acknowledges its own problem",
    "faithful": "faithful: names nothing it was not told",
    "distinct": "distinct replies",
}


def sets_markdown(named_rows: Mapping[str, Sequence[dict]]) -> str:
    """Each set's `compare.measures`, before and after, side by side (one pair of columns per
    set, its row count in the header)."""
    summaries = {name: compare.measures(rows) for name, rows in named_rows.items()}
    head = " | ".join(f"{name} ({len(rows)}): before | after" for name, rows in named_rows.items())
    lines = [f"| measure | {head} |", "|---|" + "---:|---:|" * len(named_rows)]
    for measure, label in MEASURE_LABELS.items():
        cells = []
        for s in summaries.values():
            if measure == "rubric":
                cells += [f"{s['before']:.2f}", f"{s['after']:.2f}"]
            else:
                cells += [f"{s[f'{measure}_before']:.0%}", f"{s[f'{measure}_after']:.0%}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def worst_markdown(rows: Sequence[dict], n: int = 6) -> str:
    """The `n` worst after-replies (`compare.worst`) as a markdown table: the complaint, the
    reply, its rubric score and what it names that the complaint does not."""
    lines = ["| complaint | after fine-tuning | rubric | names, unasked |", "|---|---|---:|---|"]
    for row in compare.worst(rows, n):
        names = ", ".join(rubric.invented(row["after"], row["complaint"])) or "–"
        cells = [row["complaint"], row["after"], f"{row['after_score']:.2f}", names]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def hyperparameters() -> dict:
    """The training settings the demos use, read from the code's defaults: `peftlab demo`
    (finetune.train_lora), notebook 05 (`results`), and lesson 02's hand-written loop."""
    import inspect

    from peftlab import lora_train

    def defaults(fn) -> dict:
        return {k: v.default for k, v in inspect.signature(fn).parameters.items()
                if v.default is not inspect.Parameter.empty}  # fmt: skip

    demo, loop = defaults(finetune.train_lora), defaults(lora_train.train_lora_from_scratch)
    notebook = demo | {"steps": defaults(results)["steps"]}
    n_examples = len(support_data.finetune_set())
    runs = {"`peftlab demo`": (demo, compare.demo_targets(None)),
            "notebook 05": (notebook, compare.demo_targets(None)),
            "notebook 02 (hand-written loop)": (loop, loop["target_modules"])}  # fmt: skip
    return {
        label: {
            "learning_rate": d["learning_rate"], "steps": d["steps"],
            "batch_size": d["batch_size"], "epochs": d["steps"] * d["batch_size"] / n_examples,
            "r": d["r"], "alpha": d["alpha"], "targets": targets, "examples": n_examples,
        }
        for label, (d, targets) in runs.items()
    }  # fmt: skip


# Where one would start on a 7B model (published recipes, not computed here): QLoRA's
# (Dettmers et al., 2023) learning rate for 7B/13B, batch and all-linear targets; 1-3 epochs.
START_7B = {"learning_rate": "1e-4 to 2e-4 (QLoRA: 2e-4 at 7B and 13B)",
            "epochs": "1 to 3", "batch_size": "16 (QLoRA), often reached by accumulation",
            "r": "8 to 64 (QLoRA: 64)", "alpha": "16, or 2r", "targets": "all-linear"}  # fmt: skip


def _rate(value: float) -> str:
    """A learning rate as people write it: 3e-3, 2.5e-4."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def hyperparameters_markdown(settings: Mapping[str, Mapping]) -> str:
    """`hyperparameters()` as a table, one column per demo, with a 7B starting point beside."""
    labels = list(settings)

    def targets(t) -> str:
        return t if isinstance(t, str) else ", ".join(t)

    rows = [
        ("learning rate", [_rate(s["learning_rate"]) for s in settings.values()],
         START_7B["learning_rate"]),
        ("optimizer steps", [str(s["steps"]) for s in settings.values()], "(from epochs)"),
        ("batch (chats per step)", [str(s["batch_size"]) for s in settings.values()],
         START_7B["batch_size"]),
        (f"epochs over the {settings[labels[0]]['examples']} examples",
         [f"{s['epochs']:g}" for s in settings.values()], START_7B["epochs"]),
        ("rank r", [str(s["r"]) for s in settings.values()], START_7B["r"]),
        ("alpha (scale alpha/r)", [f"{s['alpha']:g} ({s['alpha'] / s['r']:g})"
                                   for s in settings.values()], START_7B["alpha"]),
        ("targets", [targets(s["targets"]) for s in settings.values()], START_7B["targets"]),
    ]  # fmt: skip
    lines = ["| setting | " + " | ".join(labels) + " | a 7B model: where to start |",
             "|---|" + "---:|" * len(labels) + "---|"]  # fmt: skip
    lines += [f"| {name} | " + " | ".join(values) + f" | {start} |" for name, values, start in rows]
    return "\n".join(lines)


def _compute(model_name, seed, steps, n_heldout, sweep, wild, scratch, on_loss=None) -> dict:
    seed_everything(seed)  # as notebook 05 does first: the LoRA init draws from this generator
    heldout = [
        support_data.LESSON_COMPLAINT,
        *support_data.heldout_complaints(n_heldout, seed=seed),
    ]
    base, tokenizer = base_model.load(model_name)
    model, _ = base_model.load(model_name)
    befores = generate(base, tokenizer, heldout)
    wild_befores = generate(base, tokenizer, list(wild))
    run = finetune.train_lora(
        model, tokenizer, support_data.finetune_set(seed=seed), r=8, alpha=16, steps=steps,
        target_modules=compare.demo_targets(model_name), seed=seed, run_name="support",
        runs_dir=scratch, progress=False, on_loss=on_loss,
    )  # fmt: skip
    rows = score_rows(heldout, befores, generate(run.model, tokenizer, heldout))
    wild_afters = generate(run.model, tokenizer, list(wild))
    wild_rows = score_rows(list(wild), wild_befores, wild_afters)
    points = run_sweep(sweep["ranks"], sweep["steps"], heldout[: sweep["n"]],
                       model_name=model_name, seed=seed)  # fmt: skip
    return {
        "heldout": heldout, "rows": rows, "losses": run.losses, "adapter_dir": run.adapter_dir,
        "wild_rows": wild_rows, "wild": wild_facts(seed=seed),
        "sweep": points, "data": data_facts(seed=seed, n_scored=n_heldout),
        "trainable_params": run.trainable_params, "total_params": run.total_params,
        "hidden_size": base.config.hidden_size,
        "train_seconds": run.train_seconds,
    }  # fmt: skip


def wild_numbers(rows: Sequence[dict], wild_rows: Sequence[dict]) -> dict[str, str]:
    """The few wild-set numbers lesson 05's prose quotes in its sentences."""
    held, wild = compare.measures(rows), compare.measures(wild_rows)
    n = len(wild_rows)
    form = rubric_by_criterion(wild_rows)["after"]
    faithless = sum(not r["after_faithful"] for r in wild_rows)
    passing_faithless = sum(
        (not r["after_faithful"]) and r["after_marks"]["acknowledges"] for r in wild_rows
    )
    return {
        "wild form": f"{min(form[c] for c in ('greeting', 'action', 'timeline')):.0%}",
        "wild after": f"{wild['after']:.2f}",
        "wild held after": f"{held['after']:.2f}",
        "wild acknowledges": f"{wild['acknowledges_after']:.0%}",
        "wild faithless": f"{faithless} of {n}",
        "wild faithless acknowledged": str(passing_faithless),
    }


SMALL = (6.0, 3.0)
BEFORE_COLOR, AFTER_COLOR = "#8c959f", "#1f6feb"
PASS, FAIL = "&#10003;", "&#10007;"


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


def share_sentence(trainable: int, total: int) -> str:
    """The fine-tune's trainable parameters and their share (`lora.share_text`: of all the
    adapted model's parameters, adapters included, as peft prints it)."""
    from peftlab import lora

    return f"{trainable:,} of {total:,} parameters ({lora.share_text(trainable, total)})"


def data_markdown(facts: Mapping[str, int]) -> str:
    """`data_facts()` as a markdown table: fine-tune set, held-out set, and the base model's
    pretraining corpus (what it holds of the held-out material)."""
    f = facts
    lines = [
        "| | fine-tune set | held-out set | base model's pretraining corpus |",
        "|---|---:|---:|---:|",
        f"| complaints | {f['finetune_examples']} | {f['heldout_complaints']} | "
        f"{f['corpus_chats']:,} distinct, answered bluntly |",
    ]
    more = {"nouns": " and made-up ones", "problems": "",
            "templates": " and customers' own forms (`world.dress`)"}  # fmt: skip
    for part, label in (("nouns", "product nouns"), ("problems", "kinds of problem"),
                        ("templates", "sentence frames")):  # fmt: skip
        lines.append(
            f"| {label} | {f[f'finetune_{part}']}{more[part]} | {f[f'heldout_{part}']} | "
            f"all {f[f'corpus_heldout_{part}']} held-out ones among them |"
        )
    lines += [
        f"| held-out complaints found verbatim | {f['complaints_in_both']} | – | "
        f"{f['heldout_in_corpus']} of {f['heldout_complaints']} "
        f"({f['scored_in_corpus']} of the {f['scored']} scored here) |",
        f"| reply phrases (acknowledgements, actions, timelines) | {f['reply_parts']} | – | "
        f"{f['corpus_reply_parts']} of them, in letters and notes |",
    ]
    return "\n".join(lines)


def example_markdown(row: Mapping) -> str:
    """One complaint's before and after replies with their scores, as a markdown table."""
    return "\n".join([
        f"| \"{row['complaint']}\" | reply | rubric score |",
        "|---|---|---:|",
        f"| before fine-tuning | {row['before']} | {row['before_score']:.2f} |",
        f"| after fine-tuning | {row['after']} | {row['after_score']:.2f} |",
    ])  # fmt: skip
