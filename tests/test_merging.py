"""peftlab.merging, merging_4bit, adapters, measure: merge/unmerge exactness, merged folders, 4-bit
routes, several adapters, disk and latency."""

import copy
import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from peftlab import adapters, base_model, measure, merging, merging_4bit, support_data
from peftlab.lessons import lesson04_merging as lesson04
from peftlab.quiet import muted
from peftlab.rubric import score_reply

HIDDEN = 64  # bitsandbytes' CPU 4-bit kernels need widths that are multiples of 64


def tiny_llama(hidden: int = HIDDEN, vocab: int = 512, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=0,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def random_adapter(model, seed: int, r: int = 4, alpha: int = 8) -> PeftModel:
    """A LoRA with random, non-zero A and B (peft's init_lora_weights=False)."""
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear",
                        init_lora_weights=False)  # fmt: skip
    with muted():
        return get_peft_model(model, config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(base_model.EMBEDDED_PATH)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """A tiny base model folder (loadable by base_model.load) and two adapters for it."""
    root = tmp_path_factory.mktemp("merging")
    base = tiny_llama(vocab=len(tokenizer))
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    for name, seed in (("one", 1), ("two", 2)):
        random_adapter(copy.deepcopy(base), seed).save_pretrained(root / name)
    return root


@pytest.fixture
def ids():
    return {"input_ids": torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(0))}


def test_merge_and_unload_equals_adapter_model(ids):
    base = tiny_llama()
    base_weights = copy.deepcopy(base.state_dict())
    base_logits = merging.logits(base, ids)
    model = random_adapter(copy.deepcopy(base), seed=1)
    adapter_logits = merging.logits(model, ids)
    assert (adapter_logits - base_logits).abs().max() > 1e-3  # the adapter is not a no-op

    merged = merging.merged_copy(model)
    torch.testing.assert_close(merging.logits(merged, ids), adapter_logits, atol=1e-5, rtol=0)
    assert merging.param_count(merged) == merging.param_count(base)
    assert adapters.peft_lora_layers(merged) == {}
    assert not any("lora" in key for key in merged.state_dict())
    assert type(merged) is LlamaForCausalLM
    assert not merging.is_merged(model)  # merged_copy left the adapter model alone

    merging.merge(model)
    assert merging.is_merged(model)
    torch.testing.assert_close(merging.logits(model, ids), adapter_logits, atol=1e-5, rtol=0)
    merging.unmerge(model)
    restored = {k.replace("base_layer.", ""): v for k, v in model.get_base_model().state_dict()
                .items() if "lora_" not in k}  # fmt: skip
    assert restored.keys() == base_weights.keys()
    for key, weight in base_weights.items():
        torch.testing.assert_close(restored[key], weight, atol=1e-6, rtol=0)


def test_check_merge_reports_the_same_facts(ids):
    model = random_adapter(tiny_llama(), seed=3)
    check = merging.check_merge(model, ids)
    assert check.adapter_vs_base > 1e-3
    assert check.merged_vs_adapter < 1e-5 and check.merged_in_place_vs_adapter < 1e-5
    assert check.unmerged_weights_vs_base < 1e-6
    assert check.merged_params == check.base_params == merging.param_count(tiny_llama())
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert check.adapter_params == check.base_params + lora_params
    assert check.peft_modules_left == 0
    assert not merging.is_merged(model)
    assert len(check.rows()) == 8


def test_delta_weight_is_alpha_over_r_times_b_a():
    model = random_adapter(tiny_llama(), seed=4, r=4, alpha=8)
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    by_hand = (8 / 4) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    delta = merging.delta_weight(model, "layers.0.self_attn.q_proj")
    torch.testing.assert_close(delta, by_hand)
    before = layer.base_layer.weight.detach().clone()
    merging.merge(model)
    torch.testing.assert_close(layer.base_layer.weight, before + by_hand)
    with pytest.raises(ValueError, match="q_proj"):
        merging.delta_weight(model, "q_proj")  # ambiguous: one per layer


def test_merging_twice_is_refused_and_adds_nothing(ids):
    model = random_adapter(tiny_llama(), seed=5)
    merging.merge(model)
    once = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="already merged"):
        merging.merge(model)
    with pytest.raises(ValueError, match="already merged"):
        merging.merged_copy(model)
    for name, param in model.named_parameters():
        assert torch.equal(param, once[name])
    merging.unmerge(model)
    with pytest.raises(ValueError, match="not merged"):
        merging.unmerge(model)


def test_merge_without_adapter_is_refused():
    with pytest.raises(ValueError, match="no LoRA layers"):
        merging.merge(tiny_llama())


def test_merged_folder_loads_with_plain_transformers(tmp_path, tokenizer, ids):
    model = random_adapter(tiny_llama(vocab=len(tokenizer)), seed=6)
    folder = merging.save_merged(model, tokenizer, tmp_path / "merged")
    assert not (folder / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(plain) is LlamaForCausalLM
    torch.testing.assert_close(merging.logits(plain, ids), merging.logits(model, ids),
                               atol=1e-5, rtol=0)  # fmt: skip
    again, tok = merging.load_merged(folder)
    assert tok.padding_side == "left" and len(tok) == len(tokenizer)
    torch.testing.assert_close(merging.logits(again, ids), merging.logits(plain, ids))


def test_adapter_for_another_base_is_refused_before_any_change(folders):
    other = tiny_llama(hidden=128, vocab=512)
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError) as err:
        adapters.load(other, folders / "one")
    message = str(err.value)
    assert "model.layers.0" in message and "128x128" in message and "64x64" in message
    assert adapters.peft_lora_layers(other) == {}
    assert other.state_dict().keys() == before.keys()
    assert all(torch.equal(other.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        adapters.load(other, folders / "missing")


def test_merge_routes_are_measured_against_the_unmerged_4bit_model(folders):
    complaints = support_data.heldout_complaints(3)
    results = merging_4bit.route_experiment(folders / "one", complaints, str(folders / "base"),
                                            max_new_tokens=4)  # fmt: skip
    by_route = {r.route: r for r in results}
    assert list(by_route) == ["-", "a", "b", "c", "d", "e"]
    reference = by_route["-"]  # the yardstick against itself: the measurement repeats exactly
    assert (reference.top1, reference.max_logit_diff, reference.identical) == (1, 0, 1)
    for r in results:
        assert math.isfinite(r.max_logit_diff) and math.isfinite(r.mean_logit_diff)
        assert 0 <= r.top1 <= 1 and 0 <= r.identical <= 1
    # b adds the update to the very weights the adapter was trained on: only bf16 rounding
    others = [by_route[k] for k in "acde"]
    assert all(by_route["b"].mean_logit_diff < r.mean_logit_diff / 5 for r in others)
    assert by_route["d"].mean_logit_diff > 0  # the original weights are not the 4-bit ones
    assert by_route["b"].footprint_bytes == by_route["d"].footprint_bytes  # both bf16
    assert all(by_route[k].footprint_bytes < by_route["b"].footprint_bytes for k in "ace")
    fig = lesson04.plot_routes(results)
    assert [len(ax.patches) for ax in fig.axes] == [6, 6]
    assert fig.axes[1].patches[0].get_height() == 100  # unmerged agrees with itself
    with pytest.raises(ValueError, match="route='f'"):
        merging_4bit.merge_route("f", folders / "one", str(folders / "base"))
    with pytest.raises(ValueError, match="routes="):
        merging_4bit.route_experiment(folders / "one", complaints, str(folders / "base"),
                                      routes=["b", "x"])  # fmt: skip
    with pytest.raises(ValueError, match="no complaints"):
        merging_4bit.route_experiment(folders / "one", [], str(folders / "base"))


def test_routes_a_and_c_quantize_different_sums(folders):
    """peft's merge into 4 bits (a) quantizes the fp32 sum; requantizing a bf16 merge (c)
    quantizes that sum rounded to bf16: the same steps, not the same arithmetic."""
    check = merging_4bit.requantization_check(folders / "one", str(folders / "base"))
    assert check["layers"] == 14  # 2 layers x 7 linear layers
    assert check["a_quantizes_fp32_sum"] == check["c_quantizes_bf16_sum"] == 14
    assert 0 < check["codes_differ"] < 0.5 and 0 < check["weights_differ"] < 1


def test_reply_batch_marks_the_positions_that_predict_the_reply(tokenizer):
    complaints, replies = (
        ["My order is late.", "The app crashes."],
        ["Sorry!", "We will fix it soon."],
    )
    batch, picks = merging_4bit.reply_batch(tokenizer, complaints, replies)
    ids = batch["input_ids"]
    for row, reply in enumerate(replies):
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        predicted = ids[row, 1:][picks[row, :-1]]  # the token after each marked position
        assert predicted.tolist() == reply_ids
        assert batch["attention_mask"][row, -len(reply_ids) :].all()
    assert not picks[:, -1].any()  # the last token predicts nothing in the reply
    with pytest.raises(ValueError, match="2 complaints but 1 replies"):
        merging_4bit.reply_batch(tokenizer, complaints, replies[:1])


def test_qlora_adapters_train_on_the_4bit_base(folders, tmp_path):
    from bitsandbytes.nn import Linear4bit

    base = str(folders / "base")
    out = adapters.train_adapters(tmp_path, model_name=base, behaviours=["polite"], method="qlora",
                                  steps=2, compute_dtype=torch.float32)  # fmt: skip
    config = json.loads((out["polite"] / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16)
    model, _ = merging_4bit.load_4bit(base)
    linear = {n for n, m in model.named_modules() if isinstance(m, Linear4bit)}
    assert set(config["target_modules"]) == linear  # all-linear: every 4-bit layer
    assert lesson04.adapter_tensors(out["polite"])["dtypes"] == ["F32"]  # peft saves fp32
    with pytest.raises(ValueError, match="method='full'"):
        adapters.train_adapters(tmp_path, model_name=base, method="full")
    with pytest.raises(ValueError, match="compute_dtype"):
        adapters.train_adapters(tmp_path, model_name=base, method="qlora", compute_dtype=torch.int8)


@pytest.mark.parametrize("route", ["-", "a", "c"])
def test_in_fp32_holds_the_bf16_weights_bitsandbytes_computes_with(folders, route):
    """Every 4-bit layer becomes its dequantized weight rounded to bf16 (route a's requantized
    layers dequantize to fp32, and their forward casts that to bf16), cast up exactly."""
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit

    base = str(folders / "base")
    if route == "-":
        model, _ = merging_4bit.load_4bit(base)
    else:
        model = merging_4bit.merge_route(route, folders / "one", base)
    expected = {
        name: dequantize_4bit(m.weight.data, m.weight.quant_state).to(torch.bfloat16).float()
        for name, m in model.named_modules()
        if isinstance(m, Linear4bit)
    }
    assert len(expected) == 14  # 2 layers x 7 linear layers
    fp32 = merging_4bit.in_fp32(model)
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    for name, weight in expected.items():
        assert torch.equal(fp32.get_submodule(name).weight, weight), name


def test_in_fp32_computes_what_the_4bit_model_computes_without_bf16_rounding(folders, ids):
    base = str(folders / "base")
    real = adapters.load(merging_4bit.load_4bit(base)[0], folders / "one").train()
    fp32 = adapters.load(merging_4bit.in_fp32(merging_4bit.load_4bit(base)[0]), folders / "one")
    real_logits, fp32_logits = merging.logits(real, ids), merging.logits(fp32.train(), ids)
    gap = (real_logits - fp32_logits).abs().max().item()
    # bf16 arithmetic, nothing more: a few roundings of 2^-8 at the largest logit
    assert 0 < gap < 0.03 * real_logits.abs().max().item()


def test_rounding_noise_is_shown_as_its_bound_and_a_real_gap_as_itself():
    assert merging.below(2.0e-5, merging.LOGIT_NOISE) == "< 1e-4"
    assert merging.below(3e-8, merging.WEIGHT_NOISE) == "< 1e-6"
    assert merging.below(3.1e-4, merging.LOGIT_NOISE) == "0.00031"


def test_restore_4bit_layout_gives_back_the_dequantizable_weight(folders):
    from peft.utils.integrations import dequantize_bnb_weight

    model, _ = merging_4bit.load_4bit(str(folders / "base"))
    layer = model.model.layers[0].mlp.down_proj
    before = dequantize_bnb_weight(layer.weight, state=layer.weight.quant_state).clone()
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7]]))  # eval mode: bitsandbytes may repack on CPU
    packed = getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
    if packed:  # read in the repacked layout, the weight is garbage
        wrong = dequantize_bnb_weight(layer.weight, state=layer.weight.quant_state)
        assert (wrong.float() - before.float()).abs().max() > before.abs().max() / 2
    assert merging_4bit.restore_4bit_layout(model) == (14 if packed else 0)  # 7 linears x 2 layers
    after = dequantize_bnb_weight(layer.weight, state=layer.weight.quant_state)
    # the block scales come back through bf16: equal up to one bf16 step of the scale
    torch.testing.assert_close(after.float(), before.float(), atol=1e-3, rtol=0)


def test_several_adapters_switch_disable_and_mix(folders, tokenizer, ids):
    base, _ = base_model.load(str(folders / "base"))
    model = adapters.load_many(base, {"one": folders / "one", "two": folders / "two"})
    assert model.active_adapter == "one"
    one = merging.logits(model, ids)
    model.set_adapter("two")
    two = merging.logits(model, ids)
    with model.disable_adapter():
        plain = merging.logits(model, ids)
    assert (one - two).abs().max() > 1e-3 and (one - plain).abs().max() > 1e-3

    complaints = support_data.heldout_complaints(2)
    replies = merging.replies_per_adapter(model, tokenizer, complaints, max_new_tokens=3)
    assert list(replies) == ["base", "one", "two"] and all(len(v) == 2 for v in replies.values())
    assert model.active_adapter == "two"

    # cat stacks A's and B's, so its update is exactly the weighted sum of the two updates
    name = merging.combine(model, ["one", "two"], [0.7, 0.3], "cat")
    layer = "layers.1.mlp.up_proj"
    expected = 0.7 * merging.delta_weight(model, layer, "one") + 0.3 * merging.delta_weight(
        model, layer, "two"
    )
    torch.testing.assert_close(merging.delta_weight(model, layer, name), expected)
    for kind in ("linear", "ties"):
        mixed = merging.combine(model, ["one", "two"], [0.2, 0.8], kind)
        assert mixed in model.peft_config

    rows = merging.mixing_rows(model, tokenizer, complaints, ["one", "two"], [[1, 0], [0.5, 0.5]],
                                ("linear", "cat"), max_new_tokens=3)  # fmt: skip
    assert [(r["type"], r["weights"]) for r in rows] == [
        ("linear", (1, 0)), ("linear", (0.5, 0.5)), ("cat", (1, 0)), ("cat", (0.5, 0.5))
    ]  # fmt: skip
    assert all(0 <= r["score"] <= 1 and r["words"] >= 0 for r in rows)
    assert set(model.peft_config) == {
        "one",
        "two",
        name,
        "linear_one0p2_two0p8",
        "ties_one0p2_two0p8",
    }  # the table's mixes are removed


@pytest.mark.parametrize(
    ("names", "weights", "kind", "match"),
    [
        (["one", "two"], [1.0], "linear", "one weight per adapter"),
        (["one"], [0.5, 0.5], "cat", "one weight per adapter"),
        (["one", "two"], [0.5, 0.5], "average", "combination_type='average'"),
        (["one", "three"], [0.5, 0.5], "linear", "not loaded"),
    ],
)
def test_combine_rejects_bad_input(folders, names, weights, kind, match):
    base, _ = base_model.load(str(folders / "base"))
    model = adapters.load_many(base, {"one": folders / "one", "two": folders / "two"})
    before = set(model.peft_config)
    with pytest.raises(ValueError, match=match):
        merging.combine(model, names, weights, kind)
    assert set(model.peft_config) == before


def test_one_base_and_adapters_take_less_disk_than_merged_copies(folders, tmp_path, tokenizer):
    base, _ = base_model.load(str(folders / "base"))
    merged_dir = merging.save_merged(adapters.load(base, folders / "one"), tokenizer,
                                     tmp_path / "merged")  # fmt: skip
    sizes = measure.storage(folders / "base", [folders / "one", folders / "two"], merged_dir)
    assert sizes["merged_models_bytes"] == 2 * sizes["merged_model_bytes"]
    assert sizes["base_plus_adapters_bytes"] < sizes["merged_models_bytes"]
    assert sizes["adapter_bytes"] == sum(
        (folders / n / "adapter_model.safetensors").stat().st_size for n in ("one", "two")
    )


def test_latency_is_measured(ids):
    table = measure.forward_ms({"x": tiny_llama(), "y": tiny_llama()}, ids, repeats=2, warmup=0)
    assert list(table) == ["x", "y"] and table["x"] > 0 and table["y"] > 0
    with pytest.raises(ValueError, match="repeats=0"):
        measure.forward_ms({"x": tiny_llama()}, ids, repeats=0)


def test_median_ms_times_round_robin_and_skips_the_warmup_rounds():
    calls = []
    ms = measure.median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           repeats=2, warmup=1)  # fmt: skip
    assert calls == ["a", "b"] * 3 and set(ms) == {"a", "b"} and min(ms.values()) >= 0


def test_terse_finetune_set_is_a_second_behaviour():
    terse = support_data.terse_finetune_set(50, seed=3)
    polite = support_data.finetune_set(50, seed=3)
    assert terse == support_data.terse_finetune_set(50, seed=3)
    # the seed world's complaints, which the polite set opens with too (then the wider world's)
    n_seed = 1 + round(49 * support_data.SEED_SHARE)
    assert [t.complaint for t in terse][:n_seed] == [p.complaint for p in polite][:n_seed]
    assert max(len(t.reply.split()) for t in terse) < min(len(p.reply.split()) for p in polite)
    for ex in terse:
        marks = score_reply(ex.reply, ex.complaint)
        assert not marks["greeting"] and marks["action"] and marks["timeline"]
        assert ex.product in ex.reply


def test_latency_benchmark_prints_and_writes_its_table(folders, tmp_path, capsys):
    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks/merge_latency.py"))
    out = tmp_path / "latency.md"
    assert bench["main"](["--quick", "--model", str(folders / "base"), "--batch", "2",
                          "--out", str(out)]) == 0  # fmt: skip
    table = out.read_text()
    assert table in capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "base",
        "adapter (unmerged)",
        "merged",
    ]
    assert rows[1].split("|")[3].strip() == "1.00"  # the base relative to itself
    with pytest.raises(ValueError, match="rank=0"):
        bench["main"](["--quick", "--rank", "0"])
