"""What lesson 12 concludes from its runs still holds (its prose: tests/test_lesson_prose.py)."""

import statistics

import pytest

from peftlab import grpo, memory, rubric
from peftlab.lessons import lesson12_preferences as lesson

pytestmark = pytest.mark.slow  # results() trains 3 seeds x 3 runs and GRPO at 3 ranks (cached)


@pytest.fixture(scope="module")
def results():
    return lesson.results()


def _mean(results, run, measure):
    return statistics.mean(results["dpo"][s][run]["end"][measure] for s in lesson.SEEDS)


def _heldout(results, run, measure):
    return statistics.mean(results["dpo"][s][run]["end"][f"logp_{measure}"] for s in lesson.SEEDS)


def test_sft_alone_learns_the_style_and_dpo_on_top_keeps_it(results):
    sft, sft_dpo = _mean(results, "SFT only", "rubric"), _mean(results, "SFT then DPO", "rubric")
    base = results["dpo"][lesson.SEEDS[0]]["base"]["rubric"]
    assert sft >= base + 0.5  # a sound SFT: its greedy replies have taken the chosen style
    assert abs(sft_dpo - sft) <= 0.15  # DPO on top: no change the rubric can see
    # DPO from the base hardly changes what the base model writes greedily
    assert _mean(results, "DPO only", "rubric") <= base + 0.1
    assert lesson.collapses(results) == []


def test_dpo_after_sft_pushes_the_rejected_down_and_keeps_the_chosen(results):
    chosen = _heldout(results, "SFT then DPO", "chosen") - _heldout(results, "SFT only", "chosen")
    rejected = _heldout(results, "SFT then DPO", "rejected") - _heldout(
        results, "SFT only", "rejected"
    )
    assert rejected < -10 and abs(chosen) < 3, (chosen, rejected)


def test_dpo_alone_raises_the_chosen_but_not_near_where_sft_puts_it(results):
    base = results["dpo"][lesson.SEEDS[0]]["base"]["logp_chosen"]
    dpo_only = _heldout(results, "DPO only", "chosen")
    assert base + 5 < dpo_only < _heldout(results, "SFT only", "chosen") - 10


def test_dpo_ranks_held_out_pairs_right_and_moves_less_than_sft(results):
    for run in ("SFT then DPO", "DPO only"):
        assert _mean(results, run, "accuracy") >= 0.75
        assert _mean(results, run, "margin") > 0
    # KL per reply token to each run's reference: DPO after SFT stays near the SFT model, far
    # nearer than SFT moved from the base
    assert 0 < _mean(results, "SFT then DPO", "kl") < _mean(results, "SFT only", "kl") / 2


def test_along_dpo_on_held_out_pairs_the_rejected_falls_much_faster(results):
    for seed in lesson.SEEDS:
        for run in ("SFT then DPO", "DPO only"):
            heldout = results["dpo"][seed][run]["heldout"]  # the same pairs at every point
            assert heldout[0]["step"] == 0 and heldout[-1]["step"] == lesson.BUDGET.dpo_steps
            chosen = heldout[-1]["logp_chosen"] - heldout[0]["logp_chosen"]
            rejected = heldout[-1]["logp_rejected"] - heldout[0]["logp_rejected"]
            assert rejected < chosen - 5, (seed, run)


def test_the_free_reference_saves_a_whole_copy_as_estimated(results):
    m = results["memory"]
    assert m["held"]["separate copy"] == m["toy"]["separate"] - m["toy"]["adapter-off"]
    assert m["held"]["separate copy"] == 4 * m["params"]  # fp32
    assert m["held"]["LoRA adapter off"] == 0
    gap = m["7b"]["separate"] - m["7b"]["adapter-off"]
    assert gap == 2 * memory.count_params(memory.preset("llama-2-7b"))  # a 16-bit copy


def test_the_hack_earns_full_reward(results):
    assert results["hack"]["reward"] == grpo.MAX_REWARD
    assert "will not" in results["hack"]["reply"]


def test_grpo_raises_the_reward_at_every_rank_and_the_ranks_end_close(results):
    after = {r: results["grpo"][r]["after"]["reward"] for r in lesson.RANKS}
    last = {r: statistics.mean(results["grpo"][r]["rewards"][-4:]) for r in lesson.RANKS}
    for r in lesson.RANKS:
        g = results["grpo"][r]
        assert after[r] > g["before"]["reward"] + 0.2, r
        assert last[r] > statistics.mean(g["rewards"][:4]), r
    # "LoRA Without Regret": rank 1 suffices for RL. At toy scale, one seed, the ranks cannot be
    # told apart: held-out reward and the training samples' reward end within 0.3 of each other
    assert max(after.values()) - min(after.values()) < 0.3
    assert max(last.values()) - min(last.values()) < 0.3
    trainable = [results["grpo"][r]["trainable"] for r in lesson.RANKS]
    assert trainable[0] * 8 == trainable[1] and trainable[0] * 64 == trainable[2]


def test_the_trained_example_earns_reward_for_checks_not_for_help(results):
    marks = results["grpo example marks"]
    assert marks["reward"] == marks["score"] + marks["faithful"]
    # paid for the checks it passes, though it fails at least one of the rubric's four
    assert marks["reward"] > 1 and not all(marks[c] for c in rubric.CRITERIA)


def test_a_worker_process_computes_what_this_process_computes():
    tiny = lesson.Budget(n_heldout=2, n_eval_pairs=2, sft_steps=2, grpo_sft_steps=2, grpo_steps=2,
                         max_new_tokens=8)  # fmt: skip
    from peftlab.worker_processes import map_in_processes

    item = ("grpo", 1)
    there = map_in_processes("peftlab.lessons.lesson12_preferences:job", (tiny,), [item], 1)
    assert there[item] == lesson.job(item, tiny)
