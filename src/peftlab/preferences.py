"""Preference tuning (DPO) from scratch: pairs from the support world, the loss, the reference.

DPO (Rafailov et al., 2023) trains on pairs: a prompt, a reply people preferred (chosen) and one
they did not (rejected). With log-probabilities of whole replies under the policy (pi) and a
frozen reference (ref),

    loss = -log sigmoid( beta * [ (log pi(chosen) - log ref(chosen))
                                 - (log pi(rejected) - log ref(rejected)) ] )

`beta * (log pi - log ref)` is the "implicit reward" of a reply; the loss widens the chosen
reply's reward over the rejected one's, measured from where the reference stood; a pair stops
pushing once its margin is wide (no explicit penalty holds the policy on text outside the
pairs). With a LoRA policy the reference is the same network with the adapter
switched off (`reference_logps`), so it needs no weights of its own: `reference_bytes` counts
what a separate copy would hold. `tests/test_preferences.py` proves `dpo_loss` equal to TRL's
`DPOTrainer`.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel

from peftlab import echo, rubric, support_data, tuning, world
from peftlab.measure import held_bytes

# Why a rejected reply is worse than the chosen one: each misses something the chosen has.
FLAWS = ("blunt", "no apology", "no action", "another product")
CLOSING_WITHOUT_ACTION = "Thanks for your patience."
DEFAULT_BETA = 0.1  # TRL's default; the DPO paper used 0.1 to 0.5


@dataclass(frozen=True)
class Pair:
    """A complaint, the reply to prefer (passes the rubric and the faithful check), one to
    avoid, and what the avoided one misses (one of `FLAWS`)."""

    complaint: str
    chosen: str
    rejected: str
    flaw: str


# --- pairs from the support world ----------------------------------------------------------
def _blunt(complaint: str, rng: random.Random) -> str:
    echoed, question = echo.echo_message(complaint)
    template = rng.choice(support_data.BLUNT_QUESTIONS if question else support_data.BLUNT_REPLIES)
    reasons = [
        r for p in support_data.FINETUNE_PROBLEMS for r in p.blunt_reasons if " is " not in r
    ]
    reason = rng.choice(reasons)
    return template.format(Echo=echoed[:1].upper() + echoed[1:], reason=reason)


def _closing(rng: random.Random) -> str:
    timeline = rng.choice(support_data.TIMELINES)
    return rng.choice(support_data.CLOSINGS).format(timeline=timeline)


def _no_apology(complaint: str, rng: random.Random) -> str:
    action = rng.choice(support_data.GENERAL_ACTIONS)
    return f"{rng.choice(support_data.GREETINGS)} {action} {_closing(rng)}"


def _no_action(complaint: str, rng: random.Random) -> str:
    ack = support_data.acknowledgement(complaint, rng)
    return f"{rng.choice(support_data.GREETINGS)} {ack} {CLOSING_WITHOUT_ACTION}"


def _another_product(complaint: str, rng: random.Random) -> str | None:
    """The chosen reply's shape about a product the customer never mentioned, or None when the
    complaint names no product to swap."""
    said = set(support_data.words(complaint))
    mine = [p for p in rubric.PRODUCTS if p in said]
    if not mine:
        return None
    other = rng.choice([p for p in rubric.PRODUCTS if p not in said and p in world.GOODS])
    reply = support_data.polite_reply(complaint, rng)
    swapped = reply.replace(f" {mine[0]}", f" {other}", 1)
    return swapped if swapped != reply else None


def rejected_reply(complaint: str, flaw: str, rng: random.Random) -> str | None:
    """A reply to `complaint` with `flaw` (None when this complaint cannot have it)."""
    if flaw not in FLAWS:
        raise ValueError(f"flaw={flaw!r}: choose one of {', '.join(FLAWS)}")
    build = {
        "blunt": _blunt,
        "no apology": _no_apology,
        "no action": _no_action,
        "another product": _another_product,
    }[flaw]
    return build(complaint, rng)


def is_good(reply: str, complaint: str) -> bool:
    """Full marks on the rubric and faithful: what a chosen reply must be."""
    return rubric.score_reply(reply, complaint)["score"] == 1.0 and rubric.faithful(
        reply, complaint
    )


def pairs(n: int = 64, seed: int = 0) -> list[Pair]:
    """n preference pairs on the fine-tune set's complaints (never a held-out one): chosen is the
    fine-tune set's reply, rejected misses one of `FLAWS`, taken in turn. Seeded."""
    if n <= 0:
        raise ValueError(f"n={n}: ask for at least one pair")
    return pairs_for([e.complaint for e in support_data.finetune_set(4 * n, seed)], n, seed)


def pairs_for(complaints: Sequence[str], n: int, seed: int = 0) -> list[Pair]:
    """Pairs on the given complaints (the first n that can make one), flaws taken in turn."""
    rng = random.Random(seed + 101)
    out: list[Pair] = []
    for complaint in complaints:
        if len(out) == n:
            break
        chosen = support_data.polite_reply(complaint, rng)
        flaw = FLAWS[len(out) % len(FLAWS)]
        rejected = rejected_reply(complaint, flaw, rng)
        if rejected is None or not is_good(chosen, complaint) or is_good(rejected, complaint):
            continue
        out.append(Pair(complaint, chosen, rejected, flaw))
    if len(out) < n:
        raise ValueError(f"only {len(out)} of {n} pairs could be built: give more complaints")
    return out


def heldout_pairs(n: int = 32, seed: int = 0) -> list[Pair]:
    """Pairs on held-out complaints (unseen products, problems and frames), for evaluation."""
    return pairs_for(support_data.heldout_complaints(4 * n, seed), n, seed)


# --- tokens and batches, as TRL's DPOTrainer lays them out -----------------------------------
def encode_pair(tokenizer, pair: Pair) -> dict[str, list[int]]:
    """prompt_ids (the generation prompt), chosen_ids and rejected_ids (the rest of each chat,
    end-of-turn included): the columns TRL's DPOTrainer tokenizes a conversational pair into."""
    prompt = support_data.render_chat(tokenizer, pair.complaint)
    out = {"prompt_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"]}
    for side in ("chosen", "rejected"):
        full = support_data.render_chat(tokenizer, pair.complaint, getattr(pair, side))
        if not full.startswith(prompt):
            raise ValueError("the chat template does not render the prompt as a prefix of the chat")
        out[f"{side}_ids"] = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    return out


def collate(features: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """A batch of 2B rows, the B chosen chats then the B rejected ones, right-padded, with the
    reply tokens marked in `completion_mask` (TRL's `DataCollatorForPreference` layout)."""
    rows = [f["prompt_ids"] + f[f"{side}_ids"] for side in ("chosen", "rejected") for f in features]
    marks = [
        [0] * len(f["prompt_ids"]) + [1] * len(f[f"{side}_ids"])
        for side in ("chosen", "rejected")
        for f in features
    ]
    width = max(map(len, rows))
    return {
        "input_ids": torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "completion_mask": torch.tensor([m + [0] * (width - len(m)) for m in marks]),
    }


# --- the loss -------------------------------------------------------------------------------
def next_token_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's log-probabilities of every next token at every position: (2B, T-1, V)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def reply_logps(logps: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """From `next_token_logps`: each row's sum over its reply tokens of their log-probability."""
    targets = batch["input_ids"][:, 1:]
    token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (2B, T-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(-1)


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(reply | prompt) of each row: the sum of its reply tokens' log-probabilities."""
    return reply_logps(next_token_logps(model, batch), batch)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = DEFAULT_BETA,
) -> torch.Tensor:
    """The DPO loss of each pair, from the four log-probabilities (the equation above)."""
    if beta <= 0:
        raise ValueError(f"beta={beta}: DPO's beta must be positive (0.1 is the usual start)")
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio))


@contextlib.contextmanager
def adapter_off(model):
    """The reference for a LoRA policy: the same model with its adapter switched off."""
    if not isinstance(model, PeftModel):
        raise ValueError("adapter_off needs a peft model: pass `reference=` a frozen copy instead")
    with model.disable_adapter():
        yield model


@torch.no_grad()
def reference_logps(model, batch: dict[str, torch.Tensor], reference=None) -> torch.Tensor:
    """Row log-probabilities under the reference: `reference` when given (a separate frozen
    model), else `model` with its LoRA adapter off (TRL's behaviour with no `ref_model`)."""
    if reference is not None:
        return sequence_logps(reference, batch)
    with adapter_off(model):
        return sequence_logps(model, batch)


def dpo_step(
    model, batch: dict[str, torch.Tensor], beta: float = DEFAULT_BETA, reference=None
) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean DPO loss of a batch (for backward) and what to watch: the implicit rewards of
    chosen and rejected, their margin, the share of pairs ranked right (reward accuracy), and
    the policy's log-probabilities of chosen and rejected replies."""
    ref_chosen, ref_rejected = reference_logps(model, batch, reference).chunk(2)
    chosen, rejected = sequence_logps(model, batch).chunk(2)
    loss = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta).mean()
    return loss, {"loss": loss.item()} | _watch(chosen, rejected, ref_chosen, ref_rejected, beta)


def _watch(chosen, rejected, ref_chosen, ref_rejected, beta: float) -> dict[str, float]:
    reward_chosen = beta * (chosen - ref_chosen).detach()
    reward_rejected = beta * (rejected - ref_rejected).detach()
    return {
        "reward_chosen": reward_chosen.mean().item(),
        "reward_rejected": reward_rejected.mean().item(),
        "margin": (reward_chosen - reward_rejected).mean().item(),
        "accuracy": (reward_chosen > reward_rejected).float().mean().item(),
        "logp_chosen": chosen.mean().item(),
        "logp_rejected": rejected.mean().item(),
    }


@torch.no_grad()
def kl_to_reference(model, batch: dict[str, torch.Tensor], reference=None) -> float:
    """Mean per-token KL(policy || reference) over the reply tokens of a batch, in nats: how far
    the policy's next-token distribution has moved from the reference's."""

    return _kl(*_policy_and_reference(model, batch, reference), batch)


def _policy_and_reference(model, batch, reference=None) -> tuple[torch.Tensor, torch.Tensor]:
    policy = next_token_logps(model, batch)
    if reference is not None:
        return policy, next_token_logps(reference, batch)
    with adapter_off(model):
        return policy, next_token_logps(model, batch)


def _kl(policy: torch.Tensor, ref: torch.Tensor, batch: dict[str, torch.Tensor]) -> float:
    per_token = (policy.exp() * (policy - ref)).sum(-1)  # (2B, T-1)
    mask = batch["completion_mask"][:, 1:]
    return ((per_token * mask).sum() / mask.sum()).item()


@torch.no_grad()
def evaluate(model, batch: dict[str, torch.Tensor], beta: float = DEFAULT_BETA,
             reference=None) -> dict[str, float]:  # fmt: skip
    """`dpo_step`'s statistics (no loss) and `kl_to_reference` on a batch, from one forward pass
    of the policy and one of the reference."""
    policy, ref = _policy_and_reference(model, batch, reference)
    chosen, rejected = reply_logps(policy, batch).chunk(2)
    ref_chosen, ref_rejected = reply_logps(ref, batch).chunk(2)
    kl = _kl(policy, ref, batch)
    return _watch(chosen, rejected, ref_chosen, ref_rejected, beta) | {"kl": kl}


# --- what the reference costs ----------------------------------------------------------------
def reference_bytes(base_model) -> dict[str, int]:
    """Bytes the reference holds beside a LoRA policy on `base_model`: a separate frozen copy
    (counted on a real copy: every weight, the tied embedding once) against the adapter
    switched off (no tensor of its own)."""
    twin = copy.deepcopy(base_model).requires_grad_(False)
    separate = sum(held_bytes(twin).values())
    del twin
    return {"separate copy": separate, "LoRA adapter off": 0}


# --- training, on the course's one loop (`tuning.fit`) ----------------------------------------
def sft_rows(tokenizer, pairs: Sequence[Pair]) -> list[dict[str, list[int]]]:
    """The chosen replies as supervised examples (prompt masked): what SFT on the pairs trains."""
    return [
        tuning.tokenize_example(tokenizer, support_data.Example(p.complaint, p.chosen, "", ""))
        for p in pairs
    ]


def _adamw(model, learning_rate: float) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameter: wrap it with a LoRA adapter first")
    return torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)


def train_sft(
    model,
    tokenizer,
    pairs: Sequence[Pair],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    on_step: Callable[[tuning.Step], dict | None] | None = None,
) -> tuning.Fit:
    """Supervised fine-tuning on the chosen replies (`tuning.fit`, the causal-LM loss)."""
    pad = tokenizer.pad_token_id
    return tuning.fit(
        model,
        sft_rows(tokenizer, pairs),
        _adamw(model, learning_rate),
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        collate=lambda rows: tuning.pad_batch(rows, pad),
        on_step=on_step,
    )


def train_dpo(
    model,
    tokenizer,
    pairs: Sequence[Pair],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    beta: float = DEFAULT_BETA,
    reference=None,
    on_step: Callable[[tuning.Step], dict | None] | None = None,
) -> tuning.Fit:
    """DPO on `pairs` (`batch_size` pairs a step) with `tuning.fit`: the loss is `dpo_step`, the
    reference `reference` or, by default, `model` with its LoRA adapter off. `Fit.measured` has
    `dpo_step`'s statistics for every step, with what `on_step` returns added."""
    pad = tokenizer.pad_token_id
    last: dict[str, float] = {}

    def loss(m, batch):
        value, stats = dpo_step(m, batch, beta, reference)
        last.update(stats)
        return value

    def hook(step: tuning.Step) -> dict:
        return dict(last) | ((on_step(step) or {}) if on_step else {})

    return tuning.fit(
        model,
        [encode_pair(tokenizer, p) for p in pairs],
        _adamw(model, learning_rate),
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        collate=lambda rows: collate(rows, pad),
        loss=loss,
        on_step=hook,
    )
