"""Lesson 04, merging adapters (notebook 04, lessons/04-merging.md).

`results` computes everything the lesson shows (cached: one run serves the notebook and the
lesson test); the functions below draw its figures and format its tables from them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from safetensors import safe_open

from peftlab import adapters, base_model, lora, measure, memory, merging, merging_4bit, support_data
from peftlab.quiet import muted
from peftlab.seed import one_thread
from peftlab.tables import markdown_table

SMALL = (7.0, 3.0)
LESSON_STEPS = 100
# The QLoRA adapter of the route study: notebook 03's recipe (r = 8, alpha = 16, every linear
# layer, on the NF4 base), trained for fewer steps to keep the lesson's first run near a minute
# and a half; its 4-bit layers compute in fp32 (see QLORA_COMPUTE).
QLORA_STEPS = 50
# QLoRA computes in bf16 on a GPU. On a CPU, bf16 kernels differ between instruction sets, and
# an adapter trained through them changed up to 3 of the 24 replies between AVX-512 and AVX2
# (and trained five times slower on AVX2); in fp32 the adapter repeats to its last bits, and it
# computes exactly what the route study's fp32 reference computes. The stored NF4 weights are
# the same either way.
QLORA_COMPUTE = torch.float32
LESSON_COMPLAINTS = 24
LESSON_WEIGHTS = ((0.7, 0.3), (0.5, 0.5), (0.3, 0.7))
LESSON_TENANTS = (1, 10, 100)
SCALE_MODEL, SCALE_RANK = "llama-2-7b", 16
# The route figures pass through bf16 and NF4 rounding of an adapter whose last fp32 bits depend
# on the CPU's kernels: a weight near a rounding step can tip either way, so the figures may move
# slightly between CPUs. The lesson test accepts this much, in the unit the table prints: a
# logit difference in its third decimal, half a point of the top-1 share, one reply of the
# lesson's complaints in a share (plus the rounding of a printed whole percent) and in the mean
# rubric score. Every other table and fact must match exactly.
ONE_REPLY_PERCENT = 100 / LESSON_COMPLAINTS + 1
ROUTE_TOLERANCE = {
    "same next token": 0.5,
    "max abs logit diff": 0.02,
    "mean abs logit diff": 0.003,
    "identical replies": ONE_REPLY_PERCENT,
    "rubric score": 1 / LESSON_COMPLAINTS + 0.01,
}
# ties keeps each update's largest entries by magnitude and elects a sign per weight: a near tie
# in the fp32 sums can tip between CPUs and change a reply by a word or two (AVX2 against
# AVX-512: one ties reply, 0.1 on the mean words).
MIX_TOLERANCE = {
    "rubric score": 1 / LESSON_COMPLAINTS + 0.01,
    **dict.fromkeys(merging.CRITERIA, ONE_REPLY_PERCENT),
    "words": 0.5,
}
BF16_BYTES = 2
FP32_BYTES = 4
MB = 1e6


LESSON = "04-merging.md"
NOTEBOOK = "04_merging.ipynb"
# The route figures pass through bf16 and NF4 rounding: see ROUTE_TOLERANCE.
TRAINS = True
TOLERANCE = {
    "routes": ROUTE_TOLERANCE,
    "mixes": MIX_TOLERANCE,
    "route b top1": ROUTE_TOLERANCE["same next token"],
    "route b max diff": ROUTE_TOLERANCE["max abs logit diff"],
    "route b identical": ONE_REPLY_PERCENT,
    "route d top1": ROUTE_TOLERANCE["same next token"],
    "route d identical": ONE_REPLY_PERCENT,
    "4-bit routes top1 low": ROUTE_TOLERANCE["same next token"],
    "4-bit routes top1 high": ROUTE_TOLERANCE["same next token"],
    "4-bit routes identical low": ONE_REPLY_PERCENT,
    "4-bit routes identical high": ONE_REPLY_PERCENT,
    "codes differ": 0.1,
    "weights differ": 1,
}


def results(
    model_name: str | None = None,
    *,
    steps: int = LESSON_STEPS,
    qlora_steps: int = QLORA_STEPS,
    seed: int = 0,
    n_complaints: int = LESSON_COMPLAINTS,
) -> dict:
    """Everything lesson 04 and notebook 04 compute: two adapters trained, the merge check, a
    QLoRA adapter trained and merged along each route of `merging_4bit.ROUTES`, both adapters on
    one base, their mixes and the disk they take. A minute or two on a laptop the first time,
    then read from `lessons.cache` (on one thread, so that it repeats exactly)."""
    from peftlab.lessons.cache import cached

    return cached(
        "lesson04", _compute, files=True, model_name=model_name, steps=steps,
        qlora_steps=qlora_steps, seed=seed, n_complaints=n_complaints,
    )  # fmt: skip


def quotes(results: Mapping) -> dict[str, str]:
    """Every table and number lesson 04 quotes, by region name."""
    sizes, mismatch = results["storage"], results["mismatch"]
    scale = scale_rows()[-1]
    routes = {r.route: r for r in results["routes"]}
    four_bit = [routes[k] for k in ("a", "c", "e")]
    tensors, requantized = results["adapter_tensors"], results["requantized"]
    if tensors["dtypes"] != ["F32"]:
        raise ValueError(f"the lesson's adapters hold {tensors['dtypes']}: its text says fp32")
    return {
        "check": merge_check_table(results["check"]),
        "routes": route_table(results["routes"]),
        "adapters": adapters_table(results["summaries"]),
        "mixes": mixing_table(results["mixes"]),
        "storage": storage_table(results["storage"]),
        "scale": scale_table(scale_rows()),
        "n_complaints": f"{len(results['complaints'])} complaints",
        "steps": str(results["steps"]),
        "qlora steps": str(results["qlora_steps"]),
        # the part of the error that names the layer and both shapes
        "mismatch": f"`{mismatch[mismatch.index('layer ') : mismatch.index(' (lora_B')]}`",
        "adapter_bytes": f"{sizes['adapter_bytes'] // sizes['adapters']:,} bytes",
        "adapter_params": f"{tensors['params']:,}",
        "adapter_fp32_bytes": f"{tensors['params'] * FP32_BYTES:,} bytes",
        "adapter_bf16_bytes": f"{tensors['params'] * BF16_BYTES:,} bytes",
        "base_bytes": f"{sizes['base_bytes']:,} bytes",
        "scale_adapter_mb": f"{scale['adapter_bytes'] / MB:,.0f} MB",
        "scale_adapter_fp32_mb": f"{scale['adapter_fp32_bytes'] / MB:,.0f} MB",
        "scale_base_gb": f"{scale['base_bytes'] / 1e9:.1f} GB",
        "route b top1": f"{routes['b'].top1:.1%}",
        "route b max diff": f"{routes['b'].max_logit_diff:.3f}",
        "route b identical": f"{routes['b'].identical:.0%}",
        "route d top1": f"{routes['d'].top1:.1%}",
        "route d identical": f"{routes['d'].identical:.0%}",
        "4-bit routes top1 low": f"{min(r.top1 for r in four_bit):.1%}",
        "4-bit routes top1 high": f"{max(r.top1 for r in four_bit):.1%}",
        "4-bit routes identical low": f"{min(r.identical for r in four_bit):.0%}",
        "4-bit routes identical high": f"{max(r.identical for r in four_bit):.0%}",
        "requantized layers": (
            f"{requantized['a_quantizes_fp32_sum']} of {requantized['layers']} layers"
            if requantized["a_quantizes_fp32_sum"] == requantized["c_quantizes_bf16_sum"]
            else f"a: {requantized['a_quantizes_fp32_sum']}, c: "
            f"{requantized['c_quantizes_bf16_sum']} of {requantized['layers']} layers"
        ),
        "codes differ": f"{requantized['codes_differ']:.1%}",
        "weights differ": f"{requantized['weights_differ']:.0%}",
        "tolerances": (
            f"±{ROUTE_TOLERANCE['same next token']:g} points on the next-token share, "
            f"±{ROUTE_TOLERANCE['max abs logit diff']:g} on the max difference, "
            f"±{ROUTE_TOLERANCE['mean abs logit diff']:g} on the mean, one reply of "
            f"{LESSON_COMPLAINTS} on each share of replies and on the rubric score, "
            f"±{TOLERANCE['codes differ']:g} points on the share of codes and "
            f"±{TOLERANCE['weights differ']:g} on the share of weights"
        ),
    }


def lesson_complaints(n: int = LESSON_COMPLAINTS) -> list[str]:
    """The lesson's complaint first, then held-out ones: unseen products, problems, phrasings."""
    return [support_data.LESSON_COMPLAINT, *support_data.heldout_complaints(n - 1)]


def merge_check_table(check: merging.MergeCheck) -> str:
    """Base vs adapter vs merged: logit gaps, parameter counts, peft modules left."""
    return markdown_table(("check", "value"), check.rows(), ("---", "---:"))


def latency_table(latency_ms: Mapping[str, float]) -> str:
    """Forward latency per model and relative to the base."""
    base = latency_ms["base"]
    rows = [(n, f"{ms:.1f}", f"{ms / base:.2f}") for n, ms in latency_ms.items()]
    return markdown_table(("model", "forward ms (median)", "/ base"), rows, ("---", "---:", "---:"))


def route_table(results: Sequence[merging_4bit.RouteResult]) -> str:
    """Each way to a merged model, against the unmerged 4-bit model the adapter was trained as."""
    rows = [
        (r.route, r.how, f"{r.top1:.1%}", f"{r.max_logit_diff:.3f}", f"{r.mean_logit_diff:.4f}",
         f"{r.identical:.0%}", f"{r.score:.2f}", f"{r.footprint_bytes / MB:.2f}")
        for r in results
    ]  # fmt: skip
    header = ("route", "how", "same next token", "max abs logit diff", "mean abs logit diff",
              "identical replies", "rubric score", "model in memory (MB)")  # fmt: skip
    return markdown_table(header, rows, ("---", "---") + ("---:",) * 6)


def _summary_cells(s: Mapping[str, float]) -> list[str]:
    return [f"{s['score']:.2f}", *(f"{s[c]:.0%}" for c in merging.CRITERIA), f"{s['words']:.1f}"]


def adapters_table(summaries: Mapping[str, Mapping[str, float]]) -> str:
    """Rubric score, each criterion's pass rate and reply length, per adapter (or base)."""
    header = ("adapter", "rubric score", *merging.CRITERIA, "words")
    rows = [(name, *_summary_cells(s)) for name, s in summaries.items()]
    return markdown_table(header, rows, ("---",) + ("---:",) * (len(header) - 1))


def mixing_table(rows: Sequence[Mapping]) -> str:
    """Rubric summary of each (combination type, polite weight, terse weight) mix."""
    header = ("combination", "weights (polite, terse)", "rubric score", *merging.CRITERIA, "words")
    body = [
        (r["type"], ", ".join(f"{w:g}" for w in r["weights"]), *_summary_cells(r)) for r in rows
    ]
    return markdown_table(header, body, ("---", "---") + ("---:",) * (len(header) - 2))


def storage_table(sizes: Mapping[str, int]) -> str:
    """Weight bytes on disk: one base + N adapters versus N merged models."""
    return base_or_merged_table(
        "what is stored", sizes["adapters"], sizes["base_bytes"], sizes["adapter_bytes"],
        sizes["base_plus_adapters_bytes"], sizes["merged_models_bytes"],
    )  # fmt: skip


def base_or_merged_table(
    heading: str, n: int, base: int, adapters: int, shared: int, merged: int
) -> str:
    """Bytes of one base serving `n` adapters against `n` merged models (on disk, in memory)."""
    rows = [
        ("base model", f"{base:,}"),
        (f"{n} adapters", f"{adapters:,}"),
        (f"one base + {n} adapters", f"{shared:,}"),
        (f"{n} merged models", f"{merged:,}"),
    ]
    return markdown_table((heading, "bytes"), rows, ("---", "---:"))


def scale_rows(
    model: str = SCALE_MODEL, r: int = SCALE_RANK, tenants: Sequence[int] = LESSON_TENANTS
) -> list[dict]:
    """Bytes of N merged bf16 copies vs one bf16 base + N adapters (r on all linear layers),
    the adapters in fp32 (as peft saves them) and in bf16."""
    config = memory.preset(model)
    base = memory.count_params(config) * BF16_BYTES
    params = memory.lora_params(config, r, "all-linear")
    return [
        {"tenants": n, "base_bytes": base, "adapter_bytes": params * BF16_BYTES,
         "adapter_fp32_bytes": params * FP32_BYTES, "shared_bytes": base + n * params * BF16_BYTES,
         "shared_fp32_bytes": base + n * params * FP32_BYTES, "merged_bytes": n * base}
        for n in tenants
    ]  # fmt: skip


def scale_table(rows: Sequence[Mapping]) -> str:
    """The scale rows in GB (1e9 bytes); the saving is against bf16 adapters."""
    body = [
        (str(r["tenants"]), f"{r['merged_bytes'] / 1e9:,.1f}",
         f"{r['shared_fp32_bytes'] / 1e9:,.1f}", f"{r['shared_bytes'] / 1e9:,.1f}",
         f"{r['merged_bytes'] / r['shared_bytes']:.1f}x")
        for r in rows
    ]  # fmt: skip
    header = ("tenants", "N merged models (GB)", "one base + N fp32 adapters (GB)",
              "one base + N bf16 adapters (GB)", "saving (bf16 adapters)")  # fmt: skip
    return markdown_table(header, body, ("---:",) * 5)


def adapter_tensors(adapter_dir: str | os.PathLike) -> dict:
    """What a saved adapter holds: its parameter count and the dtypes of its tensors."""
    params, dtypes = 0, set()
    with safe_open(Path(adapter_dir) / lora.WEIGHTS_NAME, framework="pt") as f:
        for k in f.keys():  # noqa: SIM118
            piece = f.get_slice(k)
            shape = piece.get_shape()
            params += int(torch.tensor(shape).prod()) if shape else 1
            dtypes.add(piece.get_dtype())
    return {"params": params, "dtypes": sorted(dtypes)}


def plot_routes(results: Sequence[merging_4bit.RouteResult]) -> Figure:
    """Mean logit difference from the unmerged 4-bit model, and its replies kept, per route."""
    fig = Figure(figsize=SMALL, layout="constrained")
    err, agree = fig.subplots(1, 2)
    labels = [r.route if r.route != "-" else "unmerged" for r in results]
    palette = ["#888888", "#d62728", "#2ca02c", "#ff7f0e", "#1f77b4", "#9467bd"]
    colors = palette[: len(results)]
    err.bar(labels, [r.mean_logit_diff for r in results], color=colors)
    err.set_title("mean |logit diff| vs unmerged 4-bit + adapter", fontsize=9)
    agree.bar(labels, [100 * r.identical for r in results], color=colors)
    agree.set_ylim(0, 105)
    agree.set_title("same greedy reply as unmerged 4-bit + adapter (%)", fontsize=9)
    for ax in (err, agree):
        ax.set_xlabel("route")
        ax.tick_params(labelsize=8)
    return fig


def _compute(model_name, steps, qlora_steps, seed, n_complaints, scratch: Path) -> dict:
    with one_thread():
        folders = adapters.train_adapters(scratch, model_name=model_name, steps=steps, seed=seed)
        complaints = lesson_complaints(n_complaints)
        with muted():
            model, tokenizer = base_model.load(model_name)
        polite = adapters.load(model, folders["polite"])
        check = merging.check_merge(polite, merging.prompt_batch(tokenizer, complaints))
        merged_dir = merging.save_merged(polite, tokenizer, scratch / "merged-polite")
        qlora = adapters.train_adapters(
            scratch / "qlora", model_name=model_name, behaviours=["polite"], method="qlora",
            steps=qlora_steps, seed=seed, compute_dtype=QLORA_COMPUTE,
        )["polite"]  # fmt: skip
        routes = merging_4bit.route_experiment(qlora, complaints, model_name)
        requantized = merging_4bit.requantization_check(qlora, model_name)
        with muted():
            model, tokenizer = base_model.load(model_name)
        both = adapters.load_many(model, folders)
        replies = merging.replies_per_adapter(both, tokenizer, complaints)
        summaries = {k: merging.reply_summary(v, complaints) for k, v in replies.items()}
        mixes = merging.mixing_rows(both, tokenizer, complaints, list(folders), LESSON_WEIGHTS)
        sizes = measure.storage(base_model.resolve(model_name), list(folders.values()), merged_dir)
        mismatch = wrong_base_error(model.config, folders["polite"])
    return {"adapters": folders, "merged_dir": merged_dir, "check": check, "qlora_adapter": qlora,
            "routes": routes, "requantized": requantized, "summaries": summaries,
            "mixes": mixes, "storage": sizes, "replies": replies, "complaints": complaints,
            "steps": steps, "qlora_steps": qlora_steps, "mismatch": mismatch,
            "adapter_tensors": adapter_tensors(folders["polite"])}  # fmt: skip


def wrong_base_error(config, adapter_dir: str | os.PathLike) -> str:
    """The error `adapters.load` gives for the adapter in `adapter_dir` on a base twice as wide
    as the one it was trained on (`config`'s), the folder named by its last two parts (no
    machine path in a notebook's output)."""
    from transformers import AutoModelForCausalLM

    wider = config.to_dict() | {"hidden_size": 2 * config.hidden_size}
    model = AutoModelForCausalLM.from_config(type(config)(**wider))
    try:
        adapters.load(model, adapter_dir)
    except ValueError as err:
        folder = Path(adapter_dir)
        return str(err).replace(str(folder), f"{folder.parent.name}/{folder.name}")
    raise AssertionError("an adapter for another base was accepted")
