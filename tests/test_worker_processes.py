"""Jobs in fresh worker processes: every item answered, by the named function, in any order."""

import pytest

from peftlab.worker_processes import map_in_processes


def test_two_workers_answer_every_item_as_the_function_does():
    out = map_in_processes("math:pow", (2,), [1, 2, 3, 4, 5], workers=2)
    assert out == {1: 1.0, 2: 4.0, 3: 9.0, 4: 16.0, 5: 25.0}


def test_bad_targets_and_worker_counts_are_refused():
    with pytest.raises(ValueError, match="package.module:function"):
        map_in_processes("peftlab.tuning", (), [1.0], workers=1)
    with pytest.raises(AttributeError):
        map_in_processes("peftlab.tuning:no_such_function", (), [1.0], workers=1)
    with pytest.raises(ValueError, match="workers=0"):
        map_in_processes("peftlab.tuning:finite_or_inf", (), [1.0], workers=0)
