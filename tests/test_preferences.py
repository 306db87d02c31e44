"""DPO from scratch: the pairs, the loss (equal to TRL's DPOTrainer), the free reference."""

import copy
import warnings

import pytest
import torch

from peftlab import base_model, finetune, memory, preferences, rubric, support_data
from peftlab.seed import seed_everything


@pytest.fixture(scope="module")
def pairs():
    return preferences.pairs(32)


def test_pairs_are_seeded_and_keep_the_held_out_complaints_out(pairs):
    assert preferences.pairs(32) == pairs
    assert preferences.pairs(32, seed=1) != pairs
    held = set(support_data.heldout_complaints(200))
    assert not {p.complaint for p in pairs} & held
    assert {p.complaint for p in pairs} <= {e.complaint for e in support_data.finetune_set(128)}


def test_chosen_passes_and_rejected_misses_for_its_stated_reason(pairs):
    assert {p.flaw for p in pairs} == set(preferences.FLAWS)
    for p in pairs:
        assert preferences.is_good(p.chosen, p.complaint)
        marks = rubric.score_reply(p.rejected, p.complaint)
        missed = {
            "blunt": not marks["greeting"] and not marks["action"],
            "no apology": not marks["acknowledges"],
            "no action": not marks["action"],
            "another product": not rubric.faithful(p.rejected, p.complaint),
        }[p.flaw]
        assert missed, (p.flaw, p.rejected)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="at least one pair"):
        preferences.pairs(0)
    with pytest.raises(ValueError, match="flaw="):
        preferences.rejected_reply("My order is late.", "rude", None)
    with pytest.raises(ValueError, match="beta"):
        preferences.dpo_loss(*torch.zeros(4, 1), beta=0.0)


def test_loss_is_log2_at_the_reference_and_falls_as_chosen_gains():
    zero = torch.zeros(3)
    assert preferences.dpo_loss(zero, zero, zero, zero).allclose(
        torch.full((3,), 0.6931), atol=1e-4
    )
    up = preferences.dpo_loss(zero + 1, zero, zero, zero)
    down = preferences.dpo_loss(zero, zero + 1, zero, zero)
    assert (up < 0.6931).all() and (down > 0.6932).all()
    # beta scales the log-ratio margin: a bigger beta reads the same margin as surer
    assert preferences.dpo_loss(zero + 1, zero, zero, zero, beta=0.5)[0] < up[0]


def _perturbed(model, scale=0.05):
    generator = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a non-identity adapter: policy and reference differ
            p.data = torch.randn(p.shape, generator=generator) * scale
    return model


@pytest.mark.slow
def test_dpo_loss_equals_trl_dpo_trainer(pairs, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    seed_everything(0)
    model, tokenizer = base_model.load()
    rows = [
        {
            "prompt": support_data.chat_messages(p.complaint),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs[:8]
    ]
    lora = finetune.lora_config(4, 8, target_modules="all-linear")
    with warnings.catch_warnings():  # trl 1.16 still says `gradient_checkpointing`
        warnings.filterwarnings(
            "ignore", r".*gradient_checkpointing.* is deprecated", FutureWarning
        )
        args = DPOConfig(
            output_dir=str(tmp_path),
            beta=0.1,
            per_device_train_batch_size=8,
            max_steps=1,
            report_to=[],
            use_cpu=True,
            bf16=False,
            max_length=None,
            gradient_checkpointing=False,
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
    policy = _perturbed(trainer.model)  # the reference is this model with the adapter off
    theirs_rows = [trainer.train_dataset[i] for i in range(8)]
    ours_rows = [preferences.encode_pair(tokenizer, p) for p in pairs[:8]]
    for theirs, ours in zip(theirs_rows, ours_rows, strict=True):
        for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
            assert theirs[column] == ours[column]
    batch = preferences.collate(ours_rows, tokenizer.pad_token_id)
    theirs_batch = trainer.data_collator(theirs_rows)
    assert all(torch.equal(batch[k], theirs_batch[k]) for k in batch)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, theirs_batch).item()
        ours, stats = preferences.dpo_step(policy, batch, beta=0.1)
    assert abs(trl_loss - ours.item()) < 1e-6
    assert abs(trl_loss - 0.6931) > 1e-3  # policy and reference differ: not the trivial log 2
    logged = trainer._metrics["train"]
    assert stats["accuracy"] == pytest.approx(logged["rewards/accuracies"][-1])
    assert stats["margin"] == pytest.approx(logged["rewards/margins"][-1], abs=1e-5)


def test_adapter_off_is_the_base_model_as_reference(pairs):
    seed_everything(0)
    base, tokenizer = base_model.load()
    twin = copy.deepcopy(base)
    policy = _perturbed(finetune.build_peft_model(base, r=4, alpha=8, target_modules="all-linear"))
    batch = preferences.collate(
        [preferences.encode_pair(tokenizer, p) for p in pairs[:4]], tokenizer.pad_token_id
    )
    free = preferences.reference_logps(policy, batch)
    separate = preferences.reference_logps(policy, batch, reference=twin)
    assert torch.allclose(free, separate, atol=1e-5)
    assert not torch.allclose(preferences.sequence_logps(policy, batch), free, atol=1e-2)
    assert preferences.kl_to_reference(policy, batch) > 0
    with pytest.raises(ValueError, match="peft model"):
        preferences.reference_logps(twin, batch)
    # evaluate: dpo_step's statistics and the KL from one forward pass each of policy and
    # reference, the same figures, whichever reference
    with torch.no_grad():
        _, stats = preferences.dpo_step(policy, batch, beta=0.1)
    for reference in (None, twin):
        measured = preferences.evaluate(policy, batch, beta=0.1, reference=reference)
        assert measured["accuracy"] == stats["accuracy"]
        for key in ("margin", "reward_chosen", "reward_rejected", "logp_chosen", "logp_rejected"):
            assert measured[key] == pytest.approx(stats[key], abs=1e-4), key
        kl = preferences.kl_to_reference(policy, batch, reference)
        assert kl > 0 and measured["kl"] == pytest.approx(kl, abs=1e-6)


def test_free_reference_saves_what_the_estimate_says():
    model, _ = base_model.load()
    held = preferences.reference_bytes(model)
    kwargs = dict(method="lora", precision="fp32", target_modules="all-linear")
    separate = memory.estimate(model.config, reference="separate", **kwargs)
    free = memory.estimate(model.config, reference="adapter-off", **kwargs)
    assert (
        held["separate copy"]
        == separate.total - free.total
        == 4 * memory.count_params(model.config)
    )
    assert held["LoRA adapter off"] == 0
    assert free.total == memory.estimate(model.config, **kwargs).total
    # a 7B in 16 bits: the reference copy is another 2 bytes per parameter
    gap = (
        memory.estimate("llama-2-7b", method="lora", reference="separate").total
        - memory.estimate("llama-2-7b", method="lora", reference="adapter-off").total
    )
    assert gap == 2 * memory.count_params(memory.preset("llama-2-7b"))
    with pytest.raises(ValueError, match="no adapter to switch off"):
        memory.estimate("llama-2-7b", method="full", reference="adapter-off")
