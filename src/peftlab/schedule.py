"""The learning-rate schedule: a linear warm-up, then a cosine decay."""

import math


def warmup_cosine(
    step: int, steps: int, warmup: int, *, floor: float = 0.0, warmup_from_zero: bool = True
) -> float:
    """Learning-rate factor at `step` (counted from 0): a linear warm-up over `warmup` steps,
    then a cosine from 1 down to `floor` at `steps`.

    The defaults are transformers' "cosine" schedule: the warm-up starts at 0 and the cosine
    ends at 0. With `warmup_from_zero=False` the warm-up starts at 1/warmup, so no step is spent
    at rate 0; the embedded base model was trained that way, down to `floor=0.1`.
    """
    if step < warmup:
        return (step + (0 if warmup_from_zero else 1)) / max(1, warmup)
    progress = (step - warmup) / max(1, steps - warmup)
    return max(0.0, floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
