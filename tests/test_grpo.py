"""GRPO from scratch: the reward, its hack, the group baseline, and the loss equal to TRL's."""

import warnings

import pytest
import torch

from peftlab import base_model, finetune, grpo, support_data
from peftlab.seed import seed_everything


def test_reward_is_the_rubric_plus_the_faithful_check():
    complaint = "My order is late."
    good = "Hi! I'm sorry that your order is late. I will check this today."
    blunt = "Your order is late because of shipping delays."
    elsewhere = "Hi! I'm sorry that your kettle is late. I will check this today."
    assert grpo.reward(good, complaint) == grpo.MAX_REWARD == 2.0
    assert grpo.reward(blunt, complaint) == 1.0  # faithful, no rubric check passed
    assert grpo.reward(elsewhere, complaint) == 1.0  # full rubric, names a kettle: unfaithful
    assert grpo.reward("", complaint) == 1.0  # an empty reply names nothing: half the reward


def test_the_hack_earns_full_reward_and_refuses_every_customer():
    complaints = support_data.heldout_complaints(40)
    for complaint in complaints:
        hack = grpo.hack_reply(complaint)
        assert grpo.reward(hack, complaint) == grpo.MAX_REWARD
        assert "will not refund or replace" in hack


def test_group_advantages_centre_and_scale_each_group():
    rewards = torch.tensor([0.0, 1.0, 2.0, 1.0, 1.5, 1.5, 1.5, 1.5])
    adv = grpo.group_advantages(rewards, 4)
    first, second = adv[:4], adv[4:]
    assert first.sum().abs() < 1e-6 and first[2] > first[1] > first[0]
    assert (second == 0).all()  # a group that ties carries no signal
    assert first.std().item() == pytest.approx(1.0, abs=1e-3)
    assert torch.equal(
        grpo.group_advantages(rewards, 4, scale=False)[:4], torch.tensor([-1.0, 0, 1, 0])
    )
    with pytest.raises(ValueError, match="at least 2"):
        grpo.group_advantages(rewards, 1)
    with pytest.raises(ValueError, match="groups of 3"):
        grpo.group_advantages(rewards, 3)


@pytest.mark.slow
def test_grpo_loss_and_gradient_equal_trl_grpo_trainer(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    seed_everything(0)
    model, tokenizer = base_model.load()
    complaints = support_data.heldout_complaints(2)
    data = Dataset.from_list([{"prompt": support_data.chat_messages(c)} for c in complaints])
    with warnings.catch_warnings():  # trl 1.16 still says `gradient_checkpointing`
        warnings.filterwarnings(
            "ignore", r".*gradient_checkpointing.* is deprecated", FutureWarning
        )
        # bf16=False: GRPOConfig turns bf16 on by default, which on a CPU means bf16 autocast
        args = GRPOConfig(
            output_dir=str(tmp_path),
            loss_type="grpo",
            beta=0.0,
            num_generations=4,
            per_device_train_batch_size=4,
            max_completion_length=16,
            use_cpu=True,
            report_to=[],
            bf16=False,
            gradient_checkpointing=False,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=finetune.lora_config(4, 8, target_modules="all-linear"),
        )
    policy = trainer.model
    generator = torch.Generator().manual_seed(0)
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=generator) * 0.05
    r = grpo.rollout(policy, tokenizer, complaints, 4, max_new_tokens=16, seed=0)
    advantages = grpo.group_advantages(torch.tensor([0.0, 1.0, 2.0, 0.5, 1.0, 1.0, 0.0, 2.0]), 4)
    inputs = dict(
        prompt_ids=r.prompt_ids,
        prompt_mask=r.prompt_mask,
        completion_ids=r.completion_ids,
        completion_mask=r.completion_mask,
        advantages=advantages,
        num_items_in_batch=r.completion_mask.sum(),
    )
    policy.train()
    trainer.current_gradient_accumulation_steps = 1

    def gradients(loss):
        policy.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}

    theirs_loss = trainer._compute_loss(policy, inputs)
    theirs = gradients(theirs_loss)
    logps = grpo.token_logps(
        policy, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask
    )
    ours_loss = grpo.grpo_loss(logps, advantages, r.completion_mask)
    ours = gradients(ours_loss)
    assert ours_loss.item() == pytest.approx(theirs_loss.item(), abs=1e-6)
    assert theirs.keys() == ours.keys() and theirs
    largest = max(g.abs().max().item() for g in theirs.values())
    assert largest > 1e-3  # advantages that differ: a real gradient
    difference = max((theirs[n] - ours[n]).abs().max().item() for n in theirs)
    assert difference < 1e-3 * largest  # relative to the largest gradient
