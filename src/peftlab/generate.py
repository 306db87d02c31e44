"""Replies to complaints: the prompts, fitting a complaint to the context, and one `generate`.

`generate(model, tokenizer, complaints)` answers with any model the course makes: a plain
transformers model, a peft model with LoRA (or any adapter that works through the layers), or a
prefix-tuned peft model. It chooses how to decode: transformers' `generate`, batched with left
padding, for every model but a prefix-tuned one, whose prefix that `generate` would drop
(`prefix_greedy` says why), so callers never choose the path themselves.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import torch

from peftlab import support_data

__all__ = [
    "MAX_NEW_TOKENS", "fit_complaint", "chat_prompts", "context_length", "generate",
    "is_prefix_tuned", "prefix_greedy",
]  # fmt: skip

MAX_NEW_TOKENS = 64


def fit_complaint(tokenizer, complaint: str, max_prompt_tokens: int) -> str:
    """The complaint, cut (with a warning) so that its prompt fits in `max_prompt_tokens`."""

    def prompt_len(text: str) -> int:
        prompt = support_data.render_chat(tokenizer, text)
        return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])

    if prompt_len(complaint) <= max_prompt_tokens:
        return complaint
    words = complaint.split()
    lo, hi = 0, len(words)
    while lo < hi:  # the longest prefix of words that fits
        mid = (lo + hi + 1) // 2
        if prompt_len(" ".join(words[:mid])) <= max_prompt_tokens:
            lo = mid
        else:
            hi = mid - 1
    short = " ".join(words[:lo])
    warnings.warn(
        f"complaint truncated to {lo} of {len(words)} words to fit the model's context "
        f"({max_prompt_tokens} prompt tokens): {short[:60]!r}...",
        stacklevel=2,
    )
    return short


def chat_prompts(tokenizer, complaints: Sequence[str], max_prompt_tokens: int) -> list[str]:
    """Each complaint as the model's generation prompt (`support_data.render_chat`), cut to fit
    in `max_prompt_tokens` (`fit_complaint`): the prompts `generate` answers."""
    return [
        support_data.render_chat(tokenizer, fit_complaint(tokenizer, c, max_prompt_tokens))
        for c in complaints
    ]


def context_length(model) -> int:
    """How many positions the model attends over (its config's `max_position_embeddings`)."""
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


def is_prefix_tuned(model) -> bool:
    """Whether `model` is a peft model whose active adapter is prefix tuning."""
    from peft import PeftType

    config = getattr(model, "active_peft_config", None)
    return config is not None and config.peft_type == PeftType.PREFIX_TUNING


@torch.no_grad()
def generate(
    model,
    tokenizer,
    complaints: Sequence[str],
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 32,
    **generation_kwargs,
) -> list[str]:
    """Replies to complaints, batched with left padding; greedy (deterministic) by default.

    A prefix-tuned peft model is decoded through its prefix (`prefix_greedy`), greedily; any
    other model through transformers' `generate`, to which `generation_kwargs` go (e.g.
    do_sample=True, temperature=0.7, top_p=0.9).
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be a positive number of tokens")
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size}: answer at least one complaint per batch")
    if is_prefix_tuned(model):
        if {k: v for k, v in generation_kwargs.items() if (k, v) != ("do_sample", False)}:
            raise ValueError(
                f"generation_kwargs={generation_kwargs}: a prefix-tuned model is decoded "
                "greedily through its prefix; leave out the sampling settings"
            )
        return prefix_greedy(model, tokenizer, complaints, max_new_tokens=max_new_tokens,
                             batch_size=batch_size)  # fmt: skip
    generation_kwargs = {"do_sample": False, **generation_kwargs}
    prompts = chat_prompts(tokenizer, complaints, context_length(model) - max_new_tokens)
    tokenizer.padding_side = "left"
    replies = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)  # fmt: skip
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **generation_kwargs,
        )
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        replies += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return replies


def _eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


@torch.no_grad()
def prefix_greedy(
    model, tokenizer, complaints: Sequence[str], *, max_new_tokens: int, batch_size: int = 32
) -> list[str]:
    """Greedy replies of a prefix-tuned peft model, decoded with its prefix (`generate` calls
    this for such a model).

    With peft 0.21 and transformers 5.24, transformers' `generate` passes its own (empty) cache
    and ignores the `past_key_values` that peft's `prepare_inputs_for_generation` puts the
    prefix in, so the replies it returns are the base model's. This loop does what peft's
    forward does in training: the prefix (`get_prompt`, a transformers Cache holding each
    layer's virtual keys and values) is the cache the base model starts from, the attention
    mask has ones for the virtual tokens, and real token i sits at position
    num_virtual_tokens + i. Prompts are built and left-padded as for any other model (position
    ids count only real tokens, as `generate`'s do); each step feeds one token with the
    returned cache; a row stops at an end-of-sequence token. A test checks it against a loop
    that calls peft's own forward.
    """
    if not is_prefix_tuned(model):
        raise ValueError("prefix_greedy needs a peft model whose active adapter is prefix "
                         "tuning: call generate, which decodes any model")  # fmt: skip
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be a positive number of tokens")
    virtual = model.active_peft_config.num_virtual_tokens
    lm = model.get_base_model()
    # transformers 5 renames the forward's past_key_values to cache (the old name warns)
    forward_args = inspect.signature(lm.forward).parameters
    cache_arg = "cache" if "cache" in forward_args else "past_key_values"
    prompts = chat_prompts(tokenizer, complaints, context_length(lm) - max_new_tokens - virtual)
    eos = torch.tensor(_eos_ids(lm, tokenizer), device=lm.device)
    tokenizer.padding_side = "left"
    replies: list[str] = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(lm.device)  # fmt: skip
        ids, mask = batch["input_ids"], batch["attention_mask"]
        rows = ids.shape[0]
        mask = torch.cat([mask.new_ones(rows, virtual), mask], dim=1)  # (B, p + T)
        positions = virtual + (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # (B, T)
        cache = model.get_prompt(rows)
        done = torch.zeros(rows, dtype=torch.bool, device=lm.device)
        new: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            out = lm(input_ids=ids, attention_mask=mask, position_ids=positions,
                     use_cache=True, **{cache_arg: cache})  # fmt: skip
            cache = getattr(out, cache_arg)
            token = out.logits[:, -1].argmax(-1)  # (B,)
            token = token.masked_fill(done, tokenizer.pad_token_id)  # finished rows pad
            new.append(token)
            done |= torch.isin(token, eos)
            if bool(done.all()):
                break
            ids = token[:, None]
            mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
            positions = positions[:, -1:] + 1
        decoded = tokenizer.batch_decode(torch.stack(new, dim=1), skip_special_tokens=True)
        replies += [t.strip() for t in decoded]
    return replies
