"""Padding-free packing: a batch of examples as one row, each example still on its own.

Padding a batch to its longest example spends compute on pad tokens. transformers'
`DataCollatorWithFlattening` instead concatenates the examples into one row of shape
[1, total_tokens] with `position_ids` that restart at 0 at every example and a -100 label at
each example's first token (so no example is trained to predict the next one's start). With no
attention mask, transformers (`masking_utils.find_packed_sequence_indices`) reads the restarts in
`position_ids` and builds a block-diagonal causal mask for sdpa and eager attention (FlashAttention
uses the same boundaries as `cu_seq_lens`): examples in one row do not attend to each other, and
the loss is the loss of the padded batch, without the pad tokens.
"""

import time
from collections.abc import Sequence

import torch

from peftlab.tuning import IGNORE_INDEX, pad_batch


def flattening_collator():
    """transformers' padding-free collator (input_ids, labels and position_ids in one row), with
    `use_cache=False` added to every batch.

    The flag matters: transformers 5.24 looks for packed sequences in `position_ids` only when
    the forward pass has no KV cache, and a model whose config says `use_cache=True` (most do,
    for generation) builds one even in train mode. With a cache the row gets one plain causal
    mask, every example attends to the ones before it, and the loss is silently wrong
    (`tests/test_packing.py` shows both).
    """
    from transformers import DataCollatorWithFlattening

    flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)

    def collate(features):
        return {**flatten(features), "use_cache": False}

    return collate


def packed_batch(features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """The examples flattened into one row by `flattening_collator` (with `use_cache=False`)."""
    return flattening_collator()([dict(f) for f in features])


def batch_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own loss on a batch (mean over the trained tokens)."""
    return model(**batch).loss


def padded_and_packed_loss(
    model, features: Sequence[dict[str, list[int]]], pad_token_id: int
) -> tuple[float, float]:
    """The same examples' loss as a right-padded batch and as one packed row."""
    with torch.no_grad():
        padded = batch_loss(model, pad_batch(list(features), pad_token_id))
        packed = batch_loss(model, packed_batch(features))
    return float(padded), float(packed)


def tokens_per_second(
    model,
    features: Sequence[dict[str, list[int]]],
    pad_token_id: int,
    *,
    packing: bool,
    batch_size: int = 16,
    repeats: int = 3,
) -> dict[str, float]:
    """Training throughput (forward + backward) over `features`, padded or packed.

    Returns real (non-pad) tokens per second, the tokens the model computed on (pad included)
    and the seconds of the best of `repeats` passes over the data.
    """
    if batch_size <= 0 or repeats <= 0:
        raise ValueError("batch_size and repeats must be positive")
    batches = []
    for i in range(0, len(features), batch_size):
        chunk = list(features[i : i + batch_size])
        batches.append(packed_batch(chunk) if packing else pad_batch(chunk, pad_token_id))
    real = sum(len(f["input_ids"]) for f in features)
    computed = sum(int(b["input_ids"].numel()) for b in batches)  # pad included
    model.train()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            model.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
        best = min(best, time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return {"tokens_per_s": real / best, "computed_tokens": computed, "real_tokens": real,
            "seconds": best}  # fmt: skip
