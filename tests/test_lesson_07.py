"""What lesson 07 concludes from its results still holds (its prose: tests/test_lesson_prose.py).

Its results train every method of the PEFT family (on one thread, so the numbers repeat); they
are cached, so notebook 07 under nbval reuses this run.
"""

from collections import Counter

import pytest
from torch.overrides import TorchFunctionMode

from peftlab import base_model, peft_methods, tuning
from peftlab.lessons import lesson07_peft_methods as lesson
from peftlab.quiet import muted

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    return lesson.results()


@pytest.fixture(scope="module")
def methods(results):
    return lesson.by_method(results)


def test_every_method_is_trained_scored_or_listed_with_peft_error(results, methods):
    listed = set(methods) | {u.method for u in results["unsupported"]}
    assert listed == set(peft_methods.CORE)
    assert all(u.error for u in results["unsupported"])
    seeds = results["protocol"].seeds
    assert len(seeds) >= 3
    for r in methods.values():
        assert len(r.scores) == len(r.val_loss) == len(r.train_loss) == len(seeds)


def test_trainable_params_are_peft_s_count(methods):
    for r in methods.values():
        if r.method == "full fine-tuning":
            assert r.peft_trainable_params is None and r.trainable_params > 2_000_000
        else:
            assert r.trainable_params == r.peft_trainable_params, r.method


def test_learning_rate_was_chosen_on_validation_loss(results, methods):
    protocol = results["protocol"]
    for r in methods.values():
        method = peft_methods.METHODS[r.method]
        assert list(r.lr_val_losses) == protocol.lr_grid(method)
        assert r.lr_val_losses[r.lr] == min(r.lr_val_losses.values())
        assert r.val_loss[0] == r.lr_val_losses[r.lr]  # the first seed's run at that rate
    _, val = tuning.support_split(protocol.n_train, protocol.n_val)
    assert not {ex.complaint for ex in val} & set(results["heldout"])


def test_merged_models_answer_as_unmerged(methods):
    merging = [r for r in methods.values() if r.merges]
    assert len(merging) >= 10
    assert all(r.merge_identical for r in merging), [r.method for r in merging]
    assert not methods["prompt tuning"].merges and not methods["prefix tuning"].merges


def test_what_the_lesson_concludes(methods):
    lora, full = methods["LoRA"], methods["full fine-tuning"]
    # LoRA reaches the rubric's ceiling; prompt and prefix tuning and IA3, at this scale, do not:
    # prompt tuning is far from it, prefix tuning short of it
    assert lora.score >= 0.9
    assert methods["prompt tuning"].score < lora.score - 0.5
    assert methods["prefix tuning"].score < lora.score - 0.1
    assert methods["IA3"].score < lora.score - 0.3
    # prefix tuning, decoded with its prefix, gets further than prompt tuning: a higher score and
    # a validation loss between prompt tuning's and LoRA's
    prefix, prompt = methods["prefix tuning"], methods["prompt tuning"]
    assert prefix.score > prompt.score
    mean = lesson.statistics_mean
    assert mean(prompt.val_loss) > mean(prefix.val_loss) > mean(lora.val_loss)
    # VeRA, with under a tenth of LoRA's parameters, matches LoRA's score here (the paper's
    # claim reproduces on this rubric) at a higher validation loss; AdaLoRA falls short of the
    # ceiling, at a higher validation loss too; prefix tuning's score varies widely over seeds
    vera, adalora = methods["VeRA"], methods["AdaLoRA"]
    assert vera.trainable_params < lora.trainable_params / 10
    assert vera.score >= lora.score - 0.05 and mean(vera.val_loss) > mean(lora.val_loss)
    assert adalora.score < lora.score - 0.1 and adalora.val_loss[0] > lora.val_loss[0]
    assert prefix.score_spread > 0.1
    # DoRA is level with LoRA (no room above it); its extra work per step is counted, not timed,
    # in test_dora_recomputes_the_weight_norm_in_every_forward
    assert abs(methods["DoRA"].score - lora.score) <= 0.05
    # ... and its extra memory is activations (what it saves per adapted layer), not weights
    dora = methods["DoRA"]
    assert dora.activation_bytes > 1.5 * lora.activation_bytes
    assert abs(dora.held_bytes - lora.held_bytes) < 0.05 * lora.held_bytes
    assert all(r.activation_bytes > r.held_bytes for r in methods.values())
    # at the higher rate of the grid rsLoRA (a scale sqrt(r) times LoRA's) and PiSSA blow up
    # (PiSSA's validation loss rises about six-fold), where LoRA's rises by about 60%
    assert max(methods["rsLoRA"].lr_val_losses.values()) > lesson.DIVERGED
    rise = {name: max(m.lr_val_losses.values()) / min(m.lr_val_losses.values())
            for name, m in methods.items()}  # fmt: skip
    assert rise["PiSSA"] > 2 * rise["LoRA"]
    assert max(methods["PiSSA"].lr_val_losses.values()) > lesson.DIVERGED
    assert max(lora.lr_val_losses.values()) < lesson.DIVERGED
    # full fine-tuning: every weight trained, gradients and optimizer states for all of them
    assert full.memory_bytes > 1.5 * lora.memory_bytes
    assert full.disk_bytes > 10 * lora.disk_bytes
    assert methods["prompt tuning"].disk_bytes < methods["IA3"].disk_bytes < lora.disk_bytes
    assert min(r.trainable_params for r in methods.values()) == (
        methods["prompt tuning"].trainable_params
    )


class _Calls(TorchFunctionMode):
    """Counts the torch functions called, by name (a deterministic measure of work per step)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls[getattr(func, "__name__", repr(func))] += 1
        return func(*args, **(kwargs or {}))


def _one_training_step(name: str) -> tuple[Counter, int]:
    """Torch calls in one forward and backward of `name` on a lesson batch, and the number of
    layers it adapts."""
    from peft.tuners.lora import LoraLayer

    with muted():
        model, tokenizer = base_model.load()
    budget = lesson.LESSON_PROTOCOL
    wrapped = peft_methods.apply_method(peft_methods.METHODS[name], model, budget.steps)
    train, _ = tuning.support_split(budget.n_train, budget.n_val)
    rows = [tuning.tokenize_example(tokenizer, ex) for ex in train[:8]]
    wrapped.train()
    with _Calls() as counter:
        wrapped(**tuning.pad_batch(rows, tokenizer.pad_token_id)).loss.backward()
    return counter.calls, sum(isinstance(m, LoraLayer) for m in wrapped.modules())


def test_dora_recomputes_the_weight_norm_in_every_forward():
    """The lesson's reason a DoRA step costs more than LoRA's, checked without a clock: every
    training forward rebuilds BA and takes the row norms of W + BA in each adapted layer."""
    lora, lora_layers = _one_training_step("LoRA")
    dora, dora_layers = _one_training_step("DoRA")
    assert dora_layers == lora_layers > 0
    assert dora["linalg_norm"] == dora_layers and lora["linalg_norm"] == 0
    assert dora["eye"] == dora_layers  # BA built as B(A(I)), once per layer per forward
    assert sum(dora.values()) > 1.5 * sum(lora.values())


def test_toy_cost_ratios_are_not_the_7b_ones(methods):
    """Full fine-tuning's memory over LoRA's, measured on the toy model (activations dominate),
    is far below what lesson 01's calculator gives at 7B (weights and optimizer states dominate)."""
    toy = methods["full fine-tuning"].memory_bytes / methods["LoRA"].memory_bytes
    assert toy > 1
    assert lesson.seven_b_memory_ratio(False) > 2 * toy
    assert lesson.seven_b_memory_ratio(True) > lesson.seven_b_memory_ratio(False)
