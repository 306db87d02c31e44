"""Before/after: the same complaints answered by the base model and the LoRA-tuned one, scored.

`before_after()` is the demo's whole flow: load the base model, answer the complaints, fine-tune
with LoRA on the support set, answer again, and score both sides with the rubric. By default it
answers two sets with the same two models: the template-made held-out complaints, and "in the
wild" (`support_data.wild_complaints`), complaints written the way customers write. `measures`
reports the rubric beside three checks it does not make: acknowledges (the rubric's own
criterion, on its own), faithful (`rubric.faithful`) and distinct.
"""

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from peftlab import base_model, finetune, support_data
from peftlab.generate import generate
from peftlab.rubric import invented, mean_score, score_reply
from peftlab.seed import seed_everything
from peftlab.tuning import DEFAULT_STEPS, recipe

__all__ = [
    "score_rows", "before_after", "Comparison", "MEASURES", "measures", "worst", "default_sets",
]  # fmt: skip


def sample_of(texts: Sequence[str], n: int | None) -> list[str]:
    """`n` of `texts`, evenly spaced and always the same (the first included); all when `n` is
    None or not smaller than the set."""
    texts = list(texts)
    if n is None or n >= len(texts):
        return texts
    if n <= 0:
        raise ValueError(f"sample={n}: ask for at least one complaint")
    return [texts[i * len(texts) // n] for i in range(n)]


@dataclass
class Comparison:
    """The demo's result; `asdict()` of it is the `--json` output.

    `examples` and `summary` are the main set's (the held-out complaints, or `--prompts`);
    `sets` holds further sets answered by the same two models, by name, each as
    `{"examples": [...], "summary": {...}}` ("wild" in the default demo).
    """

    model: str
    method: str
    trainable_params: int
    total_params: int
    train_seconds: float
    examples: list[dict]
    summary: dict[str, float]
    sets: dict[str, dict] = field(default_factory=dict)
    precision: str = "fp32"  # what the steps and the generation computed in
    device: str = "cpu"
    steps: int = DEFAULT_STEPS

    def to_dict(self) -> dict:
        return asdict(self)


def score_rows(
    complaints: Sequence[str], befores: Sequence[str], afters: Sequence[str]
) -> list[dict]:
    """One row per complaint, as in `Comparison.examples`: both replies, their rubric marks and
    score, and what each reply names that the complaint does not (`rubric.invented`; the reply
    is faithful when that is empty)."""
    rows = []
    for complaint, before, after in zip(complaints, befores, afters, strict=True):
        row: dict = {"complaint": complaint, "before": before, "after": after}
        for side, reply in (("before", before), ("after", after)):
            marks = score_reply(reply, complaint)
            row[f"{side}_marks"] = marks
            row[f"{side}_score"] = marks["score"]
            row[f"{side}_invented"] = invented(reply, complaint)
            row[f"{side}_faithful"] = not row[f"{side}_invented"]
        rows.append(row)
    return rows


MEASURES = ("rubric", "acknowledges", "faithful", "distinct")
SIDES = ("before", "after")


def measures(rows: Sequence[dict]) -> dict[str, float]:
    """What a set of `score_rows` says, per side: `before` and `after` (the mean rubric score, as
    `rubric.mean_score`), and `acknowledges_<side>` (share of replies that apologize for this
    complaint's own product or problem), `faithful_<side>` (share that name nothing the
    complaint does not) and `distinct_<side>` (share of distinct replies: 1.0 when no two
    replies are the same). Shares are fractions of the rows."""
    if not rows:
        raise ValueError("no rows to measure: score at least one complaint")
    out: dict[str, float] = {}
    n = len(rows)
    for side in SIDES:
        out[side] = sum(row[f"{side}_score"] for row in rows) / n
    for side in SIDES:
        out[f"acknowledges_{side}"] = (
            sum(bool(r[f"{side}_marks"]["acknowledges"]) for r in rows) / n
        )
        out[f"faithful_{side}"] = sum(not invented(r[side], r["complaint"]) for r in rows) / n
        out[f"distinct_{side}"] = len({r[side] for r in rows}) / n
    return out


def worst(rows: Sequence[dict], n: int = 5, side: str = "after") -> list[dict]:
    """The `n` rows whose `side` reply is worst: unfaithful ones first (those that name the most
    the complaint does not), then by rubric score, lowest first; ties keep the set's order."""
    if side not in SIDES:
        raise ValueError(f"side={side!r}: choose one of {', '.join(SIDES)}")
    if n < 0:
        raise ValueError(f"n={n}: ask for zero or more rows")

    def badness(item):
        i, row = item
        names = invented(row[side], row["complaint"])
        return (-len(names), row[f"{side}_score"], i)

    return [row for _, row in sorted(enumerate(rows), key=badness)[:n]]


def default_complaints() -> list[str]:
    """The held-out complaints, with the lesson's "My order is late." first."""
    return [support_data.LESSON_COMPLAINT, *support_data.heldout_complaints()]


def default_sets() -> dict[str, list[str]]:
    """The sets the default demo reports beside the held-out one: "wild", the complaints of
    `support_data.wild_complaints()`. Without a peft-lab checkout (the file lives in its
    `examples/`) there are none, with a warning."""
    try:
        return {"wild": support_data.wild_complaints()}
    except FileNotFoundError as exc:
        warnings.warn(f"the in-the-wild complaints were not found, so not scored: {exc}",
                      stacklevel=2)  # fmt: skip
        return {}


def before_after(
    complaints: Sequence[str] | None = None,
    *,
    model_name: str | None = None,
    method: str = "lora",
    steps: int | None = None,
    seed: int = 0,
    run_name: str | None = "demo",
    runs_dir: str = "runs",
    progress: bool = True,
    on_loss: Callable[[int, float], None] | None = None,
    sets: Mapping[str, Sequence[str]] | None = None,
    sample: int | None | str = "recipe",
    device: str = "auto",
) -> Comparison:
    """Answer complaints with the base model, fine-tune it, answer again, and score both.

    `sets` are further complaint sets, by name, answered by the same two models and reported
    in `Comparison.sets`; by default `default_sets()` (the wild set) when `complaints` is None,
    none when complaints are given. Each set is generated on its own, so adding one does not
    change the replies to another. The model's `recipe` sizes the run (steps, rate, precision);
    `sample` is how many complaints of each default set to answer ("recipe": the recipe's
    number; None: all), and `device` is "auto" (CUDA where there is one), "cpu" or "cuda".
    """
    if method not in finetune.TRAIN_METHODS:
        raise ValueError(f"method={method!r}: choose one of {', '.join(finetune.TRAIN_METHODS)}")
    plan = recipe(model_name)
    if steps is not None:
        if steps <= 0:
            raise ValueError(f"steps={steps}: the number of training steps must be positive")
        plan = replace(plan, steps=steps)
    count = plan.sample if sample == "recipe" else sample
    if sets is None:
        sets = default_sets() if complaints is None else {}
        sets = {name: sample_of(texts, count) for name, texts in sets.items()}
    sets = {name: list(texts) for name, texts in sets.items()}
    if complaints is None:
        complaints = sample_of(default_complaints(), count)
    complaints = list(complaints)
    if not complaints:
        raise ValueError("no complaints to answer: give at least one")
    for name, texts in sets.items():
        if not texts:
            raise ValueError(f"set {name!r} has no complaints: give at least one, or leave it out")
    place = finetune.resolve_device(device)
    precision = finetune.resolve_precision(plan.precision, place)
    seed_everything(seed)
    model, tokenizer = base_model.load(
        model_name, quantization_config=_quantization(method), device=place
    )
    if method == "qlora":
        # bitsandbytes 0.50 on some CPUs repacks 4-bit weights for its fused kernel on the first
        # eval-mode forward, and training on the repacked layout goes wrong. In train mode it
        # keeps the standard layout; the model has no dropout, so the replies are the same.
        model.train()

    def answer(m, texts):
        with finetune.autocast(precision, place):
            return generate(m, tokenizer, texts)

    befores = answer(model, complaints)
    set_befores = {name: answer(model, texts) for name, texts in sets.items()}
    result = finetune.train_lora(
        model, tokenizer, support_data.finetune_set(seed=seed), method=method,
        steps=plan.steps, batch_size=plan.batch_size, learning_rate=plan.learning_rate,
        target_modules=demo_targets(model_name, method),
        seed=seed, run_name=run_name, runs_dir=runs_dir, progress=progress, on_loss=on_loss,
        precision=precision, reply_logits_only=plan.reply_logits_only, device=place,
        gradient_checkpointing=plan.gradient_checkpointing,
    )  # fmt: skip
    afters = answer(result.model, complaints)
    rows = score_rows(complaints, befores, afters)
    summary = {"before": mean_score(befores, complaints), "after": mean_score(afters, complaints)}
    scored = {}
    for name, texts in sets.items():
        set_rows = score_rows(texts, set_befores[name], answer(result.model, texts))
        scored[name] = {"examples": set_rows, "summary": measures(set_rows)}
    return Comparison(
        model=base_model.canonical_name(model_name), method=method,
        trainable_params=result.trainable_params, total_params=result.total_params,
        train_seconds=round(result.train_seconds, 2), examples=rows,
        summary=summary | measures(rows), sets=scored, precision=precision, device=place,
        steps=plan.steps,
    )  # fmt: skip


def demo_targets(model_name: str | None, method: str = "lora") -> str | None:
    """Which layers get LoRA: every linear layer for QLoRA (the paper's recipe), for the tiny
    embedded model and for SmolLM2 (`tuning.RECIPES`); peft's default for the architecture otherwise
    (q_proj, v_proj on Llama).

    q and v alone do learn the tone on the embedded model (notebook 02), but more slowly per
    step; every linear layer is also what matches full fine-tuning on harder tasks (QLoRA paper;
    "LoRA Without Regret"). peft's default stays q and v, the cheap choice for a tone on 7B.
    """
    if method == "qlora":
        return "all-linear"
    return recipe(model_name).target_modules


def _quantization(method: str):
    return base_model.nf4_config() if method == "qlora" else None
