"""Learning from a reward (GRPO): the rubric as the reward, the group as the baseline.

GRPO (Shao et al., 2024, DeepSeekMath) samples a group of G replies to each prompt, scores each
with a reward function, and uses the group's own mean as the baseline instead of a learned value
model (PPO's critic): reply i's advantage is

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + 1e-4)

and the loss pushes up the log-probability of every token of a reply in proportion to its
advantage (mean over the reply's tokens, then over the replies: the paper's form, TRL's
`loss_type="grpo"`; TRL 1.16 defaults to `"dapo"`, one mean over all the batch's tokens). With
one update per batch of samples (TRL's default) the PPO ratio is 1 and its clipping never acts;
with TRL's default `beta=0.0` there is no KL term and no reference model at all (the paper keeps
one, beta 0.04). The paper divides by std(r) alone; the 1e-4 is TRL's.

The reward here is the course's rubric (greeting, acknowledgement, action, timeline: 0 to 1) plus
the faithful check (1 when the reply names nothing the customer did not), as TRL sums a list of
reward functions. `HACK` is a reply that earns full reward and helps nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from peftlab import echo, rubric, support_data, tuning

EPSILON = 1e-4  # TRL's: a group whose rewards are all equal gets advantage 0, not a division by 0
RewardFn = Callable[[str, str], float]


# --- the reward -------------------------------------------------------------------------------
def rubric_reward(reply: str, complaint: str) -> float:
    """The rubric's mean: 0.25 per check passed (greeting, acknowledges, action, timeline)."""
    return float(rubric.score_reply(reply, complaint)["score"])


def faithful_reward(reply: str, complaint: str) -> float:
    """1.0 when the reply names no product, service or problem the customer did not."""
    return float(rubric.faithful(reply, complaint))


REWARDS: tuple[RewardFn, ...] = (rubric_reward, faithful_reward)
MAX_REWARD = float(len(REWARDS))


def reward(reply: str, complaint: str, functions: Sequence[RewardFn] = REWARDS) -> float:
    """The sum of the reward functions (TRL's GRPOTrainer sums its `reward_funcs` the same way,
    each with weight 1 by default): at most 2.0, a reply that passes the rubric and is faithful."""
    return sum(f(reply, complaint) for f in functions)


# A reply that games the rubric: it greets, apologises in the customer's own words, "acts"
# (the action check looks for "we will ... refund", and a refusal has those words), and names a
# time. Full reward, faithful, and it refuses the customer.
HACK = "Hello! I'm sorry that {echo}. We will not refund or replace anything, today or ever."


def hack_reply(complaint: str) -> str:
    """The reward hack for a complaint (`HACK` with the complaint's first clause turned round)."""
    echoed, _ = echo.echo_message(complaint)
    return HACK.format(echo=echoed)


# --- the group baseline ---------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """Each reward minus its group's mean, over the group's standard deviation (Bessel-corrected,
    plus `EPSILON`) when `scale` (TRL's `scale_rewards="group"`; False is Dr. GRPO's "none").
    Rewards come group by group: the first `group_size` answer prompt 1, and so on."""
    if group_size < 2:
        raise ValueError(f"group_size={group_size}: a group baseline needs at least 2 samples")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + EPSILON)
    return centred.flatten()


# --- sampling and the loss ------------------------------------------------------------------
@dataclass
class Rollout:
    """G sampled replies per prompt, as token ids: prompt (left-padded) then completion (cut
    after its end-of-turn token, the rest masked), the texts and their rewards."""

    prompt_ids: torch.Tensor  # (N, P)
    prompt_mask: torch.Tensor  # (N, P)
    completion_ids: torch.Tensor  # (N, C)
    completion_mask: torch.Tensor  # (N, C)
    complaints: list[str]
    replies: list[str]
    rewards: torch.Tensor  # (N,)


@torch.no_grad()
def rollout(
    model,
    tokenizer,
    complaints: Sequence[str],
    group_size: int,
    *,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
    functions: Sequence[RewardFn] = REWARDS,
) -> Rollout:
    """Sample `group_size` replies to each complaint (seeded) and score them."""
    repeated = [c for c in complaints for _ in range(group_size)]
    prompts = [support_data.render_chat(tokenizer, c) for c in repeated]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    out = model.generate(
        **batch,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.train(was_training)
    completion = out[:, batch["input_ids"].shape[1] :]
    ended = completion == tokenizer.eos_token_id
    # keep every token up to and including the first end-of-turn
    after_end = (ended.cumsum(dim=1) - ended.long()) > 0
    mask = (~after_end).long()
    completion = completion.masked_fill(after_end, tokenizer.pad_token_id)
    replies = [t.strip() for t in tokenizer.batch_decode(completion, skip_special_tokens=True)]
    rewards = torch.tensor(
        [reward(r, c, functions) for r, c in zip(replies, repeated, strict=True)]
    )
    return Rollout(
        batch["input_ids"], batch["attention_mask"], completion, mask, repeated, replies, rewards
    )


def token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """log-probability of each completion token given everything before it: (N, C)."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logits = logits[:, prompt_ids.shape[1] - 1 : -1].float()  # the positions that predict replies
    return torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def grpo_loss(
    logps: torch.Tensor, advantages: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """GRPO's loss on freshly sampled replies (one update per sample, no KL): -A_i times the
    probability ratio pi/pi_old of each token (1 in value, d log pi in gradient), averaged over
    each reply's tokens and then over the replies."""
    ratio = torch.exp(logps - logps.detach())  # (N, C)
    per_token = -ratio * advantages.unsqueeze(1)
    mask = completion_mask.float()
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def train(
    model,
    tokenizer,
    complaints: Sequence[str],
    *,
    steps: int,
    prompts_per_step: int,
    group_size: int,
    learning_rate: float,
    seed: int,
    max_new_tokens: int = 48,
    on_step: Callable[[tuning.Step], dict | None] | None = None,
) -> tuning.Fit:
    """GRPO on `tuning.fit`: each step draws `prompts_per_step` complaints, samples `group_size`
    replies to each from the current policy (seeded by step), scores them, takes advantages
    within each group and steps on `grpo_loss`. `Fit.measured` has, per step, the samples' mean
    reward (before the step) and the share of groups whose rewards all tie (no signal)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameter: wrap it with a LoRA adapter first")
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    last: dict[str, float] = {}

    def loss(m, batch: list[str]) -> torch.Tensor:
        r = rollout(
            m,
            tokenizer,
            batch,
            group_size,
            max_new_tokens=max_new_tokens,
            seed=seed * 100_003 + len(done),
        )
        done.append(1)
        logps = token_logps(m, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
        tied = (r.rewards.view(-1, group_size).std(dim=1) == 0).float().mean()
        last.update(reward=r.rewards.mean().item(), tied_groups=tied.item())
        return grpo_loss(logps, group_advantages(r.rewards, group_size), r.completion_mask)

    def hook(step: tuning.Step) -> dict:
        return dict(last) | ((on_step(step) or {}) if on_step else {})

    done: list[int] = []
    return tuning.fit(
        model,
        list(complaints),
        optimizer,
        steps=steps,
        batch_size=prompts_per_step,
        seed=seed,
        collate=list,
        loss=loss,
        on_step=hook,
    )
