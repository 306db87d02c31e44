"""One fine-tuning kit: split, tokenize, batch, loss and step, with a hook after every step.

Every hand-run fine-tune of the course (lesson 07's PEFT family, lesson 08's sweeps, and the
DPO and GRPO of lesson 12) is this loop with its own arguments; the Trainer-based paths
(`finetune.train_lora`, TRL) share its tokenizing, padding and demo recipe (`RECIPES`).

    from peftlab import tuning

    train, val = tuning.hold_out_every(examples, n_val=40)                # split
    rows = [tuning.tokenize_example(tokenizer, ex) for ex in train]      # tokenize, mask prompt
    pad = tokenizer.pad_token_id
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    result = tuning.fit(
        model, rows, opt, steps=24, batch_size=8, seed=0,
        collate=lambda batch: tuning.pad_batch(batch, pad),              # batch
        loss=tuning.causal_lm_loss,                                      # loss(model, batch)
        on_step=lambda s: print(s.step, s.loss, s.lr),                   # after each step
    )
    tuning.mean_loss(model, [tuning.tokenize_example(tokenizer, ex) for ex in val], pad)

`fit` draws each step's rows with `batch_indices` (seeded epochs, the same for every run of a
seed), sets the learning rate from `schedule.warmup_cosine` (10% warm-up, then cosine to 0),
computes `loss(model, collate(rows))`, steps the optimizer, calls `on_step` with a `Step` (the
gradients still in place: a hook may read them, as AdaLoRA's budget does, or measure memory),
and clears the gradients. The loss is any function of (model, batch) returning a scalar tensor:
a preference loss (DPO) takes a batch of chosen/rejected pairs that its own `collate` builds;
`on_step` may return a dict of what it measured, kept in `Step.extra` and `Fit.steps`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from peftlab import base_model, support_data
from peftlab.schedule import warmup_cosine
from peftlab.support_data import Example, render_chat

IGNORE_INDEX = -100  # label value the loss skips (PyTorch's cross_entropy default)
T = TypeVar("T")


# --- split ------------------------------------------------------------------------------------
def hold_out_every(items: Sequence[T], n_val: int) -> tuple[list[T], list[T]]:
    """(train, validation): every k-th item held back (k = len // n_val), `n_val` of them, so
    the validation items are spread evenly over the set and the same on every run."""
    items = list(items)
    if not 0 < n_val < len(items):
        raise ValueError(f"n_val={n_val}: hold back between 1 and {len(items) - 1} of "
                         f"{len(items)} items")  # fmt: skip
    every = len(items) // n_val
    val_at = [i for i in range(len(items)) if i % every == every - 1][:n_val]
    held = set(val_at)
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in val_at]


def support_split(n_train: int, n_val: int) -> tuple[list[Example], list[Example]]:
    """The course's fine-tune set of `n_train` chats, every k-th of them (`n_val` in all) held
    back for choosing a learning rate (lessons 07 and 08 share it)."""
    return hold_out_every(support_data.finetune_set(n_train), n_val)


_TOKENIZED: dict[tuple, tuple] = {}


def tokenized_support_split(tokenizer, model_name: str | None, n_train: int, n_val: int) -> tuple:
    """`support_split` as token ids (`tokenize_example`): (train rows, validation rows),
    tokenized once per model and split in this process."""
    key = (n_train, n_val, base_model.canonical_name(model_name))
    if key not in _TOKENIZED:
        _TOKENIZED[key] = tuple(
            tuple(tokenize_example(tokenizer, ex) for ex in part)
            for part in support_split(n_train, n_val)
        )
    return _TOKENIZED[key]


def hold_out_fraction(
    items: Sequence[T], fraction: float | None, seed: int = 0
) -> tuple[list[T], list[T]]:
    """(train, validation): a seeded shuffle picks `fraction` of the items (at least one) to
    hold out; both parts keep the file's order. `fraction=None` holds out nothing."""
    items = list(items)
    if fraction is None:
        return items, []
    if not 0 < fraction <= 0.5:
        raise ValueError(
            f"--val-fraction {fraction}: must be in (0, 0.5], e.g. 0.1 holds out a tenth"
        )
    n_val = max(1, round(len(items) * fraction))
    if n_val >= len(items):
        raise ValueError(
            f"--val-fraction {fraction}: {len(items)} record(s) leave none to train on; "
            "add records or drop --val-fraction"
        )
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[n_val:])], [items[i] for i in sorted(order[:n_val])]


# --- tokenize and batch -----------------------------------------------------------------------
def tokenize_example(tokenizer, example: Example, max_length: int = 256) -> dict[str, list[int]]:
    """Token ids of the whole chat, with labels masked to IGNORE_INDEX on the prompt part."""
    prompt = render_chat(tokenizer, example.complaint)
    full = render_chat(tokenizer, example.complaint, example.reply)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not render the prompt as a prefix of the chat")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + reply_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + reply_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def pad_batch(features: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and of the loss."""
    width = max(len(f["input_ids"]) for f in features)

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

    input_ids = padded("input_ids", pad_token_id)
    lengths = torch.tensor([len(f["input_ids"]) for f in features])
    attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": padded("labels", IGNORE_INDEX),
    }


def shuffled_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Indices of `n` examples, `batch_size` at a time, for ever: each epoch a new seeded
    permutation (torch's generator), a batch running on into the next epoch where one ends."""
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"n={n}, batch_size={batch_size}: both must be positive")
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            order += torch.randperm(n, generator=generator).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """The first `steps` batches of `shuffled_batches`: the same for every method of a seed."""
    batches = shuffled_batches(n, batch_size, seed)
    return [next(batches) for _ in range(steps)]


# --- loss -------------------------------------------------------------------------------------
def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from tokens up to t, counted where the label
    is kept: the prompt and the padding carry IGNORE_INDEX labels."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
    )


def causal_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own causal-LM loss on `batch` (transformers shifts the labels itself)."""
    return model(**batch).loss


@torch.no_grad()
def mean_loss(model, features: Sequence[dict], pad_token_id: int, batch_size: int = 20) -> float:
    """Mean loss per label token over `features` (tokenized examples): each batch's mean loss
    weighted by its kept labels, so every reply token weighs the same. (A row whose first label
    is kept, plain text, counts that label though nothing predicts it: one token per row.)
    The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(features), batch_size):
        batch = pad_batch(list(features[i : i + batch_size]), pad_token_id)
        n = int((batch["labels"] != IGNORE_INDEX).sum())
        if n:
            total += float(model(**batch).loss) * n
            tokens += n
    model.train(was_training)
    if not tokens:
        raise ValueError("no kept label in features: every reply was cut or masked")
    return total / tokens


def finite_or_inf(loss: float) -> float:
    """A diverged run's loss (nan or inf) as inf: never the best when picking by the lowest."""
    return loss if math.isfinite(loss) else math.inf


# --- step ---------------------------------------------------------------------------------------
@dataclass
class Step:
    """What `fit` hands `on_step` after each optimizer step (gradients not yet cleared)."""

    step: int  # steps done, from 1
    loss: float
    lr: float  # the first parameter group's rate this step
    model: Any
    optimizer: torch.optim.Optimizer
    extra: dict = field(default_factory=dict)


@dataclass
class Fit:
    """A finished `fit`: the loss of every step, its seconds, and what `on_step` returned."""

    losses: list[float]
    seconds: float
    measured: list[dict] = field(default_factory=list)  # one dict per step (empty if none)


def fit(
    model,
    rows: Sequence,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    collate: Callable[[list], Any],
    loss: Callable[[Any, Any], torch.Tensor] = causal_lm_loss,
    warmup: int | None = None,
    schedule: Callable[[int], float] | None = None,
    batches: Sequence[Sequence[int]] | None = None,
    on_step: Callable[[Step], dict | None] | None = None,
) -> Fit:
    """Train `model` for `steps` optimizer steps on batches of `rows`.

    Step k (from 0): the rows `batches[k]` (default `batch_indices(len(rows), batch_size, steps,
    seed)`), the rate of every parameter group set to its initial rate times `schedule(k)`
    (default `warmup_cosine(k, steps, warmup)`, warm-up `max(1, steps // 10)` steps), then
    `loss(model, collate(those rows))`, backward, `optimizer.step()`, `on_step(Step(...))`,
    and the gradients cleared. The model is left in training mode.
    """
    if steps <= 0 or batch_size <= 0:
        raise ValueError(f"steps={steps}, batch_size={batch_size}: both must be positive")
    if not rows:
        raise ValueError("no rows to train on: give at least one example")
    if warmup is None:
        warmup = max(1, steps // 10)
    if schedule is None:
        schedule = lambda k: warmup_cosine(k, steps, warmup)  # noqa: E731
    if batches is None:
        batches = batch_indices(len(rows), batch_size, steps, seed)
    if len(batches) < steps:
        raise ValueError(f"{len(batches)} batches for steps={steps}: give one per step")
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    losses: list[float] = []
    measured: list[dict] = []
    model.train()
    start = time.perf_counter()
    for k in range(steps):
        factor = schedule(k)
        for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base_lr * factor
        value = loss(model, collate([rows[i] for i in batches[k]]))
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
        if on_step is not None:
            step = Step(k + 1, losses[-1], optimizer.param_groups[0]["lr"], model, optimizer)
            extra = on_step(step)
            if extra:
                measured.append(dict(extra))
        optimizer.zero_grad(set_to_none=True)
    return Fit(losses, time.perf_counter() - start, measured)


# --- the demo's recipe per model ----------------------------------------------------------------
DEFAULT_STEPS = 150


@dataclass(frozen=True)
class Recipe:
    """How the demo fine-tunes and evaluates one model: the same code, sized to the model.

    `sample`: how many complaints of each set the demo answers by default (an evenly spaced,
    fixed sample, `compare.sample_of`; None: all of them). `precision` and `reply_logits_only`
    are `finetune.train_lora`'s levers; generation runs in the same precision.
    """

    steps: int = DEFAULT_STEPS
    batch_size: int = 16
    learning_rate: float = 3e-3
    target_modules: str | None = None  # None: peft's default for the architecture (q, v)
    precision: str = "fp32"
    reply_logits_only: bool = False
    gradient_checkpointing: bool | None = None  # None: train_lora's default (on for QLoRA only)
    sample: int | None = None


RECIPES = {
    # the toy: every linear layer, 150 steps, everything in fp32 (the lessons' numbers)
    base_model.EMBEDDED_NAME: Recipe(target_modules="all-linear"),
    # SmolLM2-135M-Instruct: 135M parameters on two cores. 40 steps of 8 learn the tone; bf16
    # where the CPU has it; the output layer (49,152 words) on reply tokens only; gradient
    # checkpointing keeps the peak under 3 GB for a quarter more time per step; 24 complaints
    # of each set (benchmarks/real_model.py measures each lever)
    "smollm2": Recipe(
        steps=40,
        batch_size=8,
        learning_rate=2e-3,
        target_modules="all-linear",
        precision="auto",
        reply_logits_only=True,
        gradient_checkpointing=True,
        sample=24,
    ),  # fmt: skip
}


def recipe(model_name: str | None = None) -> Recipe:
    """The demo's recipe for a model (`RECIPES`; any other model: 150 steps on q and v, fp32)."""
    return RECIPES.get(base_model.canonical_name(model_name), Recipe())
