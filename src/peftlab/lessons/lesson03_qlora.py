"""Figures and tables for the QLoRA lesson (notebook 03, lessons/03-qlora.md).

Figures are matplotlib Figures built without pyplot state; tables are markdown strings, so the
notebook prints them and a test checks that the lesson contains their current text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import nn

from peftlab import base_model, measure, memory, nf4, presets
from peftlab.lessons import lesson01_peft_basics as lesson01
from peftlab.seed import one_thread, seed_everything
from peftlab.tables import markdown_table

SMALL = (6.0, 3.2)
# The weights the lesson quantizes: the embedded model, trained on the support corpus (item 13 of
# issue 14: trained weights, not random ones); RANDOM_MODEL, the same shapes drawn N(0, 0.02^2)
# by transformers' initializer, is the normal baseline NF4 was designed for.
LESSON_MODEL = "peftlab-base"
RANDOM_MODEL = "tiny-random-llama"
LESSON_BLOCKSIZES = (32, 64, 128, 256, 1024, 4096)


LESSON = "03-qlora.md"
NOTEBOOK = "03_qlora.ipynb"
TRAINS = False
TOLERANCE: dict = {}  # the lesson's figures are fp32 arithmetic and byte counts: exact


def results(model_name: str = LESSON_MODEL) -> dict:
    """The lesson's weights (the decoder's linear layers of `model_name`, and of RANDOM_MODEL for
    the normal baseline, built on one thread so they repeat) and the footprint of `model_name`
    loaded four ways."""
    import tempfile

    with one_thread(), tempfile.TemporaryDirectory() as scratch:
        weights = lesson_weights(model_name)
        random_weights = lesson_weights(RANDOM_MODEL)
        footprint = footprint_rows(model_folder(model_name, scratch))
    return {
        "model_name": model_name,
        "weights": weights,
        "random weights": random_weights,
        "footprint": footprint,
    }


def quotes(results: Mapping) -> dict[str, str]:
    """Every table and number lesson 03 and notebook 03 quote, by region name."""
    weights = results["weights"]
    errors = {row["method"]: row["error"] for row in error_rows(weights)}
    nf4_err = errors["NF4"]
    small, large = weight_memory_rows()
    n7 = quantized_weights("llama-2-7b")
    paper = lesson01.paper_figures()
    bits, dq_bits = nf4.bits_per_parameter(64), nf4.bits_per_parameter(64, double_quant=True)
    saving_bits = bits - dq_bits
    blocks = {r["blocksize"]: r for r in blocksize_rows(weights, (32, 64, 4096))}
    trained, random = code_comparison_rows(
        {
            f"trained ({results['model_name']})": weights,
            f"random N(0, 0.02²) ({RANDOM_MODEL})": (results["random weights"]),
        }
    )
    return {
        "code comparison": code_comparison_table([trained, random]),
        "trained kurtosis": f"{trained['kurtosis']:.2f}",
        "heaviest tails": " and ".join(
            f"`{name.removeprefix('model.')}` ({k:.2f})" for name, k in heaviest_tails(weights, 2)
        ),
        "nf4 lowest in": f"{trained['nf4_lowest']} of {trained['layers']} layers",
        "nf4 verdict": (
            "NF4 keeps its lead"
            if trained["nf4_lowest"] == trained["layers"]
            else "NF4 does not win everywhere"
        ),
        "margin vs normal": margin_words(trained, random),
        "random int4/nf4 mse": f"{random['int4_over_nf4']:.2f}x",
        "random fp4/nf4 mse": f"{random['fp4_over_nf4']:.2f}x",
        "memory": weight_memory_table(weight_memory_rows()),
        "levels": levels_table(),
        "errors": error_table(error_rows(weights)),
        "blocksizes": blocksize_table(blocksize_rows(weights)),
        "bits": bits_table(),
        "footprint": footprint_table(results["footprint"]),
        "model": f"`{results['model_name']}`",
        "linear layers": f"{len(weights)} linear layers",
        "weights": f"{sum(w.numel() for w in weights.values()):,} weights",
        "int4/nf4 mse": f"{errors['INT4'].mse / nf4_err.mse:.2f}x",
        "fp4/nf4 mse": f"{errors['FP4'].mse / nf4_err.mse:.2f}x",
        "int4/nf4 max": f"{errors['INT4'].max_error / nf4_err.max_error:.2f}x",
        "dq/plain mse": f"{errors['NF4 + double quant'].mse / nf4_err.mse:.4f}",
        "nf4 relative error": f"{100 * error_rows(weights)[0]['rms_ratio']:.1f}%",
        "error at 32": f"{100 * blocks[32]['rms_ratio']:.2f}%",
        "error at 64": f"{100 * blocks[64]['rms_ratio']:.2f}%",
        "error at 4096": f"{100 * blocks[4096]['rms_ratio']:.2f}%",
        "7b 16-bit weights": f"{small['weights_16bit'] / 1e9:.1f} GB",
        "7b nf4 weights": f"{small['weights_nf4'] / 1e9:.1f} GB",
        "7b qlora": f"{small['qlora_total'] / 1e9:.1f} GB",
        "7b full": f"{small['full_total'] / 1e9:.0f} GB",
        "70b 16-bit weights": f"{large['weights_16bit'] / 1e9:.1f} GB",
        "70b nf4 weights": f"{large['weights_nf4'] / 1e9:.1f} GB",
        "70b qlora": f"{large['qlora_total'] / 1e9:.1f} GB",
        "70b gpu": large["smallest_gpu"],
        "7b gpu": small["smallest_gpu"],
        "70b qlora paper": f"{large['paper_total'] / 1e9:.1f} GB",
        "70b qlora paper floor": f"{large['paper_floor'] / 1e9:.1f} GB",
        "70b gpu paper": large["paper_gpu"],
        "70b qlora gib": f"{large['qlora_total'] / 2**30:.1f} GiB",
        "48 GiB card in GB": f"{48 * 2**30 / 1e9:.1f} GB",
        "7b quantized weights": f"{n7:,}",
        "paper figures": lesson01.paper_table(paper),
        "qlora paper recipe": f"`{lesson01.settings_text(lesson01.QLORA_PAPER_RECIPE)}`",
        "full 16-bit recipe": f"`{lesson01.settings_text(lesson01.FULL_16BIT)}`",
        "65b full 12 bytes": f"{paper['65b full 12 bytes'] / 1e9:.1f} GB",
        "65b qlora recipe": f"{paper['65b qlora recipe'].total / 1e9:.1f} GB",
        "65b qlora peft": f"{paper['65b qlora peft'].total / 1e9:.1f} GB",
        "7b nf4 linears": f"{paper['7b nf4 linears'] / 1e6:,.0f} MB",
        "7b constants dq": f"{paper['7b constants dq'] / 1e6:,.0f} MB",
        "7b constants plain": f"{paper['7b constants plain'] / 1e6:,.0f} MB",
        "7b embed head bf16": f"{2 * paper['7b embed head'] / 1e6:,.0f} MB",
        "7b embed head fp32": f"{4 * paper['7b embed head'] / 1e6:,.0f} MB",
        "7b base largest": f"{paper['7b base peft plain'] / 1e6:,.0f} MB",
        "7b base smallest": f"{paper['7b base paper script'] / 1e6:,.0f} MB",
        "7b paper gap": f"{(5048e6 - paper['7b base peft plain']) / 1e6:,.0f} MB",
        "7b dq saving": f"{saving_bits * n7 / 8 / 1e6:,.0f} MB",
        # notebook 03's prose: bits per weight with blocks of 64, plain and double-quantized
        "notebook: plain bits": f"{bits:.1f} bits",
        "notebook: dq bits": f"{dq_bits:.3f} bits",
        "notebook: dq bits, rounded": f"{dq_bits:.2f} bits",
        "notebook: dq constants": f"{dq_bits - 4:.3f} bits",
        "notebook: dq saving": f"{bits - dq_bits:.3f} bits",
        "notebook: qlora steps": f"{QLORA_DEMO['steps']} steps",
    }


def lesson_model(model_name: str = LESSON_MODEL) -> nn.Module:
    """The fp32 model the lesson measures: a `peftlab.memory` preset is built with random
    weights (seed 0); any other model is loaded with `peftlab.base_model.load` (the embedded
    model is "peftlab-base")."""
    if model_name in presets.PRESETS and model_name != presets.EMBEDDED_PRESET:
        from transformers import AutoModelForCausalLM

        seed_everything(0)
        return AutoModelForCausalLM.from_config(memory.preset(model_name))
    from peftlab import base_model

    return base_model.load(model_name)[0]


def model_folder(model_name: str, scratch: str | os.PathLike) -> str:
    """A folder `from_pretrained` can load `model_name` from: the model's own, or for a random
    preset, the model saved into `scratch`."""
    if model_name in presets.PRESETS and model_name != presets.EMBEDDED_PRESET:
        lesson_model(model_name).save_pretrained(scratch)
        return str(scratch)
    from peftlab import base_model

    return base_model.resolve(model_name)


def lesson_weights(model: nn.Module | str = LESSON_MODEL) -> dict[str, torch.Tensor]:
    """The weight of every linear layer in the decoder (what QLoRA quantizes), by module name."""
    if isinstance(model, str):
        model = lesson_model(model)
    return {
        module_name: module.weight.detach().float()
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not module_name.endswith("lm_head")
    }


def levels_table() -> str:
    """The 16 levels of NF4, FP4 and INT4 by stored 4-bit pattern."""
    rows = [
        [f"{i}", f"`{i:04b}`", f"{nf4.NF4_CODE[i]:+.4f}", f"{nf4.FP4_CODE[i]:+.4f}"]
        + [f"{nf4.INT4_CODE[i]:+.4f}"]
        for i in range(16)
    ]
    return markdown_table(
        ["index", "bits", "NF4", "FP4", "INT4"], rows, ["--:", ":-:"] + ["--:"] * 3
    )


def error_rows(weights: Mapping[str, torch.Tensor], blocksize: int = 64) -> list[dict]:
    """Round-trip error of each 4-bit code on `weights` (and NF4 with double quantization)."""
    rms = nf4.weights_rms(weights)
    rows = []
    for method, dq in [("nf4", False), ("nf4", True), ("fp4", False), ("int4", False)]:
        err = nf4.combined_error(weights, method, blocksize, dq)
        name = method.upper() + (" + double quant" if dq else "")
        rows.append(dict(method=name, rms_ratio=err.mse**0.5 / rms, error=err))
    return rows


def kurtosis(weights: Mapping[str, torch.Tensor]) -> float:
    """Mean of z^4 over all weights, each standardized within its own layer: 3 for a normal,
    more when the tails are heavier (outliers that stretch a block's absmax)."""
    total, count = 0.0, 0
    for w in weights.values():
        z = (w - w.mean()) / w.std(unbiased=False)
        total += z.double().pow(4).sum().item()
        count += w.numel()
    return total / count


def heaviest_tails(weights: Mapping[str, torch.Tensor], n: int = 2) -> list[tuple[str, float]]:
    """The `n` layers whose weights have the largest kurtosis, with it, largest first."""
    each = {name: kurtosis({name: w}) for name, w in weights.items()}
    return sorted(each.items(), key=lambda item: -item[1])[:n]


def layers_where_lowest(weights: Mapping[str, torch.Tensor], method: str = "nf4") -> int:
    """How many layers `method` quantizes (blocks of 64) with a lower MSE than every other code."""
    others = [m for m in ("nf4", "fp4", "int4") if m != method]
    wins = 0
    for w in weights.values():
        own = nf4.quantization_error(w, method).mse
        wins += all(own < nf4.quantization_error(w, m).mse for m in others)
    return wins


def code_comparison_rows(weight_sets: Mapping[str, Mapping[str, torch.Tensor]]) -> list[dict]:
    """For each named set of weights: its kurtosis, INT4's and FP4's MSE over NF4's (all layers
    pooled, blocks of 64) and the layers where NF4's MSE is the lowest of the three codes."""
    rows = []
    for label, weights in weight_sets.items():
        errors = {m: nf4.combined_error(weights, m, 64).mse for m in ("nf4", "fp4", "int4")}
        rows.append(
            dict(
                weights=label,
                kurtosis=kurtosis(weights),
                int4_over_nf4=errors["int4"] / errors["nf4"],
                fp4_over_nf4=errors["fp4"] / errors["nf4"],
                nf4_lowest=layers_where_lowest(weights),
                layers=len(weights),
            )
        )
    return rows


def margin_words(trained: Mapping, baseline: Mapping, within: float = 0.05) -> str:
    """How NF4's lead on `trained` weights compares with `baseline`'s: "close to" when INT4's and
    FP4's MSE ratios both lie within `within` (relative) of the baseline's, else larger/smaller."""
    keys = ("int4_over_nf4", "fp4_over_nf4")
    change = [trained[k] / baseline[k] - 1 for k in keys]
    if all(abs(c) <= within for c in change):
        return "close to"
    if all(c > 0 for c in change):
        return "larger than"
    if all(c < 0 for c in change):
        return "smaller than"
    return "mixed against"


def code_comparison_table(rows: Sequence[Mapping]) -> str:
    """Markdown from `code_comparison_rows`."""
    lines = [
        [
            r["weights"],
            f"{r['kurtosis']:.2f}",
            f"{r['int4_over_nf4']:.2f}x",
            f"{r['fp4_over_nf4']:.2f}x",
            f"{r['nf4_lowest']} of {r['layers']}",
        ]
        for r in rows
    ]
    header = [
        "weights",
        "kurtosis (normal: 3)",
        "INT4 MSE / NF4 MSE",
        "FP4 MSE / NF4 MSE",
        "layers where NF4's MSE is lowest",
    ]
    return markdown_table(header, lines, [":--"] + ["--:"] * 4)


def error_table(rows: Sequence[Mapping]) -> str:
    """Markdown from `error_rows`: bits per parameter, MSE, RMS error / RMS weight, max error."""
    lines = [
        [
            r["method"],
            f"{r['error'].bits_per_parameter:.3f}",
            f"{r['error'].mse:.3e}",
            f"{100 * r['rms_ratio']:.1f}%",
            f"{r['error'].max_error:.4f}",
        ]
        for r in rows
    ]
    header = ["code", "bits / parameter", "MSE", "RMS error / RMS weight", "max error"]
    return markdown_table(header, lines, [":--"] + ["--:"] * 4)


def blocksize_rows(
    weights: Mapping[str, torch.Tensor], blocksizes: Sequence[int] = LESSON_BLOCKSIZES
) -> list[dict]:
    """NF4 error and storage cost for each blocksize, with and without double quantization."""
    rms = nf4.weights_rms(weights)
    rows = []
    for b in blocksizes:
        plain = nf4.combined_error(weights, "nf4", b)
        doubled = nf4.combined_error(weights, "nf4", b, double_quant=True)
        rows.append(
            dict(
                blocksize=b,
                bits=plain.bits_per_parameter,
                bits_dq=doubled.bits_per_parameter,
                rms_ratio=plain.mse**0.5 / rms,
                rms_ratio_dq=doubled.mse**0.5 / rms,
            )
        )
    return rows


def blocksize_table(rows: Sequence[Mapping]) -> str:
    """Markdown from `blocksize_rows`: bits per parameter and NF4 error for each blocksize."""
    lines = [
        [
            str(r["blocksize"]),
            f"{r['bits']:.4f}",
            f"{r['bits_dq']:.4f}",
            f"{100 * r['rms_ratio']:.2f}%",
            f"{100 * r['rms_ratio_dq']:.2f}%",
        ]
        for r in rows
    ]
    header = ["blocksize", "bits / param", "with double quant", "NF4 error", "NF4 + DQ error"]
    return markdown_table(header, lines, ["--:"] * 5)


def quantized_weights(model: str = "llama-2-7b") -> int:
    """How many weights QLoRA stores in NF4: the decoder's linear layers only (the embeddings,
    norms and output head stay in 16 or 32 bits)."""
    return sum(t.count * t.d_in * t.d_out for t in memory.linear_layers(model))


def bits_table(n_params: int | None = None) -> str:
    """What the block constants cost per parameter, and in bytes for the weights Llama-2-7B
    quantizes (its linear layers: the embeddings and head are not quantized)."""
    n = n_params if n_params is not None else quantized_weights("llama-2-7b")
    plain = nf4.bits_per_parameter(64) - 4
    doubled = nf4.bits_per_parameter(64, double_quant=True) - 4
    rows = [
        ["one fp32 absmax per 64 weights", "32 / 64", f"{plain}", f"{plain * n / 8 / 1e6:,.0f}"],
        [
            "8-bit absmax per 64, fp32 per 64 x 256",
            "8 / 64 + 32 / (64 x 256)",
            f"{doubled}",
            f"{doubled * n / 8 / 1e6:,.0f}",
        ],
        [
            "saving",
            "",
            f"{plain - doubled}",
            f"{(plain - doubled) * n / 8 / 1e6:,.0f}",
        ],
    ]
    header = ["constants", "bits", "bits / parameter", f"MB for {n / 1e9:.2f}B quantized weights"]
    return markdown_table(header, rows, [":--", ":--", "--:", "--:"])


def weight_memory_rows(names: Sequence[str] = ("llama-2-7b", "llama-2-70b")) -> list[dict]:
    """Weights in 16 bits and in NF4, and training totals from `peftlab.memory`: full mixed AdamW
    vs QLoRA r=64 on all linear layers, batch 1 x 512 tokens, gradient checkpointing on both;
    QLoRA as peft runs it (fp32 adapters, embeddings and head) and as the QLoRA paper's script
    does (`lesson01.QLORA_PAPER_RECIPE`: bf16 adapters, 16-bit embeddings, paged AdamW)."""
    rows = []
    for name in names:
        config = memory.preset(name)
        n = memory.count_params(config)
        qlora = memory.estimate(
            config,
            "qlora",
            r=64,
            target_modules="all-linear",
            seq_len=512,
            gradient_checkpointing=True,
        )
        full = memory.estimate(config, "full", seq_len=512, gradient_checkpointing=True)
        paper = memory.estimate(config, **lesson01.QLORA_PAPER_RECIPE)
        rows.append(
            dict(
                name=name,
                params=n,
                weights_16bit=2 * n,
                weights_nf4=qlora.frozen_weights + qlora.quantization_constants,
                full_total=full.total,
                qlora_total=qlora.total,
                smallest_gpu=lesson01.card_cell(qlora.total),
                paper_total=paper.total,
                paper_floor=paper.gpu_floor,
                paper_gpu=lesson01.card_cell(paper.total),
            )
        )
    return rows


def weight_memory_table(rows: Sequence[Mapping]) -> str:
    """Markdown from `weight_memory_rows`, sizes in GB (1e9 bytes)."""
    lines = [
        [
            r["name"],
            f"{r['params'] / 1e9:.2f}B",
            f"{r['weights_16bit'] / 1e9:.1f}",
            f"{r['weights_nf4'] / 1e9:.1f}",
            f"{r['full_total'] / 1e9:.0f}",
            f"{r['qlora_total'] / 1e9:.1f}",
            r["smallest_gpu"],
            f"{r['paper_total'] / 1e9:.1f}",
            r["paper_gpu"],
        ]
        for r in rows
    ]
    header = [
        "model",
        "parameters",
        "16-bit weights (GB)",
        "4-bit base, as peft runs it (GB)",
        "full fine-tune (GB)",
        "QLoRA, peft (GB)",
        "smallest GPU",
        "QLoRA, paper's recipe (GB)",
        "smallest GPU ",
    ]
    return markdown_table(header, lines, [":--"] + ["--:"] * 5 + [":--", "--:", ":--"])


def level_shares(w: torch.Tensor, method: str = "nf4", blocksize: int = 64) -> torch.Tensor:
    """Fraction of the weights stored at each of the 16 levels (sorted low to high)."""
    code = nf4.CODES[method]
    packed, _ = nf4.quantize_4bit(w, code, blocksize)
    indices = nf4.unpack_nibbles(packed, w.numel()).long()
    values = code[indices]
    levels = code.unique()
    return torch.stack([(values == v).float().mean() for v in levels])


def normalized_weights(w: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """Each weight divided by its block's absmax: what the 4-bit code actually has to cover."""
    _, scaled = nf4.absmax_scale(w.reshape(-1).float(), blocksize)
    return scaled


def plot_levels_over_histogram(w: torch.Tensor, blocksize: int = 64) -> Figure:
    """Left: the block-normalized weights with the 16 NF4 levels (and INT4's, dotted).
    Right: the share of weights each level receives, NF4 vs INT4."""
    fig = Figure(figsize=(10, 3.4))
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    left.hist(normalized_weights(w, blocksize).numpy(), bins=81, color="#9bb7d4", density=True)
    for i, level in enumerate(nf4.NF4_CODE.tolist()):
        left.axvline(level, color="#c0392b", linewidth=1, label="NF4 levels" if i == 0 else None)
    for i, level in enumerate(nf4.INT4_CODE.unique().tolist()):
        left.axvline(
            level,
            color="black",
            linestyle=":",
            linewidth=0.8,
            label="INT4 levels" if i == 0 else None,
        )
    left.set_xlabel(f"weight / absmax of its block of {blocksize}")
    left.set_ylabel("density")
    left.set_title("NF4 puts its levels where the weights are")
    left.legend(fontsize="small", loc="upper right")

    for method, color in (("nf4", "#c0392b"), ("int4", "gray")):
        shares = level_shares(w, method, blocksize)
        right.plot(
            range(len(shares)),
            (100 * shares).tolist(),
            marker="o",
            color=color,
            label=method.upper(),
        )
    right.set_xlabel("level (lowest to highest)")
    right.set_ylabel("% of weights")
    right.set_title("How evenly the levels are used")
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_blocksize_tradeoff(rows: Sequence[Mapping]) -> Figure:
    """Error and bits per parameter against blocksize (rows from `blocksize_rows`)."""
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    sizes = [r["blocksize"] for r in rows]
    left.plot(sizes, [100 * r["rms_ratio"] for r in rows], marker="o", label="NF4")
    left.plot(sizes, [100 * r["rms_ratio_dq"] for r in rows], marker=".", label="NF4 + DQ")
    left.set_ylabel("RMS error / RMS weight (%)")
    right.plot(sizes, [r["bits"] for r in rows], marker="o", label="fp32 absmax")
    right.plot(sizes, [r["bits_dq"] for r in rows], marker=".", label="double quantization")
    right.axhline(4, color="gray", linestyle=":", label="4 bits, no constants")
    right.set_ylabel("bits per parameter")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("blocksize")
        ax.legend(fontsize="small")
    left.set_title("Bigger blocks: more error")
    right.set_title("Smaller blocks: more constants")
    fig.tight_layout()
    return fig


def footprint_rows(folder: str | os.PathLike) -> list[dict]:
    """Load the model in `folder` as fp32, bf16, NF4 and NF4 with double quantization; bytes its
    tensors hold (weights and quantization constants) beside `peftlab.memory`'s prediction."""
    from transformers import AutoModelForCausalLM

    formats = [
        ("fp32", torch.float32, None),
        ("bf16", torch.bfloat16, None),
        ("NF4", torch.bfloat16, False),
        ("NF4 + double quant", torch.bfloat16, True),
    ]
    rows = []
    for label, dtype, double_quant in formats:
        kwargs: dict = {"dtype": dtype}
        if double_quant is not None:
            kwargs["device_map"] = "cpu"
            kwargs["quantization_config"] = base_model.nf4_config(double_quant)
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        held = measure.held_bytes(model)
        measured = sum(held[k] for k in ("frozen_weights", "trainable_weights"))
        measured += held["quantization_constants"]
        precision = "fp32" if dtype == torch.float32 else "bf16"
        if double_quant is None:
            predicted = memory.estimate(model.config, "lora", precision=precision).frozen_weights
        else:
            estimate = memory.estimate(  # as loaded: no prepare_model_for_kbit_training yet
                model.config,
                "qlora",
                precision=precision,
                double_quant=double_quant,
                prepare_kbit=False,
            )
            predicted = estimate.frozen_weights + estimate.quantization_constants
        rows.append(dict(format=label, measured=measured, predicted=predicted))
    return rows


def footprint_table(rows: Sequence[Mapping]) -> str:
    """Markdown from `footprint_rows`."""
    lines = [
        [
            r["format"],
            f"{r['measured']:,}",
            f"{r['predicted']:,}",
            f"{100 * (r['measured'] / r['predicted'] - 1):+.2f}%",
        ]
        for r in rows
    ]
    header = ["stored as", "bytes held", "peftlab.memory predicts", "difference"]
    return markdown_table(header, lines, [":--", "--:", "--:", "--:"])


QLORA_DEMO = {"complaints": 12, "steps": 150}  # notebook 03, section 11


def qlora_demo() -> dict:
    """Notebook 03's section 11: `peftlab demo --method qlora` on the embedded model (the base in
    NF4, LoRA on every linear layer, the demo's Trainer path) answering the first held-out
    complaints before and after its steps (`QLORA_DEMO`); `Comparison.to_dict()`. About a
    minute cold, then read from `lessons.cache`: the notebook and the test share one run."""
    from peftlab.lessons.cache import cached

    return cached("lesson03-qlora-demo", _qlora_demo, model_name=LESSON_MODEL, **QLORA_DEMO)


def _qlora_demo(model_name: str, complaints: int, steps: int) -> dict:
    from peftlab import compare, support_data

    texts = support_data.heldout_complaints()[:complaints]
    run = compare.before_after(texts, model_name=model_name, method="qlora", steps=steps,
                               run_name=None, progress=False)  # fmt: skip
    return run.to_dict()
