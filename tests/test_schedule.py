"""peftlab.schedule: the warm-up + cosine learning-rate factor both training loops use."""

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from peftlab.schedule import warmup_cosine


def test_schedule_equals_transformers_cosine_with_warmup():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=5, num_training_steps=50
    )
    factors = [reference.lr_lambdas[0](step) for step in range(50)]
    assert [warmup_cosine(step, 50, 5) for step in range(50)] == pytest.approx(factors)
    assert warmup_cosine(0, 50, 5) == 0 and warmup_cosine(5, 50, 5) == 1


def test_base_model_schedule_warms_up_from_the_first_step_and_ends_at_a_tenth():
    factors = [warmup_cosine(s, 100, 5, floor=0.1, warmup_from_zero=False) for s in range(101)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[5] == pytest.approx(1.0) and factors[100] == pytest.approx(0.1)
    assert min(factors) == pytest.approx(0.1)
    assert factors[5:] == sorted(factors[5:], reverse=True)
