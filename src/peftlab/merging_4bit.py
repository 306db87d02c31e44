"""Merging a LoRA adapter trained with QLoRA: five routes to one model, measured.

QLoRA trains an adapter on a 4-bit NF4 base: the model it trains (and can serve) is the 4-bit
base with the adapter kept separate. Merging means adding (alpha/r) B A to weights, and there
are several places to add it (see ROUTES): into the 4-bit weights, into a bf16 copy dequantized
from them, or into the original 16-bit base, each kept in 16 bits or quantized to NF4 again.
`route_experiment` measures every route against that unmerged 4-bit model, in logits, in the
next token it picks and in greedy replies.
"""

import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from peftlab import adapters, base_model
from peftlab.generate import MAX_NEW_TOKENS, chat_prompts, generate
from peftlab.merging import logits
from peftlab.quiet import muted
from peftlab.rubric import mean_score

ROUTES = {
    "a": "merge into the 4-bit weights (peft), stays 4-bit",
    "b": "dequantize the 4-bit base to bf16, merge, keep bf16",
    "c": "as b, then quantize to NF4 again",
    "d": "merge into the original 16-bit base, keep bf16",
    "e": "as d, then quantize to NF4",
}
UNMERGED = "4-bit base + adapter, not merged (as trained)"


def restore_4bit_layout(model: torch.nn.Module) -> int:
    """Undo bitsandbytes' CPU repacking of 4-bit weights; returns how many layers it unpacked.

    On CPUs with AVX512-BF16, an eval-mode forward repacks each 4-bit weight for a faster
    kernel; dequantizing (which merging does) must first see the standard layout again. The
    block scales come back through bf16, so a weight may move by one bf16 step of its scale.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    from bitsandbytes.nn import Linear4bit

    count = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, Linear4bit) and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state
            )
            count += 1
    return count


def load_4bit(model_name: str | None = None):
    """(model, tokenizer) with every linear layer in NF4, the rest in bf16."""
    with muted():
        return base_model.load(
            model_name, quantization_config=base_model.nf4_config(), dtype=torch.bfloat16
        )


def dequantize_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """The 4-bit model with every NF4 layer replaced by the bf16 weight bitsandbytes
    dequantizes it to (a 4-bit code times its block scale, rounded to bf16)."""
    restore_4bit_layout(model)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "dequantized in ... and casted to bf16": that is the point
    try:
        with muted():
            return model.dequantize(dtype=torch.bfloat16)
    finally:
        hf_logging.set_verbosity(level)


def load_16bit(model_name: str | None = None) -> torch.nn.Module:
    """The original, unquantized base in bf16: the 16-bit weights QLoRA quantized."""
    with muted():
        return base_model.load(model_name, dtype=torch.bfloat16)[0]


def quantize_model_nf4(model: torch.nn.Module) -> torch.nn.Module:
    """`model` (a plain bf16 model) saved and loaded again in NF4 (`base_model.nf4_config`), the
    way a merged model is quantized for 4-bit serving."""
    with tempfile.TemporaryDirectory() as tmp, muted():
        model.save_pretrained(tmp)
        return AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=base_model.nf4_config(), device_map="cpu",
            dtype=torch.bfloat16,
        ).eval()  # fmt: skip


def merge_route(
    route: str, adapter_dir: str | os.PathLike, model_name: str | None = None
) -> torch.nn.Module:
    """The merged model along one route (see ROUTES) from the base and a saved adapter."""
    if route not in ROUTES:
        raise ValueError(f"route={route!r}: choose one of {', '.join(ROUTES)}")
    if route == "a":
        model, _ = load_4bit(model_name)
        restore_4bit_layout(model)
        peft_model = adapters.load(model, adapter_dir)
        with warnings.catch_warnings():  # peft warns of rounding: measuring it is the point
            warnings.filterwarnings("ignore", message="Merge lora module to 4-bit linear")
            return peft_model.merge_and_unload().eval()
    base = (
        dequantize_bf16(load_4bit(model_name)[0]) if route in ("b", "c") else load_16bit(model_name)
    )
    merged = adapters.load(base, adapter_dir).merge_and_unload().eval()
    return quantize_model_nf4(merged) if route in ("c", "e") else merged


def in_fp32(model: torch.nn.Module) -> torch.nn.Module:
    """The same stored weights, evaluated in fp32 arithmetic.

    4-bit layers become the bf16 weights that bitsandbytes' forward and backward compute with
    (`dequantize_bf16`; the layers route a requantizes dequantize to fp32, and their forward
    casts that to bf16 too), then everything is cast up to fp32, which is exact. So comparing two
    models this way measures how their stored weights differ, not the CPU's bf16 matmul
    rounding, which differs between instruction sets (AVX2, AVX-512, AMX). On AVX512-BF16 CPUs
    bitsandbytes' packed inference kernel also rounds the block scales to bf16; that kernel
    is left out too.
    """
    if getattr(model, "is_quantized", False):
        model = dequantize_bf16(model)
    return model.float().eval()


def reply_batch(
    tokenizer, complaints: Sequence[str], replies: Sequence[str]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each complaint's chat prompt followed by a reply, tokenized and left-padded, and a mask of
    the positions whose next token is a reply token (where a model picks the reply, teacher
    forced). The prompts are `generate`'s (`generate.chat_prompts`)."""
    if len(complaints) != len(replies):
        raise ValueError(f"{len(complaints)} complaints but {len(replies)} replies: give one each")
    prompts = chat_prompts(tokenizer, complaints, tokenizer.model_max_length - MAX_NEW_TOKENS)
    rows = []
    for prompt, reply in zip(prompts, replies, strict=True):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids, reply_ids))
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    picks = torch.zeros_like(ids, dtype=torch.bool)
    for i, (prompt_ids, reply_ids) in enumerate(rows):
        start = width - len(prompt_ids) - len(reply_ids)
        ids[i, start:] = torch.tensor(prompt_ids + reply_ids)
        attention[i, start:] = 1
        first = start + len(prompt_ids) - 1  # the last prompt token predicts the first reply token
        picks[i, first : first + len(reply_ids)] = True
    return {"input_ids": ids, "attention_mask": attention}, picks


def requantization_check(adapter_dir: str | os.PathLike, model_name: str | None = None) -> dict:
    """Routes a and c, layer by layer: what each quantizes, and how far their 4-bit weights differ.

    Both add the adapter's update to the dequantized 4-bit weight and quantize the sum again,
    but peft (a) quantizes the fp32 sum, while c quantizes the merged bf16 model, the sum rounded
    to bf16. Counts the layers whose stored codes and scales are exactly NF4 of the fp32 sum (a)
    and of the bf16 sum (c), and the share of 4-bit codes and of the bf16 weights they compute
    with that differ between a and c.
    """
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit

    route_a, route_c = (
        merge_route("a", adapter_dir, model_name),
        merge_route("c", adapter_dir, model_name),
    )
    quantized, _ = load_4bit(model_name)
    restore_4bit_layout(quantized)
    model = adapters.load(quantized, adapter_dir)

    def stored(weight) -> tuple[torch.Tensor, torch.Tensor]:
        """Its 4-bit codes (one per weight) and the bf16 weight it computes with."""
        packed = weight.data.reshape(-1)
        codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)
        return codes, dequantize_4bit(weight.data, weight.quant_state).to(torch.bfloat16)

    def is_nf4_of(weight, total: torch.Tensor) -> bool:
        state = weight.quant_state
        packed, new_state = quantize_4bit(total, blocksize=state.blocksize, quant_type="nf4",
                                          compress_statistics=state.nested)  # fmt: skip
        return torch.equal(packed.reshape(-1), weight.data.reshape(-1)) and torch.equal(
            dequantize_4bit(packed, new_state), dequantize_4bit(weight.data, state)
        )

    layers = a_fp32 = c_bf16 = codes_differ = weights_differ = count = 0
    with torch.no_grad():
        for layer_name, layer in adapters.peft_lora_layers(model).items():
            weight = layer.get_base_layer().weight
            module = layer_name.removeprefix("base_model.model.")
            total = dequantize_4bit(weight.data, weight.quant_state) + layer.get_delta_weight(
                model.active_adapter
            )  # what peft merges: the bf16 weight plus the fp32 update, in fp32
            a_weight = route_a.get_submodule(module).weight
            c_weight = route_c.get_submodule(module).weight
            layers += 1
            a_fp32 += is_nf4_of(a_weight, total.float())
            c_bf16 += is_nf4_of(c_weight, total.to(torch.bfloat16))
            (a_codes, a_values), (c_codes, c_values) = stored(a_weight), stored(c_weight)
            codes_differ += (a_codes != c_codes).sum().item()
            weights_differ += (a_values != c_values).sum().item()
            count += a_codes.numel()
    return {"layers": layers, "a_quantizes_fp32_sum": a_fp32, "c_quantizes_bf16_sum": c_bf16,
            "codes_differ": codes_differ / count,
            "weights_differ": weights_differ / count}  # fmt: skip


@dataclass
class RouteResult:
    """One way to a merged model, measured against the unmerged 4-bit model it was trained as.

    Every model runs teacher-forced on the unmerged model's greedy replies, in fp32 from its
    stored weights (`in_fp32`), so the numbers measure the route's rounding, not the CPU's bf16
    kernels. `top1`: share of reply positions where the route picks the same next token;
    `max_logit_diff`, `mean_logit_diff`: absolute logit differences over those positions;
    `identical`: share of its own greedy replies word for word the unmerged model's; `score`:
    mean rubric score of its replies; `footprint_bytes`: the model as stored in memory (4-bit or
    bf16 weights; the unmerged row adds the fp32 adapter).
    """

    route: str
    how: str
    top1: float
    max_logit_diff: float
    mean_logit_diff: float
    identical: float
    score: float
    footprint_bytes: int


def route_experiment(
    adapter_dir: str | os.PathLike,
    complaints: Sequence[str],
    model_name: str | None = None,
    *,
    max_new_tokens: int = 48,
    routes: Sequence[str] = tuple(ROUTES),
) -> list[RouteResult]:
    """Each route (and first the unmerged 4-bit model itself) against the unmerged 4-bit model
    with the adapter kept separate: the model QLoRA trained, and the yardstick of every row."""
    if not complaints:
        raise ValueError("no complaints: give at least one to compare replies on")
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        raise ValueError(f"routes={list(routes)}: choose from {', '.join(ROUTES)}")
    _, tokenizer = base_model.load(model_name)

    quantized, _ = load_4bit(model_name)
    footprint = adapters.load(quantized, adapter_dir).get_memory_footprint()
    del quantized  # one model in memory at a time
    # W x + (alpha/r) B A x with W the dequantized 4-bit weight: the sums QLoRA trains
    reference = adapters.load(in_fp32(load_4bit(model_name)[0]), adapter_dir)
    ref_replies = generate(reference, tokenizer, complaints, max_new_tokens=max_new_tokens)
    batch, picks = reply_batch(tokenizer, complaints, ref_replies)
    ref_logits = logits(reference, batch)[picks]
    del reference

    def result(route: str, how: str, model: torch.nn.Module, footprint: int) -> RouteResult:
        model = in_fp32(model)
        out = logits(model, batch)[picks]
        replies = generate(model, tokenizer, complaints, max_new_tokens=max_new_tokens)
        diff = (out - ref_logits).abs()
        same = sum(a == b for a, b in zip(replies, ref_replies, strict=True)) / len(complaints)
        top1 = (out.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()
        return RouteResult(route, how, top1, diff.max().item(), diff.mean().item(), same,
                           mean_score(replies, complaints), footprint)  # fmt: skip

    unmerged = adapters.load(in_fp32(load_4bit(model_name)[0]), adapter_dir)
    results = [result("-", UNMERGED, unmerged, footprint)]
    del unmerged
    for route in routes:
        model = merge_route(route, adapter_dir, model_name)
        footprint = model.get_memory_footprint()
        results.append(result(route, ROUTES[route], model, footprint))
        del model  # one model in memory at a time
    return results
