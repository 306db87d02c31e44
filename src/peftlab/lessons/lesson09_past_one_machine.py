"""Lesson 09, past one machine (notebook 09, lessons/09-past-one-machine.md).

Training on several devices (DDP, ZeRO stages, FSDP: `peftlab.sharding` for the memory,
`peftlab.ddp` for the script under `accelerate launch`) and serving many adapters from one base
(`peftlab.serving`). `results` computes everything the lesson shows: the arithmetic at once, the
runs (a fine-tune on one and on two processes, two small adapters served together) once, through
`lessons.cache`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from peftlab import (
    activation_memory,
    adapters,
    base_model,
    ddp,
    memory,
    serving,
    sharding,
    support_data,
)
from peftlab.merging import below
from peftlab.quiet import muted
from peftlab.seed import one_thread
from peftlab.tables import markdown_table

# The losses of the fine-tune depend, in their last digits, on the CPU's float32 kernels.
LOSS_DIGITS = 0.002
DDP_NOISE = 1e-5  # float32 rounding of a sum taken in another order

GB = 1e9
GIB = 2**30  # a card sold as "80 GB" holds 80 GiB (presets.GPUS uses the same convention)
SMALL = (7.0, 3.2)

# The ZeRO paper's example (Rajbhandari et al., arXiv 1910.02054, Figure 1): 7.5B parameters
# on 64 GPUs, model states only, K = 12; GB per device as printed in the figure.
ZERO_PARAMS = 7.5e9
ZERO_DEVICES = 64
ZERO_FIGURE_1 = {"ddp": 120.0, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9}

BIG_MODEL = "llama-2-70b"
BIG_DEVICES = (8, 16)
BIG_CARD_GIB = 80
BIG_SEQ_LEN = 2048  # one 2,048-token sequence per device, gradient checkpointing on
BIG_PREFETCH = "BACKWARD_PRE"  # FSDP's default, and configs/fsdp-qlora.yaml's
QLORA_CARD_GIB = 24
# What configs/fsdp-qlora.yaml's recipe trains: the model loaded with dtype=bfloat16 and the 4-bit
# weights stored as bf16 (FSDP flattens one dtype per unit), so embeddings, norms and head stay
# bf16 (no prepare_model_for_kbit_training: TRL skips it for a sharded QLoRA model), bf16
# adapters (TRL casts a quantized model's adapters to bf16), and torch's AdamW, whose moments
# take the dtype of the parameter (bf16). r=16 on every linear layer, one 512-token sequence.
QLORA_RECIPE = dict(
    method="qlora", r=16, target_modules="all-linear", precision="bf16", prepare_kbit=False,
    batch_size=1, seq_len=512, gradient_checkpointing=True,
)  # fmt: skip
QLORA_SETUPS = (("ddp", 1), ("ddp", 2), ("fsdp", 2))
# Beyond data parallelism (section 8): tensor parallelism over one 8-GPU node, a pipeline of
# 8 stages fed 32 micro-batches, context parallelism over 4 GPUs for a 32,768-token sequence.
TP_DEGREE = 8
PP_STAGES, PP_MICRO_BATCHES = 8, 32
CP_DEGREE, CP_SEQ_LEN = 4, 32768
STRATEGY_ORDER = ("ddp", "zero1", "zero2", "zero3")
STRATEGY_LABEL = {"ddp": "DDP", "zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "ZeRO-3 / FSDP",
                  "fsdp": "FSDP (FULL_SHARD)"}  # fmt: skip

DDP_ARGS = ("--steps", "6", "--global-batch-size", "8", "--examples", "48")
LESSON_STEPS = 60
N_ROWS = 6
ROW_ADAPTERS = ("polite", "terse", serving.BASE, "polite", "terse", serving.BASE)


LESSON = "09-past-one-machine.md"
NOTEBOOK = "09_past_one_machine.ipynb"
TRAINS = True
TOLERANCE = {
    "ddp loss first": LOSS_DIGITS,
    "ddp loss last": LOSS_DIGITS,
    "ddp table": {"loss, 1 process": LOSS_DIGITS, "loss, 2 processes": LOSS_DIGITS},
}


# --- runs -------------------------------------------------------------------------------------
def results(*, steps: int = LESSON_STEPS, seed: int = 0) -> dict:
    """Everything lesson 09 and notebook 09 show: the arithmetic, the fine-tune run on one and
    on two processes, and two adapters served from one base. The runs take about a minute the
    first time, then come from `lessons.cache`."""
    from peftlab.lessons.cache import cached

    runs = cached("lesson09", _compute, files=True, steps=steps, seed=seed)
    return {
        "zero": zero_rows(), "big": big_rows(), "big_full": big_full(),
        "min_devices": big_min_devices(), "min_devices_gb": big_min_devices(BIG_CARD_GIB * GB),
        "big_gathered": big_gathered(), "min_real": big_min_devices_real(),
        "qlora": qlora_rows(), "qlora_full": qlora_big(), "qlora_layer": qlora_layer_bytes(),
        "parallel": parallel_figures(), **runs,
    }  # fmt: skip


def quotes(results: Mapping) -> dict[str, str]:
    """Every number and table lesson 09 quotes, by region name."""
    big = {r["strategy"]: r for r in results["big"]}
    full, q = results["big_full"], results["qlora_full"]
    qrows = {(r["strategy"], r["devices"]): r["bytes"] for r in results["qlora"]}
    fsdp2 = qrows[("fsdp", 2)]
    need = results["min_devices"]
    card = BIG_CARD_GIB * GIB
    zero3_at_min = sharding.per_device(full, need["zero3"], "zero3").total
    qlora_gathered = sharding.gathered_bytes(results["qlora_layer"])
    real_share = sharding.per_device(full, results["min_real"], "zero3").total
    par = results["parallel"]
    [single], ranks = results["ddp_one"], results["ddp_two"]
    sizes, swap = results["memory"], results["swap"]
    seven_b = memory.preset("llama-2-7b")
    seven_b_share = memory.lora_params(seven_b, 8) / memory.count_params(seven_b)
    zero_gap = max(abs(r["gb"] - r["paper"]) / r["paper"] for r in results["zero"])
    same = sum(m == o for m, o in zip(results["mixed"], results["own"], strict=True))
    return {
        "zero table": zero_table(results["zero"]),
        "zero largest gap": f"{zero_gap:.1%}",
        "big table": big_table(results["big"]),
        "big params": f"{memory.count_params(memory.preset(BIG_MODEL)) / 1e9:.1f}B",
        "big states": f"{sharding.model_states(full) / GB:,.0f} GB",
        "big activations": f"{full.activations / GB:.1f} GB",
        "big weights": f"{2 * memory.count_params(memory.preset(BIG_MODEL)) / GB:.0f} GB",
        "qlora base": f"{(q.frozen_weights + q.quantization_constants) / GB:.1f} GB",
        "7b adapter share": f"{seven_b_share:.2%}",
        "zero per stage": ", ".join(f"{r['gb']:.1f}" for r in results["zero"]) + " GB",
        "ddp examples": str(sum(len(b) for r in ranks for b in r["batches"])),
        "big zero3 16": f"{big['zero3'][16] / GB:.1f} GB",
        "big zero3 8": f"{big['zero3'][8] / GB:.1f} GB",
        "min zero3": str(need["zero3"]),
        "min zero2": str(need["zero2"]) if need["zero2"] else "none",
        "min zero1": str(need["zero1"]) if need["zero1"] else "none",
        "qlora table": qlora_table(results["qlora"]),
        "qlora one": f"{qrows[('ddp', 1)] / GB:.1f} GB",
        "qlora fsdp": f"{fsdp2 / GB:.1f} GB",
        "qlora headroom": f"{(QLORA_CARD_GIB * GIB - fsdp2 - qlora_gathered) / GB:.1f} GB",
        "qlora layer": f"{results['qlora_layer'] / GB:.2f} GB",
        "qlora gathered": f"{qlora_gathered / GB:.1f} GB",
        "min zero3 gb": str(results["min_devices_gb"]["zero3"]),
        "zero3 14 spare": f"{(card - zero3_at_min) / GB:.1f} GB",
        "big layer": f"{2 * layer_params() / GB:.2f} GB",
        "big gathered": f"{results['big_gathered'] / GB:.1f} GB",
        "min zero3 real": str(results["min_real"]),
        "min real spare": f"{(card - real_share - results['big_gathered']) / GB:.1f} GB",
        "big zero3 16 spare": f"{(card - big['zero3'][16] - results['big_gathered']) / GB:.1f} GB",
        "tp weights": f"{par['tp weights'] / GB:.1f} GB",
        "pp bubble": f"{par['pp bubble']:.0%}",
        "cp activations": f"{par['cp activations'] / GB:.1f} GB",
        "cp activations per gpu": f"{par['cp activations per gpu'] / GB:.1f} GB",
        "ddp table": ddp_table(results),
        "ddp gap": below(ddp_max_difference(results), DDP_NOISE),
        "ddp tolerance": f"{ddp.LOSS_TOLERANCE:.0e}".replace("e-0", "e-"),
        "ddp loss first": f"{single['losses'][0][1]:.4f}",
        "ddp loss last": f"{single['losses'][-1][1]:.4f}",
        "ddp steps": str(len(single["losses"])),
        "ddp writers": str(sum(r["wrote_adapter"] for r in ranks)),
        "serving memory": serving_memory_table(sizes),
        "serving same": f"{same} of {len(results['mixed'])}",
        "serving saving": f"{sizes['merged_bytes'] / sizes['shared_bytes']:.2f}x",
        "adapter share": f"{sizes['adapter_bytes'] / sizes['adapters'] / sizes['base_bytes']:.1%}",
        "swap bytes": f"{swap['with'] - swap['before']:,} bytes",
        "swap freed": "yes" if swap["after"] == swap["before"] else "no",
        "adapter steps": str(results["steps"]),
    }


# --- arithmetic -------------------------------------------------------------------------------
def zero_example() -> memory.Breakdown:
    """memory.estimate's bytes per parameter for mixed-precision AdamW (2 + 2 + K = 12), applied
    to the paper's 7.5B parameters, activations left out as Figure 1 leaves them."""
    config = memory.preset("llama-2-7b")
    params = memory.count_params(config)
    full = memory.estimate(config, "full")
    terms = {k: round(v / params * ZERO_PARAMS) for k, v in dataclasses.asdict(full).items()}
    return memory.Breakdown(**(terms | {"activations": 0}))


def zero_rows() -> list[dict]:
    """Per-device GB of the ZeRO example for each stage, beside the paper's figure."""
    example = zero_example()
    return [
        {"strategy": s, "gb": sharding.per_device(example, ZERO_DEVICES, s).total / GB,
         "paper": ZERO_FIGURE_1[s]}
        for s in STRATEGY_ORDER
    ]  # fmt: skip


def big_full() -> memory.Breakdown:
    """Full fine-tuning of Llama-2-70B, mixed-precision AdamW, one sequence per device."""
    return memory.estimate(
        BIG_MODEL, "full", batch_size=1, seq_len=BIG_SEQ_LEN, gradient_checkpointing=True
    )


def big_rows() -> list[dict]:
    """Per-device bytes of the 70B full fine-tune, each strategy on 8 and 16 devices."""
    full = big_full()
    return [
        {"strategy": s, **{n: sharding.per_device(full, n, s).total for n in BIG_DEVICES}}
        for s in STRATEGY_ORDER
    ]


def big_min_devices(capacity: int = BIG_CARD_GIB * GIB) -> dict[str, int | None]:
    """The fewest GPUs of `capacity` bytes (an "80 GB" card, 80 GiB) on which each strategy's
    model states and activations fit the 70B full fine-tune."""
    full = big_full()
    return {s: sharding.min_devices(full, s, capacity) for s in STRATEGY_ORDER}


def layer_params(name: str = BIG_MODEL) -> int:
    """One decoder layer's parameters, what one FSDP unit holds under TRANSFORMER_BASED_WRAP:
    its linear weights and its two RMSNorm weights."""
    config = memory.preset(name)
    linear = sum(t.count * t.d_in * t.d_out for t in memory.linear_layers(config))
    return linear // config.num_hidden_layers + 2 * config.hidden_size


def big_gathered() -> int:
    """Bytes FSDP holds unsharded at its peak for the 70B full fine-tune: bf16 layers (its
    parameters and gradients are 16-bit), BACKWARD_PRE prefetch."""
    return sharding.gathered_bytes(2 * layer_params(), BIG_PREFETCH)


def big_min_devices_real() -> int | None:
    """The fewest 80 GiB GPUs for the 70B full fine-tune under ZeRO-3/FSDP once the units
    FSDP gathers at its peak fit beside the shard."""
    return big_min_devices(BIG_CARD_GIB * GIB - big_gathered())["zero3"]


def qlora_big() -> memory.Breakdown:
    """QLoRA on Llama-2-70B as configs/fsdp-qlora.yaml's recipe runs it (QLORA_RECIPE)."""
    return memory.estimate(BIG_MODEL, **QLORA_RECIPE)


def qlora_rows() -> list[dict]:
    q = qlora_big()
    return [
        {"strategy": s, "devices": n, "bytes": sharding.per_device(q, n, s).total}
        for s, n in QLORA_SETUPS
    ]


def qlora_layer_bytes() -> int:
    """One decoder layer's 4-bit weights: what FSDP gathers on every GPU at a time."""
    config = memory.preset(BIG_MODEL)
    linear = sum(t.count * t.d_in * t.d_out for t in memory.linear_layers(config))
    return int(linear / config.num_hidden_layers * memory.NF4_BYTES_PER_PARAM)


def parallel_figures() -> dict[str, float]:
    """Section 8's arithmetic: Llama-2-70B's bf16 weights over a tensor-parallel group, the
    pipeline bubble (Narayanan et al., 2021: (p - 1) / m of the ideal time), and the activations
    of one long sequence with gradient checkpointing, whole and over a context-parallel group."""
    config = memory.preset(BIG_MODEL)
    activations = activation_memory.activation_bytes(
        config, 1, CP_SEQ_LEN, gradient_checkpointing=True
    )
    return {
        "tp weights": 2 * memory.count_params(config) / TP_DEGREE,
        "pp bubble": (PP_STAGES - 1) / PP_MICRO_BATCHES,
        "cp activations": activations,
        "cp activations per gpu": activations / CP_DEGREE,
    }


# --- tables and figures -----------------------------------------------------------------------
def zero_table(rows: Sequence[Mapping]) -> str:
    body = [
        (STRATEGY_LABEL[r["strategy"]], sharding.ZERO_NAMES[r["strategy"]], f"{r['gb']:.1f}",
         f"{r['paper']:.1f}")
        for r in rows
    ]  # fmt: skip
    header = ("strategy", "ZeRO's name", "GB per GPU (computed)", "GB per GPU (paper)")
    return markdown_table(header, body, ("---", "---", "---:", "---:"))


def _fits(nbytes: int, gib: int) -> str:
    return "yes" if nbytes <= gib * GIB else "no"


def big_table(rows: Sequence[Mapping]) -> str:
    header = ("strategy",)
    for n in BIG_DEVICES:
        header += (f"{n} GPUs: GB per GPU", f"fits {BIG_CARD_GIB} GB")
    body = []
    for r in rows:
        cells = (STRATEGY_LABEL[r["strategy"]],)
        for n in BIG_DEVICES:
            cells += (f"{r[n] / GB:,.1f}", _fits(r[n], BIG_CARD_GIB))
        body.append(cells)
    return markdown_table(header, body, ("---",) + ("---:", "---:") * len(BIG_DEVICES))


def qlora_table(rows: Sequence[Mapping]) -> str:
    body = [
        (f"{STRATEGY_LABEL[r['strategy']]}, {r['devices']} GPU" + ("s" if r["devices"] > 1 else ""),
         f"{r['bytes'] / GB:.1f}", _fits(r["bytes"], QLORA_CARD_GIB))
        for r in rows
    ]  # fmt: skip
    header = ("setup", "GB per GPU", f"fits {QLORA_CARD_GIB} GB")
    return markdown_table(header, body, ("---", "---:", "---:"))


def serving_memory_table(sizes: Mapping[str, int]) -> str:
    """Bytes held in memory: one base serving N adapters versus N merged models (lesson 04's
    table of the same comparison on disk)."""
    from peftlab.lessons.lesson04_merging import base_or_merged_table

    return base_or_merged_table(
        "held in memory", sizes["adapters"], sizes["base_bytes"], sizes["adapter_bytes"],
        sizes["shared_bytes"], sizes["merged_bytes"],
    )  # fmt: skip


def replies_table(complaints: Sequence[str], names: Sequence[str], mixed: Sequence[str],
                  own: Sequence[str]) -> str:  # fmt: skip
    rows = [
        (c, n, m, "yes" if m == o else "no")
        for c, n, m, o in zip(complaints, names, mixed, own, strict=True)
    ]
    header = ("complaint", "adapter", "reply in the mixed batch", "same as alone")
    return markdown_table(header, rows, ("---", "---", "---", "---"))


def latency_table(ms: Mapping[str, float]) -> str:
    fastest = min(ms.values())
    rows = [(k, f"{v:.1f}", f"{v / fastest:.2f}") for k, v in ms.items()]
    return markdown_table(
        ("how", "forward ms (median)", "/ fastest"), rows, ("---", "---:", "---:")
    )


def plot_big(rows: Sequence[Mapping]) -> Figure:
    """GB per GPU for the 70B full fine-tune, each strategy on 8 and 16 GPUs, and an 80 GB card."""
    fig = Figure(figsize=SMALL, layout="constrained")
    ax = fig.subplots()
    width = 0.38
    for i, n in enumerate(BIG_DEVICES):
        xs = [j + (i - 0.5) * width for j in range(len(rows))]
        ax.bar(xs, [r[n] / GB for r in rows], width, label=f"{n} GPUs")
    ax.axhline(BIG_CARD_GIB * GIB / GB, color="black", linestyle="--", lw=0.9,
               label=f"{BIG_CARD_GIB} GB card")  # fmt: skip
    ax.set_xticks(range(len(rows)), [STRATEGY_LABEL[r["strategy"]] for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("GB per GPU (log scale)")
    ax.set_title(f"Full fine-tuning {BIG_MODEL}: memory per GPU", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def paths_configs() -> list[Path]:
    """The accelerate config files in the checkout's `configs/`."""
    from peftlab import paths

    return sorted((paths.course_root() / "configs").glob("*.yaml"))


def _compute(steps: int, seed: int, scratch: Path) -> dict:
    one = ddp.run(scratch / "ddp-1", 1, DDP_ARGS)
    two = ddp.run(scratch / "ddp-2", 2, DDP_ARGS)
    with one_thread():
        folders = adapters.train_adapters(scratch, steps=steps, seed=seed)
        complaints = [support_data.LESSON_COMPLAINT, *support_data.heldout_complaints(N_ROWS - 1)]
        with muted():
            model, tokenizer = base_model.load()
        served = adapters.load_many(model, folders)
        names = list(ROW_ADAPTERS)
        mixed = serving.mixed_generate(served, tokenizer, complaints, names)
        own = serving.own_replies(served, tokenizer, complaints, names)
        sizes = serving.memory_bytes(served, list(folders))
        swap = serving.hot_swap(served, tokenizer, folders["terse"], "terse-again", complaints[:1])
        ms = serving.latency_ms(served, tokenizer, complaints[:4], ["polite", "terse"] * 2)
    return {"ddp_one": one, "ddp_two": two, "complaints": complaints, "names": names,
            "mixed": mixed, "own": own, "memory": sizes, "swap": swap, "latency": ms,
            "steps": steps}  # fmt: skip


def ddp_max_difference(results: Mapping) -> float:
    """The largest relative gap between the two runs' logged losses."""
    [single], ranks = results["ddp_one"], results["ddp_two"]
    return max(
        abs(a - b) / abs(b)
        for rank in ranks
        for (_, a), (_, b) in zip(rank["losses"], single["losses"], strict=True)
    )


def ddp_table(results: Mapping) -> str:
    """Step by step: the examples each process trained on, and the losses of both runs."""
    [single], ranks = results["ddp_one"], results["ddp_two"]
    rows = []
    for step, (_, loss) in enumerate(single["losses"]):
        rows.append((
            str(step + 1),
            ", ".join(map(str, ranks[0]["batches"][step])),
            ", ".join(map(str, ranks[1]["batches"][step])),
            f"{loss:.4f}", f"{ranks[0]['losses'][step][1]:.4f}",
        ))  # fmt: skip
    header = ("step", "process 0 trained on", "process 1 trained on", "loss, 1 process",
              "loss, 2 processes")  # fmt: skip
    return markdown_table(header, rows, ("---:", "---", "---", "---:", "---:"))
