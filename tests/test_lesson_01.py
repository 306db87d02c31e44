"""Lesson 01 beyond its prose (tests/test_lesson_prose.py): the figures it quotes from papers."""

import pytest

from peftlab.lessons import lesson01_peft_basics as lesson


def test_published_figures_still_hold():
    quotes = lesson.quotes(lesson.results())
    assert quotes["llama-2-7b parameters"] == "6,738,415,616"  # numbers.md
    assert quotes["lora r=8 q,v trainable"] == "4,194,304"  # numbers.md


def test_range_verdict_names_the_settings_inside_and_outside():
    assert lesson.range_verdict({"a": 5.0, "b": 6.0}, 4, 6) == "holds"
    assert lesson.range_verdict({"a": 3.0}, 4, 6) == "wrong; below it: a (3.0x)"
    mixed = lesson.range_verdict({"a": 5.0, "b": 9.0, "c": 1.0}, 4, 6)
    assert mixed == "holds only for a (5.0x); below it: c (1.0x); above it: b (9.0x)"
    assert lesson.range_verdict({"a": 100.0}, 8, None) == "holds"  # "8+": no upper bound


def test_a100s_needed_is_the_fewest_cards_that_hold_the_sharded_states():
    from peftlab import memory

    for model in lesson.LESSON_MODELS:
        for gib in lesson.A100_GIB:
            n = lesson.a100s_needed(model, gib)
            fits = memory.estimate(model, devices=n, sharding="zero3").total <= gib * 2**30
            assert fits, (model, gib, n)
            if n > 1:
                fewer = memory.estimate(model, devices=n - 1, sharding="zero3")
                assert fewer.total > gib * 2**30, (model, gib, n)
    with pytest.raises(ValueError, match="not enough"):
        lesson.a100s_needed("llama-2-70b", 40, most=2)


def test_claims_table_checks_every_claim_of_the_outline():
    rows = lesson.claims_rows()
    claims = [row[0] for row in rows]
    for words in ("4-6x", "1-2 A100s", "2-4 A100s", "8+ A100s", "5-10x", "0.1-1%"):
        assert any(words in claim for claim in claims), words
    for words in ("attention layers", "single consumer GPU", "lighter than LoRA"):
        assert any(words in claim for claim in claims), words
    for claim, computed, setting, verdict in rows:
        assert computed and setting, claim
        assert verdict.startswith(("holds", "wrong")), (claim, verdict)
    # the prefix row's break-even follows from the shapes: 2 * layers * hidden per virtual token
    # (a key and a value per layer) against r * (d_in + d_out) per adapted matrix
    prefix = next(row for row in rows if "prefix" in row[0])
    assert "tokens < 2.0 r (q_proj, v_proj)" in prefix[2]
