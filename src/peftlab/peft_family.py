"""The PEFT family side by side: every method through peft itself, on one task, one budget.

Each method (`peft_methods.METHODS`) is a peft config (or, for full fine-tuning, no config at
all) wrapped around a fresh copy of the base model and trained by the course's loop
(`tuning.fit`): the same fine-tune examples in the same order, the same steps and batch, AdamW
with the same warm-up/cosine schedule. Only the learning rate differs, and it is chosen per
method from a small grid by the loss on a validation split of the fine-tune set
(`tuning.support_split`), never by the held-out complaints the methods are scored on.

`compare_family` runs the budget (`FamilyBudget`) and returns one `MethodResult` per method:
trainable parameters (peft's own count), adapter bytes on disk, final train and validation
loss, held-out rubric score per seed, measured training memory, seconds per step, and, where
the method merges into the base, whether the merged model answers exactly as the unmerged one.
"""

from __future__ import annotations

import copy
import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peftlab import base_model, measure, support_data, tuning
from peftlab.generate import generate
from peftlab.lora import count_trainable
from peftlab.peft_methods import (
    CORE,
    METHODS,
    REFERENCE,
    Method,
    apply_method,
    check_methods,
    optimizer_for,
)
from peftlab.quiet import known_warnings, muted
from peftlab.rubric import mean_score
from peftlab.seed import seed_everything
from peftlab.worker_processes import map_in_processes


@dataclass(frozen=True)
class FamilyBudget:
    """The budget every method gets: the same data, steps, batch and seeds; an lr grid around
    each method's `base_lr` (`lr_factors`); `n_val` fine-tune examples held back for choosing
    the rate; `n_heldout` held-out complaints to score; replies of up to `max_new_tokens`."""

    steps: int = 24
    batch_size: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    lr_factors: tuple[float, ...] = (1.0, 3.0)
    n_train: int = 400
    n_val: int = 40
    n_heldout: int = 16
    max_new_tokens: int = 48
    timing_repeats: int = 5

    def __post_init__(self):
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError(
                f"steps={self.steps}, batch_size={self.batch_size}: both must be positive"
            )
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, each once")
        if not self.lr_factors or any(f <= 0 for f in self.lr_factors):
            raise ValueError(f"lr_factors={self.lr_factors}: give positive grid factors")
        if not 0 < self.n_val < self.n_train:
            raise ValueError(f"n_val={self.n_val}: hold back between 1 and n_train-1 examples")
        if self.n_heldout <= 0:
            raise ValueError(f"n_heldout={self.n_heldout}: score at least one complaint")

    def lr_grid(self, method: Method) -> list[float]:
        return [method.base_lr * f for f in self.lr_factors]


def heldout(budget: FamilyBudget) -> list[str]:
    """The complaints every method is scored on (unseen products, problems, phrasings)."""
    return support_data.heldout_complaints(budget.n_heldout)


# --- one model ---------------------------------------------------------------------------------
@dataclass
class MethodRun:
    """One method trained at one learning rate and seed."""

    method: str
    lr: float
    seed: int
    model: object
    optimizer: object
    losses: list[float]
    val_loss: float
    trainable_params: int
    train_seconds: float
    held: dict = field(default_factory=dict)

    @property
    def train_loss(self) -> float:
        """Mean batch loss over the last tenth of the steps (at least one)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail)


def train_method(
    method: Method,
    lr: float,
    seed: int,
    budget: FamilyBudget,
    model_name: str | None = None,
    on_step: Callable[[tuning.Step], None] | None = None,
) -> MethodRun:
    """Fine-tune a fresh base model with `method` under `budget` (`tuning.fit`); validation
    loss at the end. AdaLoRA re-allocates its rank budget after each step, and the bytes held
    by weights, gradients and optimizer states are measured after the last one."""
    if lr <= 0:
        raise ValueError(f"lr={lr}: the learning rate must be positive")
    with muted():
        model, tokenizer = base_model.load(model_name)
    data, val = tuning.tokenized_support_split(tokenizer, model_name, budget.n_train, budget.n_val)
    seed_everything(seed)  # the adapter's random init
    model = apply_method(method, model, budget.steps)
    opt = optimizer_for(method, model, lr)
    held: dict = {}

    def after_step(step: tuning.Step) -> None:
        if method.name == "AdaLoRA":  # its rank budget is re-allocated between steps
            model.base_model.update_and_allocate(step.step - 1)
        if step.step == budget.steps:
            held.update(measure.held_bytes(model, opt))  # gradients and states all exist now
        if on_step is not None:
            on_step(step)

    pad = tokenizer.pad_token_id
    with known_warnings():  # e.g. prefix tuning's past_key_values (quiet.KNOWN_WARNINGS)
        fit = tuning.fit(model, data, opt, steps=budget.steps, batch_size=budget.batch_size,
                         seed=seed, collate=lambda rows: tuning.pad_batch(rows, pad),
                         on_step=after_step)  # fmt: skip
        val_loss = tuning.mean_loss(model, val, pad)
    model.tokenizer = tokenizer
    return MethodRun(method.name, lr, seed, model, opt, fit.losses, val_loss,
                     count_trainable(model), fit.seconds, held)  # fmt: skip


def untrained(
    method: Method, lr: float, budget: FamilyBudget, model_name: str | None = None
) -> MethodRun:
    """A freshly built model and its optimizer, as `train_method` starts them: what
    `step_seconds` times (a step costs the same whatever the weights hold)."""
    with muted():
        model, tokenizer = base_model.load(model_name)
    seed_everything(budget.seeds[0])
    with known_warnings():
        model = apply_method(method, model, budget.steps)
    model.tokenizer = tokenizer
    return MethodRun(method.name, lr, budget.seeds[0], model, optimizer_for(method, model, lr),
                     [], math.nan, count_trainable(model), 0.0, {})  # fmt: skip


# --- what a trained model is measured by --------------------------------------------------------
def replies(run: MethodRun, complaints: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy replies of the trained model (`generate` decodes a prefix-tuned one through its
    prefix)."""
    run.model.eval()
    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return generate(run.model, run.model.tokenizer, complaints,
                        max_new_tokens=max_new_tokens)  # fmt: skip


def merged_replies(run: MethodRun, complaints: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy replies of a copy of the model with the adapter folded into the base."""
    merged = copy.deepcopy(run.model).merge_and_unload()
    merged.eval()
    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return generate(merged, run.model.tokenizer, complaints,
                        max_new_tokens=max_new_tokens)  # fmt: skip


def disk_bytes(run: MethodRun, folder: Path) -> int:
    """Bytes of the weight files `save_pretrained` writes: the adapter, or the whole model."""
    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run.model.save_pretrained(folder)
    return measure.weights_bytes(folder)


def activation_bytes(run: MethodRun, budget: FamilyBudget, seq_len: int = 64) -> int:
    """Bytes autograd saves for backward on one batch of `seq_len`-token rows (counted)."""
    with known_warnings():
        return measure.saved_activation_bytes(run.model, budget.batch_size, seq_len)["total"]


def step_seconds(runs: dict[str, MethodRun], budget: FamilyBudget) -> dict[str, float]:
    """Median seconds of one training step per method, timed round-robin in one run
    (`measure.median_ms`), on the same batch, so load on the machine hits all methods alike."""
    first = next(iter(runs.values()))
    tokenizer = first.model.tokenizer
    train_set, _ = tuning.support_split(budget.n_train, budget.n_val)
    rows = [tuning.tokenize_example(tokenizer, ex) for ex in train_set[: budget.batch_size]]
    batch = tuning.pad_batch(rows, tokenizer.pad_token_id)

    def step(run: MethodRun) -> Callable[[], None]:
        def go() -> None:
            run.model.train()
            run.model(**batch).loss.backward()
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)

        return go

    with known_warnings():
        ms = measure.median_ms({m: step(r) for m, r in runs.items()}, budget.timing_repeats, 1)
    return {m: v / 1e3 for m, v in ms.items()}


# --- the whole family ----------------------------------------------------------------------------
@dataclass
class MethodResult:
    """What one method bought and cost under the budget."""

    method: str
    family: str
    lr: float
    lr_val_losses: dict[float, float]
    trainable_params: int
    peft_trainable_params: int | None
    disk_bytes: int
    train_loss: list[float]
    val_loss: list[float]
    scores: list[float]
    held_bytes: int
    activation_bytes: int
    seconds_per_step: float = math.nan
    merges: bool = False
    merge_identical: bool | None = None
    example_reply: str = ""

    @property
    def memory_bytes(self) -> int:
        return self.held_bytes + self.activation_bytes

    @property
    def score(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def score_spread(self) -> float:
        """Population standard deviation of the per-seed scores."""
        return statistics.pstdev(self.scores)


@dataclass
class Unsupported:
    method: str
    error: str


def peft_trainable(model) -> int | None:
    """peft's own count (`get_nb_trainable_parameters`), None for a plain model."""
    get = getattr(model, "get_nb_trainable_parameters", None)
    return None if get is None else int(get()[0])


def evaluate_method(
    method: Method,
    budget: FamilyBudget,
    model_name: str | None,
    scratch: str | Path | None,
    say: Callable[[str], None],
) -> MethodResult | Unsupported:
    """One method under the budget: its lr picked on the validation split (first seed), the
    other seeds trained at that lr, every seed scored on the held-out complaints; bytes on disk,
    training memory and merge identity measured. peft's error if it cannot build or train it."""
    complaints = heldout(budget)
    try:
        grid = {}
        for lr in budget.lr_grid(method):
            run = train_method(method, lr, budget.seeds[0], budget, model_name)
            grid[lr] = run
            say(f"{method.name} lr={lr:g}: val loss {run.val_loss:.3f}")
        best_lr = min(grid, key=lambda lr: tuning.finite_or_inf(grid[lr].val_loss))
        runs = [grid[best_lr]] + [
            train_method(method, best_lr, seed, budget, model_name) for seed in budget.seeds[1:]
        ]
    except Exception as err:  # peft refuses this method on this model: record why
        say(f"{method.name}: {type(err).__name__}: {err}")
        return Unsupported(method.name, f"{type(err).__name__}: {err}")
    first = runs[0]
    answers = [replies(r, complaints, budget.max_new_tokens) for r in runs]
    identical = None
    if method.merges:
        identical = merged_replies(first, complaints, budget.max_new_tokens) == answers[0]
    size = 0
    if scratch is not None:
        size = disk_bytes(first, Path(scratch) / method.name.replace(" ", "-"))
    result = MethodResult(
        method=method.name, family=method.family, lr=best_lr,
        lr_val_losses={lr: r.val_loss for lr, r in grid.items()},
        trainable_params=first.trainable_params,
        peft_trainable_params=peft_trainable(first.model),
        disk_bytes=size,
        train_loss=[r.train_loss for r in runs], val_loss=[r.val_loss for r in runs],
        scores=[mean_score(a, complaints) for a in answers],
        held_bytes=sum(first.held.values()),
        activation_bytes=activation_bytes(first, budget),
        merges=method.merges, merge_identical=identical, example_reply=answers[0][0],
    )  # fmt: skip
    say(f"{method.name}: score {result.score:.2f} ± {result.score_spread:.2f}")
    return result


def _evaluate_by_name(
    method_name: str, budget: FamilyBudget, model_name: str | None, scratch: str | Path | None
) -> tuple[MethodResult | Unsupported, list[str]]:
    """`evaluate_method` in a worker process: the outcome and its progress lines."""
    lines: list[str] = []
    return evaluate_method(METHODS[method_name], budget, model_name, scratch, lines.append), lines


def compare_family(
    budget: FamilyBudget = FamilyBudget(),
    methods: Sequence[str] = CORE,
    model_name: str | None = None,
    scratch: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = 1,
) -> dict:
    """Run the budget for each method (`evaluate_method`), then time one training step of
    each, round-robin in this process on a freshly built model, so that load on the machine
    hits all methods alike.

    `workers` > 1 evaluates that many methods at a time, each in its own process on one thread
    (`worker_processes`): every run seeds itself, so the results are the same as in one process,
    only sooner. Returns {"protocol": the budget, "results": [MethodResult],
    "unsupported": [Unsupported], "heldout"}.
    """
    chosen = check_methods(methods)
    if REFERENCE not in methods:
        raise ValueError(f"methods must include {REFERENCE!r}: the ratios are taken against it")
    if workers < 1:
        raise ValueError(f"workers={workers}: give at least one process")
    say = progress or (lambda _msg: None)
    if workers == 1:
        outcomes = [evaluate_method(m, budget, model_name, scratch, say) for m in chosen]
    else:
        names = [m.name for m in chosen]
        by_name = map_in_processes("peftlab.peft_family:_evaluate_by_name",
                                   (budget, model_name, scratch), names, workers)  # fmt: skip
        for n in names:
            for line in by_name[n][1]:
                say(line)
        outcomes = [by_name[n][0] for n in names]
    results = [o for o in outcomes if isinstance(o, MethodResult)]
    unsupported = [o for o in outcomes if isinstance(o, Unsupported)]
    fresh = {r.method: untrained(METHODS[r.method], r.lr, budget, model_name) for r in results}
    seconds = step_seconds(fresh, budget)
    for r in results:
        r.seconds_per_step = seconds[r.method]
    return {"protocol": budget, "results": results, "unsupported": unsupported,
            "heldout": heldout(budget)}  # fmt: skip
