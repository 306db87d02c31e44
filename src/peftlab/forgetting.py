"""What fine-tuning learns, what it forgets, and the hyperparameters that decide it.

*Learning* is measured on the support task: the loss on a validation split of the fine-tune set
(`tuning.support_split`) and the rubric score of greedy replies to held-out complaints. *Forgetting*
is measured on the base model's other ability, plain text of its pretraining world (shop facts,
letters between friends, notes at work) that it was never trained on and the fine-tune set does
not contain (`forget_texts`): the rise of its loss per token over the base model's.

`train_config` fine-tunes a fresh copy of the base with one `Config` (full fine-tuning, or LoRA
at a rank, a scale rule and a set of target modules) and measures learning and forgetting at the
steps `SweepBudget.evals`. The loop is the course's (`tuning.fit`: the same batches for a seed
as lesson 07's, AdamW, warm-up then cosine); `sweep` runs configs over learning rates and seeds.
`overfit` trains on a small slice for many epochs through transformers' `Trainer`, evaluating
every epoch on the validation split, keeping the best checkpoint (`load_best_model_at_end`) and,
when asked, stopping early (`EarlyStoppingCallback`).
"""

from __future__ import annotations

import inspect
import math
import statistics
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from peftlab import base_model, finetune, support_data, tuning
from peftlab.generate import generate
from peftlab.lora import count_trainable
from peftlab.quiet import known_warnings, muted
from peftlab.rubric import mean_score
from peftlab.seed import seed_everything

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
QV = ["q_proj", "v_proj"]
# base_model.build_embedded holds back the first fiftieth of its documents from pretraining
BASE_HELDOUT_DOCS = inspect.signature(base_model.build_embedded).parameters["n_docs"].default // 50


@dataclass(frozen=True)
class Config:
    """Full fine-tuning (`r=None`) or LoRA at rank `r` on `targets`, scaled by alpha/r or, with
    `rslora`, by alpha/sqrt(r) (peft's `use_rslora`)."""

    name: str
    r: int | None = None
    alpha: float = 16.0
    targets: str | tuple[str, ...] = "all-linear"
    rslora: bool = False

    def __post_init__(self):
        if self.r is not None and self.r <= 0:
            raise ValueError(f"{self.name}: r={self.r}; give a positive rank, or None for full")
        if self.alpha <= 0:
            raise ValueError(f"{self.name}: alpha={self.alpha}; lora_alpha must be positive")

    @property
    def full(self) -> bool:
        return self.r is None

    @property
    def scale(self) -> float:
        """The factor peft multiplies B A by: alpha/r, or alpha/sqrt(r) for rsLoRA."""
        if self.r is None:
            return math.nan
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)

    def peft_config(self):
        from peft import LoraConfig

        targets = self.targets if isinstance(self.targets, str) else list(self.targets)
        return LoraConfig(r=self.r, lora_alpha=self.alpha, target_modules=targets,
                          use_rslora=self.rslora, task_type="CAUSAL_LM")  # fmt: skip


FULL = Config("full fine-tuning")


def lora(r: int, targets: str | Sequence[str] = "all-linear", *, rslora: bool = False,
         alpha: float = 16.0) -> Config:  # fmt: skip
    """A LoRA config named by what it is ("LoRA r8 all-linear", "rsLoRA r64 all-linear")."""
    where = targets if isinstance(targets, str) else ",".join(t.removesuffix("_proj")
                                                             for t in targets)  # fmt: skip
    kind = "rsLoRA" if rslora else "LoRA"
    tuple_targets = targets if isinstance(targets, str) else tuple(targets)
    return Config(f"{kind} r{r} {where}", r, alpha, tuple_targets, rslora)


@dataclass(frozen=True)
class SweepBudget:
    """The budget of every run: `steps` of `batch_size` chats from the fine-tune set (`n_val`
    of its `n_train` examples held back), learning and forgetting measured after each step in
    `evals` (and at step 0, the base), `n_forget` held-out pretraining documents, `n_heldout`
    complaints scored at the end with replies of up to `max_new_tokens`, and the seeds."""

    steps: int = 16
    batch_size: int = 4
    seeds: tuple[int, ...] = (0, 1, 2)
    evals: tuple[int, ...] = (8, 16)
    n_train: int = 400
    n_val: int = 20
    n_forget: int = 24
    n_heldout: int = 8
    max_new_tokens: int = 40

    def __post_init__(self):
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError(f"steps={self.steps}, batch_size={self.batch_size}: both positive")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, each once")
        if (
            not self.evals
            or list(self.evals) != sorted(set(self.evals))
            or not (0 < self.evals[0] and self.evals[-1] == self.steps)
        ):
            raise ValueError(
                f"evals={self.evals}: give increasing steps in 1..{self.steps}, ending at steps"
            )
        if not 0 < self.n_forget <= 200:
            raise ValueError(f"n_forget={self.n_forget}: measure forgetting on 1-200 documents")
        if not 0 < self.n_val < self.n_train:
            raise ValueError(f"n_val={self.n_val}: hold back between 1 and n_train-1 examples")
        if self.n_heldout <= 0:
            raise ValueError(f"n_heldout={self.n_heldout}: score at least one complaint")


# --- what forgetting is measured on ---------------------------------------------------------
def document_kind(text: str) -> str:
    """'letter' (a note between friends), 'note' (at work) or 'facts' (about the shops)."""
    if " answered: " in text:
        return "letter"
    if (
        text.startswith(("Hello team", "Good morning everyone"))
        or ", sorry I missed" in text
        or ("thank you for your help with" in text)
    ):
        return "note"
    return "facts"


def forget_texts(n: int = 24) -> list[str]:
    """The first `n` plain-text documents (no chats) of the base corpus's held-out part: the
    base model never trained on them (`base_model.build_embedded` holds them back), and they are not
    support chats, so the fine-tune set contains none of them."""
    docs = support_data.base_corpus(n_docs=BASE_HELDOUT_DOCS)
    texts = [d.text for d in docs if d.text is not None]
    if n > len(texts):
        raise ValueError(f"n={n}: only {len(texts)} held-out documents")
    return texts[:n]


def tokenized_texts(tokenizer, texts: Sequence[str]) -> list[dict[str, list[int]]]:
    """Documents as the base model trained on text (ending in its end-of-text token), every
    token counted in the loss."""
    rows = tokenizer([t + base_model.END_OF_TEXT for t in texts], add_special_tokens=False)
    return [{"input_ids": ids, "labels": list(ids)} for ids in rows["input_ids"]]


# --- one run ----------------------------------------------------------------------------------
@dataclass
class Point:
    """Learning and forgetting after `step` steps (step 0: the base model)."""

    step: int
    val_loss: float
    forget_loss: float


@dataclass
class ForgettingRun:
    """One config trained at one rate and seed: its learning and forgetting along the way."""

    config: str
    lr: float
    seed: int
    trainable_params: int
    points: list[Point]
    losses: list[float]
    score: float
    update_norm: float  # Frobenius norm of the whole weight update (every adapted layer)
    replies: list[str] = field(default_factory=list)

    @property
    def final(self) -> Point:
        return self.points[-1]

    @property
    def forgetting(self) -> float:
        """Rise of the held-out pretraining loss (nats per token) over the base model's."""
        return self.final.forget_loss - self.points[0].forget_loss


def apply_config(config: Config, model):
    """`model` wrapped with LoRA (peft's get_peft_model), or itself, all trainable, for full."""
    if config.full:
        model.requires_grad_(True)
        return model
    from peft import get_peft_model

    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return get_peft_model(model, config.peft_config())


@torch.no_grad()
def update_norm(config: Config, model, base_state: dict[str, torch.Tensor]) -> float:
    """||delta W||_F over every adapted weight: scale * B A for LoRA (what merging would add),
    W - W0 over the linear layers for full fine-tuning."""
    total = 0.0
    if config.full:
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                total += float((p - base_state[name]).pow(2).sum())
        return math.sqrt(total)
    for module in model.modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            delta = module.lora_B["default"].weight @ module.lora_A["default"].weight
            total += float((module.scaling["default"] * delta).pow(2).sum())
    return math.sqrt(total)


_BASE: dict[tuple, Point] = {}


def train_config(
    config: Config,
    lr: float,
    seed: int,
    budget: SweepBudget = SweepBudget(),
    model_name: str | None = None,
    score: bool = True,
) -> ForgettingRun:
    """Fine-tune a fresh base with `config` at `lr` (`tuning.fit`); learning and forgetting at
    each eval step, the rubric score of the held-out replies at the end (`score=False` skips
    it: nan)."""
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"lr={lr}: the learning rate must be a positive number")
    with muted():
        model, tokenizer = base_model.load(model_name)
    data, val = tuning.tokenized_support_split(tokenizer, model_name, budget.n_train, budget.n_val)
    forget = tokenized_texts(tokenizer, forget_texts(budget.n_forget))
    pad = tokenizer.pad_token_id

    def point(step: int) -> Point:
        p = Point(step, tuning.mean_loss(model, val, pad), tuning.mean_loss(model, forget, pad))
        model.train()
        return p

    base_state = {k: v.detach().clone() for k, v in model.named_parameters()} if config.full else {}
    key = (base_model.canonical_name(model_name), budget.n_train, budget.n_val, budget.n_forget)
    if key not in _BASE:  # the base model's point, the same for every run
        _BASE[key] = point(0)
    points = [_BASE[key]]
    seed_everything(seed)  # the adapter's random init
    model = apply_config(config, model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def after_step(step: tuning.Step) -> None:
        if step.step in budget.evals:
            points.append(point(step.step))

    with known_warnings():
        fit = tuning.fit(model, data, opt, steps=budget.steps, batch_size=budget.batch_size,
                         seed=seed, collate=lambda rows: tuning.pad_batch(rows, pad),
                         on_step=after_step)  # fmt: skip
        norm = update_norm(config, model, base_state)
        answers: list[str] = []
        value = math.nan
        if score:
            complaints = support_data.heldout_complaints(budget.n_heldout)
            model.eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                answers = generate(model, tokenizer, complaints,
                                   max_new_tokens=budget.max_new_tokens)  # fmt: skip
            value = mean_score(answers, complaints)
    return ForgettingRun(config.name, lr, seed, count_trainable(model), points, fit.losses,
                         value, norm, answers)  # fmt: skip


def sweep(
    configs: Sequence[Config],
    lrs: Sequence[float],
    budget: SweepBudget = SweepBudget(),
    model_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ForgettingRun]:
    """Every config at every rate with every seed."""
    if not lrs:
        raise ValueError("no learning rates: give at least one")
    runs = []
    for config in configs:
        for lr in lrs:
            for seed in budget.seeds:
                runs.append(train_config(config, lr, seed, budget, model_name))
                if progress:
                    r = runs[-1]
                    progress(f"{config.name} lr={lr:g} seed={seed}: val {r.final.val_loss:.3f} "
                             f"forget {r.forgetting:+.3f} score {r.score:.2f}")  # fmt: skip
    return runs


# --- summaries over seeds -----------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    mean: float
    spread: float  # population standard deviation over seeds
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        values = list(values)
        if not values:
            raise ValueError("no values to summarize")
        if not all(math.isfinite(v) for v in values):  # a diverged run: no spread to speak of
            return cls(statistics.fmean(values), math.nan, len(values))
        return cls(statistics.fmean(values), statistics.pstdev(values), len(values))


def select(
    runs: Sequence[ForgettingRun], config: str, lr: float | None = None
) -> list[ForgettingRun]:
    found = [r for r in runs if r.config == config and (lr is None or r.lr == lr)]
    if not found:
        raise ValueError(f"no runs of {config!r} at lr={lr}: run it first")
    return found


def best_lr(runs: Sequence[ForgettingRun], config: str) -> float:
    """The rate of the grid with the lowest mean final validation loss over seeds."""
    lrs = sorted({r.lr for r in select(runs, config)})
    return min(lrs, key=lambda lr: tuning.finite_or_inf(Stat.of(r.final.val_loss for r in
                                                   select(runs, config, lr)).mean))  # fmt: skip


def vertex_lr(runs: Sequence[ForgettingRun], config: str) -> float:
    """The rate at the bottom of a parabola through the mean loss at the best grid rate and its
    two neighbours, in log(lr): the optimum between grid points. The best rate itself when it
    sits at an end of the grid."""
    lrs = sorted({r.lr for r in select(runs, config)})
    best = best_lr(runs, config)
    i = lrs.index(best)
    if i in (0, len(lrs) - 1):
        return best
    xs = [math.log(lrs[j]) for j in (i - 1, i, i + 1)]
    ys = [Stat.of(r.final.val_loss for r in select(runs, config, lrs[j])).mean
          for j in (i - 1, i, i + 1)]  # fmt: skip
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
    if a <= 0:
        return best
    return math.exp(min(max(-b / (2 * a), x0), x2))


# --- overfitting, through transformers' Trainer ------------------------------------------------
@dataclass
class Overfit:
    """Train and validation loss per epoch of one run on a small slice, and what the Trainer
    kept: the best epoch (`load_best_model_at_end`) and, with early stopping, where it stopped."""

    seed: int
    n_examples: int
    epochs: list[int]
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    best_val_loss: float
    stopped_epoch: int  # the last epoch trained (== len(epochs) without early stopping)
    final_val_loss: float  # validation loss of the model the Trainer handed back


class _EpochLosses:
    """Trainer callback collecting the mean training loss and the eval loss of each epoch."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    outer.train.append(float(logs["loss"]))
                if logs and "eval_loss" in logs:
                    outer.val.append(float(logs["eval_loss"]))

        self.train: list[float] = []
        self.val: list[float] = []
        self.callback = Callback()


def overfit(
    seed: int,
    *,
    n_examples: int = 8,
    epochs: int = 12,
    lr: float = 1e-2,
    r: int = 8,
    batch_size: int = 4,
    patience: int | None = None,
    budget: SweepBudget = SweepBudget(),
    model_name: str | None = None,
) -> Overfit:
    """LoRA (all linear layers) on the first `n_examples` of the training split for `epochs`
    epochs, through `finetune.build_peft_model` and transformers' Trainer with the course's
    settings (`finetune.trainer_settings`), a constant rate after warm-up, an evaluation on the
    validation split and a checkpoint every epoch, and the best one loaded at the end.
    `patience` adds `EarlyStoppingCallback(early_stopping_patience=patience)`."""
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if not 0 < n_examples <= budget.n_train - budget.n_val:
        raise ValueError(f"n_examples={n_examples}: train on 1..{budget.n_train - budget.n_val}")
    if epochs <= 0:
        raise ValueError(f"epochs={epochs}: train for at least one epoch")
    if patience is not None and patience <= 0:
        raise ValueError(f"patience={patience}: give a positive number of epochs, or None")
    with muted():
        model, tokenizer = base_model.load(model_name)
    train_split, val_split = tuning.support_split(budget.n_train, budget.n_val)
    data = [tuning.tokenize_example(tokenizer, ex) for ex in train_split[:n_examples]]
    val = [tuning.tokenize_example(tokenizer, ex) for ex in val_split]
    seed_everything(seed)
    wrapped = finetune.build_peft_model(model, r=r, alpha=2 * r, target_modules="all-linear")
    per_epoch = math.ceil(n_examples / batch_size)
    settings = finetune.trainer_settings(epochs * per_epoch, batch_size, lr, seed)
    settings.update(
        lr_scheduler_type="constant_with_warmup", warmup_steps=1, logging_strategy="epoch",
        eval_strategy="epoch", save_strategy="epoch", save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, per_device_eval_batch_size=len(val),
    )  # fmt: skip
    losses = _EpochLosses()
    callbacks = [losses.callback]
    if patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    with tempfile.TemporaryDirectory(prefix="peftlab-overfit-") as out, known_warnings():
        trainer = Trainer(
            model=wrapped,
            args=TrainingArguments(output_dir=out, remove_unused_columns=False, **settings),
            train_dataset=data,
            eval_dataset=val,
            data_collator=lambda feats: tuning.pad_batch(feats, tokenizer.pad_token_id),
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()
        final = tuning.mean_loss(wrapped, val, tokenizer.pad_token_id)
        best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    n = len(losses.val)
    return Overfit(seed, n_examples, list(range(1, n + 1)), losses.train[:n], losses.val,
                   best_step // per_epoch, float(trainer.state.best_metric), n, final)  # fmt: skip


def lora_params(config: Config, model_name: str | None = None) -> int:
    """Trainable parameters of `config` on the model (peft's count)."""
    with muted():
        model, _ = base_model.load(model_name)
    return count_trainable(apply_config(config, model))


def matched_rank(
    r: int, targets: str | Sequence[str] = ATTENTION, model_name: str | None = None
) -> int:
    """The rank at which LoRA on `targets` trains as many parameters as all-linear LoRA at `r`
    (nearest integer: a LoRA's count is its rank times its count at rank 1)."""
    per_rank = lora_params(lora(1, targets), model_name)
    return max(1, round(r * lora_params(lora(1), model_name) / per_rank))
