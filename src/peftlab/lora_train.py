"""LoRA fine-tuning written out by hand: plain PyTorch, no Trainer, no peft.

The loop a learner can write on a whiteboard: wrap layers with `add_lora`, hand only A and B to
AdamW, then repeat batch -> forward -> loss on the reply tokens -> backward -> step. It is
written out on purpose (lesson 02's subject); everywhere else the course runs the same loop once,
in `tuning.fit`. Tokenizing, batching and the loss are the kit's (`tuning.tokenize_example`,
`tuning.shuffled_batches`, `tuning.next_token_loss`), so this path, the kit's and the peft +
Trainer path see the same data and count the same loss.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from peftlab.generate import generate
from peftlab.lora import add_lora, count_trainable, lora_layers
from peftlab.rubric import mean_score
from peftlab.schedule import warmup_cosine
from peftlab.seed import seed_everything
from peftlab.support_data import Example, heldout_complaints
from peftlab.tuning import next_token_loss, pad_batch, shuffled_batches, tokenize_example

DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for Llama


@dataclass
class ScratchResult:
    """What a hand-written fine-tune produced: the model, its per-step losses, and its size."""

    model: nn.Module
    trainable_params: int
    total_params: int
    train_seconds: float
    losses: list[tuple[int, float]] = field(default_factory=list)


def _check(steps: int, batch_size: int, learning_rate: float, examples: Sequence) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(
            f"steps={steps!r}: the number of training steps must be a positive integer"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size={batch_size!r}: must be a positive integer, e.g. 16")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r}: must be positive, e.g. 3e-3 for LoRA")
    if not examples:
        raise ValueError("examples=[]: pass at least one complaint/reply pair to train on")


def fit_by_hand(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    on_loss: Callable[[int, float], None] | None = None,
) -> ScratchResult:
    """Train whatever parameters of `model` require gradients; the loop itself, written out."""
    _check(steps, batch_size, learning_rate, examples)
    seed_everything(seed)
    dataset = [tokenize_example(tokenizer, ex) for ex in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    warmup = max(steps // 10, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, steps, warmup)
    )
    batches = shuffled_batches(len(dataset), batch_size, seed)
    losses = []
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = pad_batch([dataset[i] for i in next(batches)], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = next_token_loss(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append((step, loss.item()))
        if on_loss:
            on_loss(step, loss.item())
    seconds = time.perf_counter() - start
    model.eval()
    total = sum(p.numel() for p in model.parameters())
    return ScratchResult(model, count_trainable(model), total, seconds, losses)


def train_lora_from_scratch(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    r: int = 8,
    alpha: float = 16,
    target_modules: str | Sequence[str] = DEFAULT_TARGETS,
    dropout: float = 0.0,
    steps: int = 120,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
    on_loss: Callable[[int, float], None] | None = None,
) -> ScratchResult:
    """Add LoRA to `model` (in place) with peftlab.lora and train only A and B."""
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    seed_everything(seed)
    add_lora(model, targets, r=r, alpha=alpha, dropout=dropout)
    return fit_by_hand(
        model,
        tokenizer,
        examples,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        on_loss=on_loss,
    )


def train_full(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    steps: int = 120,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    on_loss: Callable[[int, float], None] | None = None,
) -> ScratchResult:
    """Full fine-tune with the same loop: every weight trains. The yardstick LoRA is measured by;
    its default rate is a third of LoRA's, since moving every weight moves the model further."""
    model.requires_grad_(True)
    return fit_by_hand(
        model,
        tokenizer,
        examples,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        on_loss=on_loss,
    )


def lora_update(model: nn.Module, name: str) -> torch.Tensor:
    """dW = (alpha/r) B A of the LoRA layer `name`, as an (out, in) matrix."""
    layer = lora_layers(model).get(name)
    if layer is None:
        raise ValueError(f"{name!r} has no LoRA; LoRA layers: {', '.join(lora_layers(model))}")
    delta = layer.delta_weight().detach()
    return delta.T if layer.fan_in_fan_out else delta


def full_update(base: nn.Module, tuned: nn.Module, name: str) -> torch.Tensor:
    """dW = W_tuned - W_base of the linear layer `name` after a full fine-tune."""
    return (tuned.get_submodule(name).weight - base.get_submodule(name).weight).detach()


def energy_in_top(delta: torch.Tensor, k: int) -> float:
    """Share of ||dW||_F^2 that lies in the top k singular directions (1.0 = rank at most k)."""
    squares = torch.linalg.svdvals(delta.float()) ** 2
    return (squares[:k].sum() / squares.sum()).item()


def heldout_rubric(
    model: nn.Module, tokenizer, complaints: Sequence[str] | None = None
) -> tuple[float, list[str]]:
    """Mean rubric score (greeting, acknowledgement, action, timeline) of greedy replies to
    complaints the fine-tune never saw, and the replies themselves."""
    complaints = list(complaints) if complaints is not None else heldout_complaints()
    replies = generate(model, tokenizer, complaints)
    return mean_score(replies, complaints), replies
