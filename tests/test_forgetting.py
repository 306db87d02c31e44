"""peftlab.forgetting: what forgetting is measured on, the configs, one run, the rate summaries."""

import math

import pytest
import torch

from peftlab import base_model, forgetting, support_data, tuning
from peftlab.forgetting import ATTENTION, QV, Config, ForgettingRun, Point, SweepBudget, lora
from peftlab.peft_family import FamilyBudget

TINY = SweepBudget(steps=2, evals=(1, 2), seeds=(0, 1), n_forget=4, n_heldout=2, max_new_tokens=8)


def test_forgetting_is_measured_on_text_absent_from_the_fine_tune_set():
    texts = forgetting.forget_texts(200)
    assert len(set(texts)) == len(texts) == 200
    finetune = support_data.finetune_set(SweepBudget().n_train)
    pieces = {ex.complaint for ex in finetune} | {ex.reply for ex in finetune}
    assert not [p for p in pieces for t in texts if p in t]
    # no chat, no chat template: plain documents of the pretraining world, of every kind
    assert not any("Customer says" in t or "<|im_start|>" in t for t in texts)
    assert {forgetting.document_kind(t) for t in texts} == {"facts", "letter", "note"}


def test_forget_texts_are_the_documents_the_base_model_held_back():
    """base_model.build_embedded trains on all but the first fiftieth of its documents; the
    forget texts come from that fiftieth (`forgetting.BASE_HELDOUT_DOCS`), all held back."""
    corpus = support_data.base_corpus()
    held = corpus[: forgetting.BASE_HELDOUT_DOCS]
    assert forgetting.forget_texts(50) == [d.text for d in held if d.text is not None][:50]
    trained = {d.text for d in corpus[forgetting.BASE_HELDOUT_DOCS :] if d.text is not None}
    assert not set(forgetting.forget_texts(50)) & trained
    with pytest.raises(ValueError, match="held-out documents"):
        forgetting.forget_texts(10_000)


def test_configs_and_their_scale():
    assert forgetting.FULL.full and math.isnan(forgetting.FULL.scale)
    assert lora(8).name == "LoRA r8 all-linear" and lora(8).scale == 16 / 8
    assert lora(64, rslora=True).name == "rsLoRA r64 all-linear"
    assert lora(64, rslora=True).scale == 16 / 8 == lora(8).scale
    assert lora(1).scale == lora(1, rslora=True).scale  # at r=1 both rules are one
    assert lora(19, ATTENTION).name == "LoRA r19 q,k,v,o" and lora(8, QV).name == "LoRA r8 q,v"
    with pytest.raises(ValueError, match="positive rank"):
        Config("bad", r=0)
    with pytest.raises(ValueError, match="lora_alpha"):
        Config("bad", r=8, alpha=0)


def test_attention_only_rank_matches_all_linear_parameters():
    assert forgetting.matched_rank(8) == 19
    assert forgetting.lora_params(lora(19, ATTENTION)) == forgetting.lora_params(lora(8))
    assert forgetting.lora_params(lora(8)) == 116_736


def test_protocol_rejects_bad_settings():
    with pytest.raises(ValueError, match="evals"):
        SweepBudget(steps=16, evals=(8, 12))
    with pytest.raises(ValueError, match="evals"):
        SweepBudget(steps=16, evals=(16, 8))
    with pytest.raises(ValueError, match="seeds"):
        SweepBudget(seeds=(0, 0))
    with pytest.raises(ValueError, match="steps"):
        SweepBudget(steps=0, evals=(1,))
    with pytest.raises(ValueError, match="n_forget"):
        SweepBudget(n_forget=0)
    with pytest.raises(ValueError, match="learning rate"):
        forgetting.train_config(lora(8), 0.0, 0, TINY)
    with pytest.raises(ValueError, match="learning rates"):
        forgetting.sweep([lora(8)], [], TINY)


def _run(config: str, lr: float, seed: int, val: float) -> ForgettingRun:
    return ForgettingRun(
        config, lr, seed, 1, [Point(0, 2.0, 1.0), Point(1, val, 1.0)], [], 0.0, 0.0
    )


def test_best_rate_and_the_parabola_between_grid_points():
    lrs = [1e-3, 1e-2, 1e-1]
    # mean loss (log10 lr + 1.8)^2: the bottom at 10^-1.8, between the two lower grid points
    runs = [_run("m", lr, s, (math.log10(lr) + 1.8) ** 2 + 0.01 * s) for lr in lrs for s in (0, 1)]
    assert forgetting.best_lr(runs, "m") == 1e-2
    assert forgetting.vertex_lr(runs, "m") == pytest.approx(10**-1.8, rel=1e-6)
    edge = [_run("e", lr, 0, lr) for lr in lrs]  # lowest at the end of the grid: no parabola
    assert forgetting.vertex_lr(edge, "e") == 1e-3
    diverged = [_run("d", 1e-3, 0, 1.0), _run("d", 1e-2, 0, math.nan)]
    assert forgetting.best_lr(diverged, "d") == 1e-3
    with pytest.raises(ValueError, match="no runs"):
        forgetting.select(runs, "other")


@pytest.mark.slow
def test_a_run_measures_learning_and_forgetting_and_seeds_differ():
    runs = [forgetting.train_config(lora(8), 1e-2, seed, TINY) for seed in TINY.seeds]
    for run in runs:
        assert [p.step for p in run.points] == [0, *TINY.evals]
        assert run.trainable_params == 116_736 and len(run.losses) == TINY.steps
        assert 0.0 <= run.score <= 1.0 and len(run.replies) == TINY.n_heldout
        assert run.points[0] == runs[0].points[0]  # the base model, measured once
    assert runs[0].losses != runs[1].losses  # another adapter init and batch order
    assert runs[0].final.val_loss != runs[1].final.val_loss


@pytest.mark.slow
def test_update_norm_is_what_merging_adds():
    model, _ = base_model.load()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    wrapped = forgetting.apply_config(lora(4), model)
    for module in wrapped.modules():  # B starts at zero: give it something to add
        if hasattr(module, "lora_B") and "default" in module.lora_B:
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
    norm = forgetting.update_norm(lora(4), wrapped, {})
    merged = wrapped.merge_and_unload().state_dict()
    added = sum(float((merged[k] - before[k]).pow(2).sum()) for k in before if "proj" in k)
    assert norm == pytest.approx(math.sqrt(added), rel=1e-4)


@pytest.mark.slow
def test_overfit_keeps_the_best_epoch_and_stops_early():
    fit = forgetting.overfit(0, n_examples=4, epochs=6, lr=3e-2, patience=1, budget=TINY)
    assert fit.epochs == list(range(1, fit.stopped_epoch + 1))
    assert len(fit.train_loss) == len(fit.val_loss) == fit.stopped_epoch
    assert fit.best_val_loss == pytest.approx(min(fit.val_loss))
    assert fit.val_loss[fit.best_epoch - 1] == pytest.approx(fit.best_val_loss)
    assert fit.final_val_loss == pytest.approx(fit.best_val_loss, abs=1e-4)  # best one loaded
    assert fit.stopped_epoch == 6 or fit.stopped_epoch == fit.best_epoch + 1
    with pytest.raises(ValueError, match="n_examples"):
        forgetting.overfit(0, n_examples=0)
    with pytest.raises(ValueError, match="patience"):
        forgetting.overfit(0, patience=0)


def test_the_split_is_lesson_07_s_fine_tune_set_apart_from_the_held_out_complaints():
    budget = SweepBudget()
    assert budget.n_train == FamilyBudget().n_train  # the same fine-tune chats as lesson 07
    train, val = tuning.support_split(budget.n_train, budget.n_val)
    assert len(val) == budget.n_val and len(train) == budget.n_train - budget.n_val
    heldout = set(support_data.heldout_complaints(budget.n_heldout))
    assert not {ex.complaint for ex in train + val} & heldout
