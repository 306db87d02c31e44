"""One place that makes runs repeatable."""

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that the same seed gives the same numbers."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block on `n` torch threads, then restore the count (a pytest worker left on two
    threads beside another worker runs three threads on two cores, and sums in another order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one_thread():
    """Run the block on one torch thread, then restore the count: a sum then adds up in one
    order, so a lesson's figures repeat to the last bit."""
    return num_threads(1)
