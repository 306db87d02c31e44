"""One `generate` for every model: prompts fit the context, batching does not change a greedy
reply, and a prefix-tuned model is decoded through its prefix without the caller choosing."""

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, get_peft_model

from peftlab import base_model, support_data
from peftlab.generate import chat_prompts, fit_complaint, generate, is_prefix_tuned, prefix_greedy
from peftlab.quiet import known_warnings, muted

COMPLAINTS = [support_data.LESSON_COMPLAINT, *support_data.heldout_complaints()[:5]]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def base():
    with muted():
        return base_model.load()


@pytest.fixture(scope="module")
def prefixed():
    """A prefix-tuned peft model with a random prefix, scaled up so that it moves the replies
    without training (at peft's initial scale the toy answers as before)."""
    torch.manual_seed(0)
    with muted():
        model, tokenizer = base_model.load()
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8)
    model = get_peft_model(model, config).eval()
    torch.nn.init.normal_(model.prompt_encoder["default"].embedding.weight, std=3.0)
    return model, tokenizer


@torch.no_grad()
def peft_forward_greedy(model, tokenizer, complaint: str, max_new_tokens: int) -> str:
    """Greedy decoding the slow way: peft's own forward on the whole sequence at every step (one
    complaint, no padding, no cache), so the prefix goes in as training puts it in."""
    prompt = chat_prompts(tokenizer, [complaint], 256)[0]
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    start, eos = ids.shape[1], model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    for _ in range(max_new_tokens):
        token = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax()
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
        if int(token) in eos:
            break
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True).strip()


def test_batching_does_not_change_greedy_replies(base):
    model, tokenizer = base
    prompts = chat_prompts(tokenizer, COMPLAINTS, 256)
    assert len({len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts}) > 1
    together = generate(model, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS)
    one_by_one = generate(model, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS, batch_size=1)
    assert together == one_by_one and all(together)


def test_a_prefix_tuned_model_is_decoded_through_its_prefix(base, prefixed):
    model, tokenizer = prefixed
    assert is_prefix_tuned(model) and not is_prefix_tuned(base[0])
    chosen = generate(model, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS)
    assert chosen == prefix_greedy(model, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS)
    assert chosen == generate(model, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS,
                              batch_size=2)  # fmt: skip
    plain = generate(base[0], base[1], COMPLAINTS, max_new_tokens=NEW_TOKENS)
    assert sum(a != b for a, b in zip(chosen, plain, strict=True)) >= len(COMPLAINTS) // 2
    with known_warnings():  # peft's forward hands the prefix over under the old cache name
        slow = [peft_forward_greedy(model, tokenizer, c, NEW_TOKENS) for c in COMPLAINTS[:3]]
    assert chosen[:3] == slow


def test_a_lora_model_takes_transformers_path_and_matches_its_merged_copy(base):
    torch.manual_seed(0)
    with muted():
        model, tokenizer = base_model.load()
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a non-zero update, so the adapter shows
    lora.eval()
    assert not is_prefix_tuned(lora)
    adapted = generate(lora, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS)
    assert adapted != generate(base[0], base[1], COMPLAINTS, max_new_tokens=NEW_TOKENS)
    merged = lora.merge_and_unload().eval()
    assert generate(merged, tokenizer, COMPLAINTS, max_new_tokens=NEW_TOKENS) == adapted


def test_a_long_complaint_is_cut_to_fit_with_a_warning(base):
    _, tokenizer = base
    long = " ".join(["My order is late and nobody answers my emails."] * 80)
    with pytest.warns(UserWarning, match="truncated"):
        short = fit_complaint(tokenizer, long, 128)
    assert long.startswith(short) and len(short) < len(long)
    prompt = support_data.render_chat(tokenizer, short)
    assert len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= 128
    assert fit_complaint(tokenizer, "My order is late.", 128) == "My order is late."


def test_bad_settings_are_refused(base, prefixed):
    model, tokenizer = base
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        generate(model, tokenizer, COMPLAINTS, max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        generate(model, tokenizer, COMPLAINTS, batch_size=0)
    with pytest.raises(ValueError, match="prefix tuning"):
        prefix_greedy(model, tokenizer, COMPLAINTS, max_new_tokens=4)
    with pytest.raises(ValueError, match="greedily through its prefix"):
        generate(*prefixed, COMPLAINTS, max_new_tokens=4, do_sample=True, temperature=0.7)
