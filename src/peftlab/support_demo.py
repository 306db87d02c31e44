"""Workflow helpers for the customer-support lesson (notebook 05, lessons/05).

They sit on top of `compare.generate`, `finetune.train_lora` and `rubric.score_reply`: scored
rows for a before/after, the pass rate of each rubric criterion, and a small sweep over LoRA
rank and training steps that shows what each knob buys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from peftlab import base_model, compare, finetune, support_data
from peftlab.compare import score_rows  # noqa: F401  (the notebook's scored rows)
from peftlab.rubric import CRITERIA, score_reply
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


def mean_score(replies: Sequence[str], complaints: Sequence[str]) -> float:
    """Mean rubric score of replies to complaints (1.0: every reply passes all four checks)."""
    if not complaints:
        raise ValueError("no complaints to score: give at least one")
    scores = [score_reply(r, c)["score"] for r, c in zip(replies, complaints, strict=True)]
    return sum(scores) / len(scores)


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


def sweep(
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
                batch_size=batch_size, target_modules=compare.default_targets(model_name),
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


def memory_rows(
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
