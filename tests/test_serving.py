"""Many adapters on one base: hot-swapping, one mixed batch equal to each adapter's own replies,
and memory and latency measured against one merged model per adapter.

The adapters are made, not trained: B is set random (not zero, as training would start it),
so each adapter changes the model's replies, which is all these checks need.
"""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peftlab import adapters, base_model, serving, support_data
from peftlab.quiet import muted

NAMES = ("a", "b")


def _load():
    with muted():
        return base_model.load()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for seed, name in enumerate(NAMES):
        torch.manual_seed(seed)
        model, _ = _load()
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                            init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
        peft_model = get_peft_model(model, config)
        with torch.no_grad():  # large enough to change greedy replies
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0.0, 1.0)
        out[name] = tmp_path_factory.mktemp(name)
        peft_model.save_pretrained(out[name])
    return out


@pytest.fixture
def served(folders):
    model, tokenizer = _load()
    return adapters.load_many(model, folders), tokenizer


COMPLAINTS = [support_data.LESSON_COMPLAINT, *support_data.heldout_complaints(5)]
ROWS = ["a", "b", serving.BASE, "b", "a", serving.BASE]


def test_one_mixed_batch_gives_each_adapters_own_replies(served):
    model, tokenizer = served
    mixed = serving.mixed_generate(model, tokenizer, COMPLAINTS, ROWS, max_new_tokens=24)
    own = serving.own_replies(model, tokenizer, COMPLAINTS, ROWS, max_new_tokens=24)
    assert mixed == own
    # and the adapters really differ: the same complaint, three different replies
    same = [COMPLAINTS[0]] * 3
    per_row = serving.mixed_generate(model, tokenizer, same, ["a", "b", serving.BASE],
                                     max_new_tokens=24)  # fmt: skip
    assert len(set(per_row)) == 3
    assert model.active_adapter == "a"  # own_replies put the active adapter back


def test_mixed_batch_logits_equal_switching_adapters(served):
    """Per row, the mixed forward pass is the forward pass with that adapter active."""
    from peftlab.merging import prompt_batch

    model, tokenizer = served
    batch = prompt_batch(tokenizer, COMPLAINTS)
    with torch.no_grad():
        mixed = model(**batch, adapter_names=ROWS).logits
        for i, name in enumerate(ROWS):
            row = {k: v[i : i + 1] for k, v in batch.items()}
            if name == serving.BASE:
                with model.disable_adapter():
                    alone = model(**row).logits
            else:
                model.set_adapter(name)
                alone = model(**row).logits
            torch.testing.assert_close(mixed[i : i + 1], alone, atol=1e-4, rtol=1e-4)


def test_hot_swap_loads_answers_and_frees(served, folders):
    model, tokenizer = served
    ref_model, _ = _load()
    only_b = adapters.load_many(ref_model, {"b": folders["b"]})
    expected = serving.own_replies(only_b, tokenizer, COMPLAINTS[:2], ["b", "b"],
                                   max_new_tokens=16)  # fmt: skip
    model.delete_adapter("b")
    assert serving.loaded(model) == ["a"]
    swap = serving.hot_swap(model, tokenizer, folders["b"], "c", COMPLAINTS[:2])
    assert swap["with"] > swap["before"] == swap["after"]
    assert serving.loaded(model) == ["a"] and model.active_adapter == "a"
    again = serving.hot_swap(model, tokenizer, folders["b"], "c", COMPLAINTS[:2])
    assert again["replies"] == swap["replies"]
    got = [r[: len(e)] for r, e in zip(swap["replies"], expected, strict=True)]
    assert got == expected  # 16 new tokens are a prefix of the default 64


def test_memory_one_base_plus_adapters_against_merged_copies(served):
    model, _ = served
    sizes = serving.memory_bytes(model, list(NAMES))
    base = sum(p.numel() * p.element_size() for p in _load()[0].parameters())
    assert sizes["base_bytes"] == base
    assert sizes["merged_bytes"] == 2 * base
    assert 0 < sizes["adapter_bytes"] < base / 10
    assert sizes["shared_bytes"] == base + sizes["adapter_bytes"] < sizes["merged_bytes"]


def test_latency_is_measured_for_the_three_ways(served):
    model, tokenizer = served
    ms = serving.latency_ms(model, tokenizer, COMPLAINTS[:4], ["a", "b", "a", "b"], repeats=2)
    assert set(ms) == {"one base, one mixed batch", "one base, set_adapter per adapter",
                       "one merged model per adapter"}  # fmt: skip
    assert all(v > 0 for v in ms.values())


def test_bad_requests_say_what_to_do(served, folders):
    model, tokenizer = served
    with pytest.raises(ValueError, match=r"not loaded; loaded: \['a', 'b'\]"):
        serving.mixed_generate(model, tokenizer, COMPLAINTS[:1], ["z"])
    with pytest.raises(ValueError, match="one name per row"):
        serving.mixed_generate(model, tokenizer, COMPLAINTS[:2], ["a"])
    with pytest.raises(ValueError, match="taken"):
        serving.hot_swap(model, tokenizer, folders["a"], "a", COMPLAINTS[:1])
    with pytest.raises(ValueError, match="load adapters first"):
        serving.mixed_generate(_load()[0], tokenizer, COMPLAINTS[:1], ["a"])
    with pytest.raises(ValueError, match="adapter_config.json"):
        serving.adapter_folders({"x": folders["a"].parent})
