"""What lesson 08 concludes from its results still holds (its prose: tests/test_lesson_prose.py).

Its results train every configuration over three seeds (on one thread, so the numbers repeat);
they are cached, so notebook 08 under nbval reuses this run.
"""

import pytest

from peftlab import forgetting, support_data
from peftlab.lessons import lesson08_learning_forgetting as lesson

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    return lesson.results()


def _runs(results, config, lr=None):
    return forgetting.select(results["runs"], config.name, lr)


def _mean(runs, value):
    return forgetting.Stat.of(value(r) for r in runs).mean


def test_every_result_has_three_seeds_that_differ_and_a_spread(results):
    seeds = results["protocol"].seeds
    assert len(seeds) >= 3
    groups = {(r.config, r.lr) for r in results["runs"]}
    for config, lr in groups:
        runs = [r for r in results["runs"] if (r.config, r.lr) == (config, lr)]
        assert sorted(r.seed for r in runs) == sorted(seeds), (config, lr)
        finals = {r.final.val_loss for r in runs}
        assert len(finals) == len(seeds), (config, lr)  # each seed its own run
        assert forgetting.Stat.of(r.final.val_loss for r in runs).spread > 0
    assert len({tuple(o.val_loss) for o in results["overfit"]}) == len(seeds)


def test_forgetting_is_measured_on_text_the_fine_tune_does_not_contain(results):
    protocol = results["protocol"]
    texts = forgetting.forget_texts(protocol.n_forget)
    finetune = support_data.finetune_set(protocol.n_train)
    pieces = {ex.complaint for ex in finetune} | {ex.reply for ex in finetune}
    assert not [p for p in pieces for t in texts if p in t]
    assert results["base"].forget_loss == results["runs"][0].points[0].forget_loss


def test_each_best_rate_is_inside_its_grid(results):
    for config, lrs in (
        (lesson.FULL, results["full_lrs"]),
        (lesson.REFERENCE, results["lora_lrs"]),
    ):
        best = lesson.best(results, config)
        assert min(lrs) < best < max(lrs), config.name


def test_lora_wants_a_higher_rate_than_full_fine_tuning(results):
    grid, vertex = lesson.lr_ratio(results)
    assert grid >= 3 and vertex > 2  # the ratio itself is the lesson's computed region


def test_lora_does_not_learn_less_and_forget_less_in_these_runs(results):
    """The paper's title does not reproduce in the lesson's short runs: at their best rates
    LoRA r8 learns as much as full fine-tuning and forgets as much (lesson, section 3)."""
    full, ref = lesson.at_best(results, lesson.FULL), lesson.at_best(results, lesson.REFERENCE)
    assert abs(_mean(ref, lesson.val) - _mean(full, lesson.val)) < 0.03  # learns as much
    assert abs(_mean(full, lesson.forgot) - _mean(ref, lesson.forgot)) < 0.05  # forgets as much
    assert all(r.forgetting > 0 for r in full + ref)  # both forget something
    for r in lesson.RANKS:  # no rank forgets far less than full fine-tuning
        runs = lesson.at_best(results, forgetting.lora(r))
        assert _mean(runs, lesson.forgot) > 0.6 * _mean(full, lesson.forgot), r


def test_below_its_best_rate_full_fine_tuning_barely_moves(results):
    full = lesson.at_best(results, lesson.FULL)
    lower = lesson.lower_rate(results, lesson.FULL, results["full_lrs"])
    assert lower < lesson.best(results, lesson.FULL)
    slow = _runs(results, lesson.FULL, lower)
    assert _mean(slow, lesson.forgot) < 0.2 * _mean(full, lesson.forgot)
    assert _mean(slow, lesson.val) > _mean(full, lesson.val) + 0.2


def test_the_layers_matter_more_than_the_rank(results):
    ref = lesson.at_best(results, lesson.REFERENCE)
    qv = lesson.at_best(results, lesson.CURVES[-1])
    assert lesson.CURVES[-1].targets == tuple(forgetting.QV)
    assert _mean(qv, lesson.val) > _mean(ref, lesson.val) + 0.1  # q,v only: learns far less
    # ... and forgets about as much (within one spread)
    assert abs(_mean(qv, lesson.forgot) - _mean(ref, lesson.forgot)) < 0.05
    ranks = [_mean(lesson.at_best(results, forgetting.lora(r)), lesson.val) for r in lesson.RANKS]
    assert max(ranks) - min(ranks) < 0.1  # ranks 1 to 64 learn alike at one rate


def test_the_scale_rule_decides_how_the_update_grows_with_rank(results):
    rows = lesson.rank_rule_rows(results)
    plain = [row[4].mean for row in rows if row[1] == "alpha/r"]
    stable = [row[4].mean for row in rows if row[1] == "alpha/sqrt(r)"]
    assert plain[0] > plain[1] > plain[2]  # alpha/r: the update shrinks as r grows
    assert stable[2] > plain[2] * 2 and stable[1] > plain[1]  # rsLoRA: it does not
    forgot = {(row[0], row[1]): row[5].mean for row in rows}
    learned = {(row[0], row[1]): row[3].mean for row in rows}
    # at LoRA r8's rate, rsLoRA's bigger step at rank 64 overshoots: learns less, forgets more
    assert forgot[(64, "alpha/sqrt(r)")] > 2 * forgot[(64, "alpha/r")]
    assert forgot[(8, "alpha/sqrt(r)")] > forgot[(8, "alpha/r")] + 0.05
    assert learned[(64, "alpha/sqrt(r)")] > learned[(64, "alpha/r")] + 0.05


def test_attention_only_learns_less_at_the_same_parameter_count(results):
    matched, ref = results["matched"], lesson.REFERENCE
    att, full = lesson.at_best(results, matched), lesson.at_best(results, ref)
    assert att[0].trainable_params == full[0].trainable_params
    assert _mean(att, lesson.val) > _mean(full, lesson.val) + 0.05


def test_validation_turns_up_and_the_trainer_keeps_the_best_epoch(results):
    patience = results["overfit_settings"]["patience"]
    for o in results["overfit"]:
        assert o.best_epoch < o.stopped_epoch  # validation rose after its best epoch
        assert o.stopped_epoch == o.best_epoch + patience  # early stopping ended the run
        assert o.train_loss[-1] < o.train_loss[o.best_epoch - 1]  # while training kept falling
        assert o.final_val_loss == pytest.approx(o.best_val_loss, abs=1e-4)


def test_one_account_of_rate_and_rank_in_the_measured_table(results):
    """Issue 31, item 2: at one rate (LoRA r8's best), alpha/r serves rank 64 as it serves
    rank 8, while alpha/sqrt(r) at rank 64 overshoots; and the first-step table explains it."""
    rows = lesson.rank_rule_rows(results)
    learned = {(r, rule): v.mean for r, rule, _, v, _, _ in rows}
    assert abs(learned[(64, "alpha/r")] - learned[(8, "alpha/r")]) < 0.03
    assert learned[(64, "alpha/sqrt(r)")] > learned[(64, "alpha/r")] + 0.05
    first = {(r, rule): rel for r, rule, _, rel in results["first_step"]}
    assert first[(64, "alpha/sqrt(r)")] > 5 * first[(64, "alpha/r")]
