"""Merging a LoRA adapter trained with QLoRA: three routes into a 4-bit base, measured.

QLoRA trains an adapter on a 4-bit NF4 base. Merging it means adding (alpha/r) B A to weights
that are stored in 4 bits, and there are three ways to do it (see ROUTES); each is measured here
against the exact merge into the unquantized base, in logits and in greedy replies.
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
from peftlab.compare import generate
from peftlab.merging import logit_error, logits, prompt_batch
from peftlab.quiet import muted
from peftlab.rubric import mean_score

ROUTES = {
    "a": "merge into the 4-bit weights",
    "b": "dequantize, merge in bf16, keep bf16",
    "c": "dequantize, merge in bf16, requantize to 4-bit",
}
UNMERGED = "4-bit base + adapter, not merged"


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


def load_4bit(name: str | None = None):
    """(model, tokenizer) with every linear layer in NF4, the rest in bf16."""
    with muted():
        return base_model.load(
            name, quantization_config=base_model.nf4_config(), dtype=torch.bfloat16
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


def exact_merge(adapter_dir: str | os.PathLike, name: str | None = None) -> torch.nn.Module:
    """The reference: the unquantized base in bf16 with the adapter merged into it."""
    model, _ = base_model.load(name, dtype=torch.bfloat16)
    return adapters.load(model, adapter_dir).merge_and_unload().eval()


def merge_route(
    route: str, adapter_dir: str | os.PathLike, name: str | None = None
) -> torch.nn.Module:
    """The merged model along one route (see ROUTES) from the 4-bit base and a saved adapter."""
    if route not in ROUTES:
        raise ValueError(f"route={route!r}: choose one of {', '.join(ROUTES)}")
    model, _ = load_4bit(name)
    if route == "a":
        restore_4bit_layout(model)
        peft_model = adapters.load(model, adapter_dir)
        with warnings.catch_warnings():  # peft warns of rounding: measuring it is the point
            warnings.filterwarnings("ignore", message="Merge lora module to 4-bit linear")
            return peft_model.merge_and_unload().eval()
    merged = adapters.load(dequantize_bf16(model), adapter_dir).merge_and_unload().eval()
    if route == "b":
        return merged
    with tempfile.TemporaryDirectory() as tmp, muted():
        merged.save_pretrained(tmp)
        return AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=base_model.nf4_config(), device_map="cpu",
            dtype=torch.bfloat16,
        ).eval()  # fmt: skip


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


@dataclass
class RouteResult:
    """One way to a merged model, measured against the exact bf16 merge.

    Logits and greedy replies are computed in fp32 from each model's stored weights (`in_fp32`),
    so the numbers measure the route's rounding, not the CPU's bf16 kernels. `agreement`: share of
    greedy replies identical to the exact merge's; `agreement_unmerged`: identical to the
    unmerged 4-bit model's (the model QLoRA trains); `score`: mean rubric score;
    `footprint_bytes`: the route's model as it is stored in memory (4-bit or bf16).
    """

    route: str
    how: str
    max_logit_error: float
    mean_logit_error: float
    agreement: float
    agreement_unmerged: float
    score: float
    footprint_bytes: int


def route_experiment(
    adapter_dir: str | os.PathLike,
    complaints: Sequence[str],
    name: str | None = None,
    *,
    max_new_tokens: int = 48,
) -> list[RouteResult]:
    """Each route's logit error vs the exact bf16 merge, and how often its greedy reply matches.

    The first row is the 4-bit base with the adapter still separate: what QLoRA trains. Its
    replies are the yardstick of every row's `agreement_unmerged`.
    """
    if not complaints:
        raise ValueError("no complaints: give at least one to compare replies on")
    _, tokenizer = base_model.load(name)
    batch = prompt_batch(tokenizer, complaints)

    def run(model) -> tuple[torch.Tensor, list[str]]:
        model = in_fp32(model)
        return logits(model, batch), generate(model, tokenizer, complaints,
                                              max_new_tokens=max_new_tokens)  # fmt: skip

    def same(replies: Sequence[str], other: Sequence[str]) -> float:
        return sum(a == b for a, b in zip(replies, other, strict=True)) / len(complaints)

    def unmerged() -> tuple[torch.nn.Module, int]:
        quantized, _ = load_4bit(name)
        footprint = adapters.load(quantized, adapter_dir).get_memory_footprint()
        del quantized  # one model in memory at a time
        # W x + (alpha/r) B A x with W the dequantized 4-bit weight: the sums QLoRA trains
        return adapters.load(in_fp32(load_4bit(name)[0]), adapter_dir), footprint

    def merged(route: str) -> tuple[torch.nn.Module, int]:
        model = merge_route(route, adapter_dir, name)
        return model, model.get_memory_footprint()

    ref_logits, ref_replies = run(exact_merge(adapter_dir, name))

    def result(route: str, how: str, out_logits: torch.Tensor, replies: list[str],
               footprint: int, unmerged_replies: list[str]) -> RouteResult:  # fmt: skip
        err = logit_error(out_logits, ref_logits, batch["attention_mask"])
        return RouteResult(route, how, err["max"], err["mean"], same(replies, ref_replies),
                           same(replies, unmerged_replies), mean_score(replies, complaints),
                           footprint)  # fmt: skip

    model, footprint = unmerged()
    out_logits, unmerged_replies = run(model)
    del model  # one model in memory at a time
    results = [result("-", UNMERGED, out_logits, unmerged_replies, footprint, unmerged_replies)]
    for route, how in ROUTES.items():
        model, footprint = merged(route)
        out_logits, replies = run(model)
        del model
        results.append(result(route, how, out_logits, replies, footprint, unmerged_replies))
    return results
