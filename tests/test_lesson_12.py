"""What lesson 12 concludes from its runs still holds (its prose: tests/test_lesson_prose.py)."""

import statistics

import pytest

from peftlab import grpo, memory
from peftlab.lessons import lesson12_preferences as lesson

pytestmark = pytest.mark.slow  # results() trains 3 seeds x 3 runs and GRPO at 3 ranks (cached)


@pytest.fixture(scope="module")
def results():
    return lesson.results()


def _mean(results, run, measure):
    return statistics.mean(results["dpo"][s][run]["end"][measure] for s in lesson.SEEDS)


def test_dpo_after_sft_beats_sft_alone_and_dpo_alone_on_the_rubric(results):
    sft, sft_dpo = _mean(results, "SFT only", "rubric"), _mean(results, "SFT then DPO", "rubric")
    dpo_only = _mean(results, "DPO only", "rubric")
    assert sft_dpo > sft + 0.2
    assert sft_dpo > dpo_only + 0.2
    # DPO from the base hardly changes what the base model writes: the style is out of reach
    assert dpo_only <= results["dpo"][lesson.SEEDS[0]]["base"]["rubric"] + 0.1


def test_dpo_ranks_held_out_pairs_right_and_moves_less_than_sft(results):
    for run in ("SFT then DPO", "DPO only"):
        assert _mean(results, run, "accuracy") >= 0.75
        assert _mean(results, run, "margin") > 0
    # KL per reply token to each run's reference: DPO after SFT stays near the SFT model, far
    # nearer than SFT moved from the base
    assert 0 < _mean(results, "SFT then DPO", "kl") < _mean(results, "SFT only", "kl") / 2


def test_along_dpo_the_rejected_reply_falls_much_faster_than_the_chosen(results):
    for seed in lesson.SEEDS:
        for run in ("SFT then DPO", "DPO only"):
            train = results["dpo"][seed][run]["train"]
            chosen = train[-1]["logp_chosen"] - train[0]["logp_chosen"]
            rejected = train[-1]["logp_rejected"] - train[0]["logp_rejected"]
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


def test_grpo_raises_the_reward_at_every_rank_and_rank_1_keeps_up(results):
    after = {r: results["grpo"][r]["after"]["reward"] for r in lesson.RANKS}
    for r in lesson.RANKS:
        g = results["grpo"][r]
        assert after[r] > g["before"]["reward"] + 0.2, r
        assert statistics.mean(g["rewards"][-4:]) > statistics.mean(g["rewards"][:4]), r
    # "LoRA Without Regret": rank 1 suffices for RL. At toy scale, one seed: within 0.2 of the best
    assert after[1] >= max(after.values()) - 0.2
    trainable = [results["grpo"][r]["trainable"] for r in lesson.RANKS]
    assert trainable[0] * 8 == trainable[1] and trainable[0] * 64 == trainable[2]


def test_a_worker_process_computes_what_this_process_computes():
    tiny = lesson.Budget(n_heldout=2, n_eval_pairs=2, sft_steps=2, grpo_steps=2, max_new_tokens=8)
    from peftlab.worker_processes import map_in_processes

    item = ("grpo", 1)
    there = map_in_processes("peftlab.lessons.lesson12_preferences:job", (tiny,), [item], 1)
    assert there[item] == lesson.job(item, tiny)
