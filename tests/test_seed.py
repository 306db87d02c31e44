"""`peftlab.seed`: the same seed gives the same numbers; `one_thread` restores the thread count."""

import pytest
import torch

from peftlab.seed import one_thread, seed_everything


def test_the_same_seed_gives_the_same_numbers():
    seed_everything(3)
    first = torch.randn(4)
    seed_everything(3)
    assert torch.equal(first, torch.randn(4))


def test_one_thread_runs_on_one_and_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError), one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
