"""The PEFT family budget: a fair split, peft's own parameter counts, merges that change nothing,
and bad input refused."""

import dataclasses

import pytest
import torch

from peftlab import base_model, generate, peft_family, peft_methods, support_data, tuning
from peftlab.lora import count_trainable
from peftlab.peft_family import FamilyBudget
from peftlab.peft_methods import METHODS
from peftlab.quiet import known_warnings, muted

TINY = FamilyBudget(steps=3, batch_size=4, seeds=(0,), lr_factors=(1.0,), n_heldout=3,
                max_new_tokens=8, timing_repeats=1)  # fmt: skip


def test_validation_split_and_heldout_complaints_are_disjoint():
    protocol = FamilyBudget()
    train, val = tuning.support_split(protocol.n_train, protocol.n_val)
    assert len(val) == protocol.n_val and len(train) == protocol.n_train - protocol.n_val
    train_complaints = {ex.complaint for ex in train}
    val_complaints = {ex.complaint for ex in val}
    assert not train_complaints & val_complaints
    assert train_complaints | val_complaints == {
        ex.complaint for ex in support_data.finetune_set(protocol.n_train)
    }
    heldout = set(peft_family.heldout(protocol))
    assert len(heldout) == protocol.n_heldout
    assert not heldout & (train_complaints | val_complaints)
    # nor does the data the rate is chosen on name a held-out product
    val_words = {w.strip(".,!?'") for ex in val for w in ex.complaint.lower().split()}
    assert not val_words & set(support_data.HELDOUT_NOUNS)
    # the same split every time
    assert tuning.support_split(protocol.n_train, protocol.n_val) == (train, val)


def test_every_method_of_a_seed_sees_the_same_batches():
    a = tuning.batch_indices(360, 8, 50, seed=1)
    assert a == tuning.batch_indices(360, 8, 50, seed=1)
    assert a != tuning.batch_indices(360, 8, 50, seed=2)
    assert all(len(rows) == 8 for rows in a)
    assert sorted(i for rows in a[:45] for i in rows) == list(range(360))  # one epoch first


@pytest.mark.parametrize("name", list(METHODS))
def test_trainable_params_are_what_peft_reports(name):
    method = METHODS[name]
    with muted():
        model, _ = base_model.load()
    torch.manual_seed(0)
    wrapped = peft_methods.apply_method(method, model, steps=20)
    ours = count_trainable(wrapped)
    if method.config is None:  # full fine-tuning: every parameter, the tied head once
        assert ours == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    else:
        assert ours == peft_family.peft_trainable(wrapped) > 0
        assert ours < 0.2 * sum(p.numel() for p in wrapped.parameters())


def test_loraplus_gives_b_a_larger_learning_rate():
    with muted():
        model, _ = base_model.load()
    method = METHODS["LoRA+"]
    wrapped = peft_methods.apply_method(method, model, steps=20)
    opt = peft_methods.optimizer_for(method, wrapped, 1e-3)
    rates = sorted({g["lr"] for g in opt.param_groups if g["params"]})
    assert rates == [1e-3, 1e-3 * peft_methods.LORAPLUS_RATIO]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.merges])
def test_merged_model_answers_exactly_as_unmerged(name):
    method = METHODS[name]
    run = peft_family.train_method(method, 3 * method.base_lr, 0, TINY)
    assert run.losses[-1] != run.losses[0]  # the adapter moved away from its start
    complaints = peft_family.heldout(TINY)
    unmerged = peft_family.replies(run, complaints, TINY.max_new_tokens)
    assert peft_family.merged_replies(run, complaints, TINY.max_new_tokens) == unmerged


# prefix tuning, trained long enough to move its replies (a few seconds)
PREFIX = FamilyBudget(steps=24, batch_size=8, seeds=(0,), lr_factors=(1.0,), n_heldout=6,
                  max_new_tokens=24, timing_repeats=1)  # fmt: skip


@pytest.fixture(scope="module")
def prefix_run():
    method = METHODS["prefix tuning"]
    return peft_family.train_method(method, 3 * method.base_lr, 0, PREFIX)


@torch.no_grad()
def reference_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding the slow way: peft's own forward on the whole sequence at every step
    (batch of one, no padding, no cache): the prefix goes in as training put it in."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    start, eos = ids.shape[1], model.generation_config.eos_token_id
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        token = logits[0, -1].argmax()
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
        if int(token) in eos:
            break
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_prefix_decode_equals_peft_forward_greedy(prefix_run):
    model, tokenizer = prefix_run.model, prefix_run.model.tokenizer
    model.eval()
    complaints = peft_family.heldout(PREFIX)
    prompts = generate.chat_prompts(tokenizer, complaints, 256)
    lengths = {len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) > 1  # the batch is left-padded, so padding and positions are tested
    fast = peft_family.replies(prefix_run, complaints, PREFIX.max_new_tokens)
    with known_warnings():
        slow = [reference_greedy(model, tokenizer, p, PREFIX.max_new_tokens) for p in prompts]
    assert fast == slow
    assert all(fast)


@pytest.mark.slow
def test_prefix_tuned_replies_are_not_the_base_model_s(prefix_run):
    complaints = peft_family.heldout(PREFIX)
    with muted():
        base, tokenizer = base_model.load()
    before = generate.generate(base, tokenizer, complaints, max_new_tokens=PREFIX.max_new_tokens)
    after = peft_family.replies(prefix_run, complaints, PREFIX.max_new_tokens)
    val = tuning.tokenized_support_split(tokenizer, None, PREFIX.n_train, PREFIX.n_val)[1]
    assert prefix_run.val_loss < tuning.mean_loss(base, val, tokenizer.pad_token_id)
    # the prefix learned ...
    assert sum(a != b for a, b in zip(after, before, strict=True)) >= len(complaints) // 2
    # ... and its replies show it


def test_prefix_decode_refuses_other_models():
    with muted():
        model, tokenizer = base_model.load()
    with pytest.raises(ValueError, match="prefix tuning"):
        generate.prefix_greedy(model, tokenizer, ["My order is late."], max_new_tokens=4)
    wrapped = peft_methods.apply_method(METHODS["prefix tuning"], model, steps=4)
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        generate.prefix_greedy(wrapped, tokenizer, ["My order is late."], max_new_tokens=0)


@pytest.mark.slow
def test_compare_family_reports_each_method(tmp_path):
    out = peft_family.compare_family(TINY, ["LoRA", "prompt tuning"], None, tmp_path)
    lora, prompt = out["results"]
    assert not out["unsupported"]
    assert lora.merges and lora.merge_identical and not prompt.merges
    assert lora.trainable_params == lora.peft_trainable_params
    assert lora.disk_bytes > prompt.disk_bytes > 0
    assert lora.seconds_per_step > 0 and lora.memory_bytes > lora.activation_bytes > 0
    assert len(lora.scores) == len(TINY.seeds)


@pytest.mark.slow
def test_two_worker_processes_compute_what_one_process_does(tmp_path):
    """Each run seeds itself, so methods evaluated two at a time in other processes (under this
    test's warning filters) give the same losses, rates, scores and replies as one process."""
    protocol = dataclasses.replace(TINY, seeds=(0, 1), lr_factors=(1.0, 3.0))
    names = ["LoRA", "prefix tuning"]
    one = peft_family.compare_family(protocol, names, None, tmp_path / "one")
    two = peft_family.compare_family(protocol, names, None, tmp_path / "two", workers=2)
    fields = ("method", "lr", "lr_val_losses", "train_loss", "val_loss", "scores",
              "trainable_params", "disk_bytes", "held_bytes", "activation_bytes",
              "merge_identical", "example_reply")  # fmt: skip
    for a, b in zip(one["results"], two["results"], strict=True):
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
        assert b.seconds_per_step > 0
    with pytest.raises(ValueError, match="workers=0"):
        peft_family.compare_family(protocol, names, None, tmp_path, workers=0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0), dict(batch_size=-1), dict(seeds=()), dict(seeds=(0, 0)),
     dict(lr_factors=(0.0,)), dict(n_val=0), dict(n_val=400), dict(n_heldout=0)],
)  # fmt: skip
def test_bad_budget_is_refused(kwargs):
    with pytest.raises(ValueError, match="="):
        FamilyBudget(**kwargs)


def test_bad_methods_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        peft_methods.check_methods(["LoRA", "SuperLoRA"])
    with pytest.raises(ValueError, match="must include 'LoRA'"):
        peft_family.compare_family(TINY, ["DoRA"], None, tmp_path)
    with pytest.raises(ValueError, match="learning rate"):
        peft_family.train_method(METHODS["LoRA"], 0.0, 0, TINY)
