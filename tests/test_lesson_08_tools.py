"""Lesson 08's first-step table, which needs no training run: why the best learning rate does
not move with the rank under alpha/r and must come down under rsLoRA's alpha/sqrt(r)."""

import math

import pytest

from peftlab.lessons import lesson08_learning_forgetting as lesson


@pytest.fixture(scope="module")
def rows():
    return lesson.first_step_rows()


def test_one_adamw_step_moves_the_model_alike_at_every_rank_under_alpha_over_r(rows):
    plain = {r: rel for r, rule, _, rel in rows if rule == "alpha/r"}
    assert set(plain) == set(lesson.RANKS) and plain[1] == 1.0
    assert all(0.85 < rel < 1.15 for rel in plain.values()), plain


def test_under_rslora_the_first_step_grows_as_the_square_root_of_the_rank(rows):
    stable = {r: rel for r, rule, _, rel in rows if rule == "alpha/sqrt(r)"}
    for r, rel in stable.items():
        assert rel == pytest.approx(math.sqrt(r), rel=0.15), (r, rel)
    assert stable[64] > 5 * max(rel for _, rule, _, rel in rows if rule == "alpha/r")


def test_scales_are_peft_s(rows):
    from peft import LoraConfig

    for r, rule, scale, _ in rows:
        want = 16 / math.sqrt(r) if rule == "alpha/sqrt(r)" else 16 / r
        assert scale == pytest.approx(want)
    assert "lora_alpha/math.sqrt(r)" in LoraConfig.__doc__  # peft documents its rsLoRA scale
    table = lesson.first_step_table(rows)
    assert table.count("\n") == 1 + len(rows)
