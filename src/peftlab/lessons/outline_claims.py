"""The course outline's quantitative claims, each checked against the calculator (lesson 01,
section 6): the claim, the figure `memory.estimate` computes, the setting it depends on, and a
verdict (holds / holds only for ... / wrong). Lesson 01 quotes `claims_table`.
"""

from collections.abc import Mapping
from typing import Any

from peftlab import memory, sharding
from peftlab.tables import gb, markdown_table

RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # the ranks whose trainable share is checked

# --- Section 6: the course outline's quantitative claims, each checked -------------------------
# Every figure below comes from a `memory.estimate` / `memory.lora_params` / peft call whose
# settings the row names; every verdict that depends on a threshold is computed, so re-rendering
# after a change to the memory model keeps the table true.
CLAIM_MODEL = "llama-2-7b"
CONSUMER_CARD_GIB = 24  # the largest consumer cards (RTX 3090/4090): 24 GiB
SMALLER_CARD_GIB = 16  # RTX 4060 Ti 16 GB, T4
A100_GIB = (40, 80)
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
# The outline's A100 counts, per model: (nominal size, its Llama-2 preset, fewest, most or None)
SEED_A100S = ((7, "llama-2-7b", 1, 2), (13, "llama-2-13b", 2, 4), (70, "llama-2-70b", 8, None))
BIG_BATCH = dict(batch_size=8, seq_len=2048, gradient_checkpointing=True)


def _x(value: float) -> str:
    return f"{value:.1f}x"


def kwargs_text(kwargs: Mapping[str, Any]) -> str:
    """Keyword arguments as they are written in a call, or "defaults" for none."""
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()).replace("'", '"') or "defaults"


def _in(value: float, low: float, high: float | None) -> bool:
    return value >= low and (high is None or value <= high)


def range_verdict(
    values: Mapping[str, float], low: float, high: float | None, fmt: Any = None
) -> str:
    """ "holds" when every setting's value lies in [low, high] (high None: no upper bound),
    "wrong" when none does, else which settings it holds for and which fall below or above."""
    fmt = fmt or _x
    held = [f"{k} ({fmt(v)})" for k, v in values.items() if _in(v, low, high)]
    below = [f"{k} ({fmt(v)})" for k, v in values.items() if v < low]
    above = [f"{k} ({fmt(v)})" for k, v in values.items() if high is not None and v > high]
    outside = [f"below it: {', '.join(below)}"] * bool(below)
    outside += [f"above it: {', '.join(above)}"] * bool(above)
    if not outside:
        return "holds"
    if not held:
        return "wrong; " + "; ".join(outside)
    return f"holds only for {', '.join(held)}; " + "; ".join(outside)


def a100s_needed(model: str, card_gib: int, most: int = 1024, **estimate_kwargs: Any) -> int:
    """Fewest A100s of `card_gib` for full fine-tuning when ZeRO-3 shards weights, gradients and
    optimizer state over them and each keeps the activations of its own batch
    (`sharding.min_devices`; no CUDA context)."""
    one_card = memory.estimate(model, **estimate_kwargs)
    n = sharding.min_devices(one_card, "zero3", card_gib * 2**30, limit=most)
    if n is None:
        raise ValueError(
            f"{model}: {most} cards of {card_gib} GiB are not enough; pass a larger most"
        )
    return n


def _ranks(shares: Mapping[int, float], low: float, high: float) -> str:
    inside = [r for r, s in shares.items() if low <= s <= high]
    if not inside:
        return "no rank"
    return f"r = {inside[0]}" if len(inside) == 1 else f"r = {inside[0]}-{inside[-1]}"


def _claim_four_to_six(model: str) -> list[list[str]]:
    """The outline: "Total: ~4-6x model size in GPU memory" (model size: the 16-bit weights)."""
    n = memory.count_params(model)
    weights_16bit = 2 * n
    rows = []
    settings = {
        "mixed-precision AdamW (ZeRO)": dict(),
        "mixed-precision AdamW (Hugging Face)": dict(accounting="hf"),
        "bf16 AdamW, bf16 moments": dict(precision="bf16", optimizer_precision="bf16"),
        "bf16 AdamW, fp32 moments": dict(precision="bf16", optimizer_precision="fp32"),
    }
    ratios = {}
    for label, kwargs in settings.items():
        b = memory.estimate(model, **kwargs)
        ratios[label] = (b.total - b.activations) / weights_16bit
    rows.append(
        [
            "full fine-tuning needs ~4-6x the model size",
            ", ".join(f"{_x(v)} ({k})" for k, v in ratios.items()),
            f"{model}: weights, gradients and optimizer state (activations excluded) over its "
            f"{gb(weights_16bit)} of 16-bit weights; estimate() with "
            + "; ".join(f"{k}: {kwargs_text(kw)}" for k, kw in settings.items()),
            range_verdict(ratios, 4, 6),
        ]
    )
    return rows


def _claim_a100s(model: str) -> list[list[str]]:
    """The outline's table: 1-2 / 2-4 / 8+ A100s for 7B / 13B / 70B (the model is each row's)."""
    rows = []
    for nominal, preset_name, fewest, most in SEED_A100S:
        needed = {gib: a100s_needed(preset_name, gib) for gib in A100_GIB}
        total = memory.estimate(preset_name).total
        claim = f"{fewest}-{most}" if most else f"{fewest}+"
        rows.append(
            [
                f"{nominal}B full fine-tuning on {claim} A100s",
                f"{gb(total)}: " + " or ".join(f"{k} x {gib} GB" for gib, k in needed.items()),
                f"{preset_name}, mixed-precision AdamW (ZeRO's count), batch 1 x 512 tokens per "
                'GPU, ZeRO-3 (estimate(devices=n, sharding="zero3")), no CUDA context',
                range_verdict(
                    {f"{gib} GB A100s": k for gib, k in needed.items()},
                    fewest,
                    most,
                    fmt=lambda k: f"{k} needed",
                ),
            ]
        )
    return rows


def _claim_one_gpu(model: str) -> list[list[str]]:
    """The outline: TL;DR: "fine-tune a 7B model on 1 GPU instead of 2-4"."""
    rows = []
    full_cards = {gib: a100s_needed(model, gib) for gib in A100_GIB}
    peft_fits = {
        m: memory.estimate(model, method=m, gradient_checkpointing=False).total
        <= min(A100_GIB) * 2**30
        for m in ("lora", "qlora")
    }
    ok = all(peft_fits.values()) and all(_in(k, 2, 4) for k in full_cards.values())
    rows.append(
        [
            "PEFT: a 7B model on 1 GPU instead of 2-4",
            "full: "
            + " or ".join(f"{k} x {gib} GB" for gib, k in full_cards.items())
            + "; LoRA and QLoRA: "
            + ("1 card each" if all(peft_fits.values()) else "more than one 40 GB card"),
            f"{model}, batch 1 x 512 tokens, no checkpointing, r=8 on q_proj, v_proj",
            "holds" if ok else "holds only in part: see the figures",
        ]
    )
    return rows


def _claim_memory_cut(model: str) -> list[list[str]]:
    """The outline: "This cuts GPU memory by 5-10x"."""
    rows = []
    cuts = {}
    small = dict(batch_size=1, seq_len=512, gradient_checkpointing=False)
    for setting, kwargs in (
        ("batch 1 x 512, no checkpointing", small),
        ("batch 8 x 2048, checkpointed", BIG_BATCH),
    ):
        full = memory.estimate(model, **kwargs).total
        for m, label in (("lora", "LoRA"), ("qlora", "QLoRA")):
            cuts[f"{label}, {setting}"] = full / memory.estimate(model, method=m, **kwargs).total
    rows.append(
        [
            "PEFT cuts GPU memory 5-10x",
            ", ".join(f"{_x(v)} ({k})" for k, v in cuts.items()),
            f"{model}, full = mixed-precision AdamW (ZeRO's count), r=8 on q_proj, v_proj; "
            "activations are not cut, so the ratio falls as batch x length grows",
            range_verdict(cuts, 5, 10),
        ]
    )
    return rows


def _claim_trainable_share(model: str) -> list[list[str]]:
    """The outline: "PEFT trains ~0.1-1% of the parameters"."""
    n = memory.count_params(model)
    rows = []
    shares = {
        label: {r: 100 * memory.lora_params(model, r, targets) / n for r in RANKS}
        for label, targets in (
            ("q_proj, v_proj", ["q_proj", "v_proj"]),
            ("all-linear", "all-linear"),
        )
    }
    qv8, al8 = shares["q_proj, v_proj"][8], shares["all-linear"][8]
    rows.append(
        [
            "LoRA trains ~0.1-1% of the parameters",
            f"r=8: {qv8:.3f}% (q_proj, v_proj), {al8:.2f}% (all-linear)",
            f"{model}, LoRA rank r and target modules",
            "holds only for "
            + "; ".join(f"{_ranks(s, 0.1, 1)} on {label}" for label, s in shares.items())
            + f" (ranks tried: {', '.join(map(str, RANKS))})",
        ]
    )
    return rows


def _claim_attention(model: str) -> list[list[str]]:
    """The outline: "LoRA adds small low-rank matrices to attention layers"."""
    rows = []
    default = list(memory.default_targets(model))
    attention_only = all(t in ATTENTION_PROJECTIONS for t in default)
    every = memory.lora_params(model, 8, "all-linear")
    in_mlp = every - memory.lora_params(model, 8, list(ATTENTION_PROJECTIONS))
    rows.append(
        [
            "LoRA adds matrices to attention layers",
            f"peft's default targets: {', '.join(default)}"
            f"{' (attention only)' if attention_only else ''}; all-linear puts "
            f"{100 * in_mlp / every:.0f}% of the adapter in the MLP",
            "target_modules: the LoRA paper adapted W_q and W_v; QLoRA's recipe and peft's "
            '"all-linear" adapt every linear layer',
            ("holds only for " if attention_only else "wrong for ")
            + "the default targets; not for all-linear, which also adapts the MLP",
        ]
    )
    return rows


def _claim_consumer_gpu(model: str) -> list[list[str]]:
    """The outline: "7B on a single consumer GPU" (with QLoRA)."""
    rows = []
    totals = {
        m: memory.estimate(model, method=m, gradient_checkpointing=False).total
        for m in ("lora", "qlora")
    }
    fits = {
        gib: [m for m, t in totals.items() if t <= gib * 2**30]
        for gib in (CONSUMER_CARD_GIB, SMALLER_CARD_GIB)
    }
    verdict = "holds" if "qlora" in fits[CONSUMER_CARD_GIB] else "wrong at this setting"
    if "lora" in fits[CONSUMER_CARD_GIB]:
        verdict += f", but LoRA fits a {CONSUMER_CARD_GIB} GB card too: it is not QLoRA's alone"
    if "qlora" in fits[SMALLER_CARD_GIB] and "lora" not in fits[SMALLER_CARD_GIB]:
        verdict += f"; only QLoRA fits a {SMALLER_CARD_GIB} GB card"
    rows.append(
        [
            "QLoRA fine-tunes a 7B model on a single consumer GPU",
            f"QLoRA {gb(totals['qlora'])}, LoRA {gb(totals['lora'])}; a {CONSUMER_CARD_GIB} GB "
            f"card holds {gb(CONSUMER_CARD_GIB * 2**30)}",
            f"{model}, batch 1 x 512 tokens, r=8 on q_proj, v_proj, no checkpointing for either",
            verdict,
        ]
    )
    return rows


def _claim_prefix(model: str) -> list[list[str]]:
    """The outline: "Prefix tuning: lighter than LoRA"."""
    from peft import PrefixTuningConfig, TaskType

    rows = []
    tokens = 20
    prefix = memory.peft_trainable(
        model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=tokens)
    )
    per_token = prefix // tokens
    lora_qv, lora_all = (
        memory.lora_params(model, 8, t) for t in (["q_proj", "v_proj"], "all-linear")
    )
    per_rank = {
        "q_proj, v_proj": memory.lora_params(model, 1, ["q_proj", "v_proj"]),
        "all-linear": memory.lora_params(model, 1, "all-linear"),
    }
    lighter = [
        label for label, t in (("q_proj, v_proj", lora_qv), ("all-linear", lora_all)) if prefix < t
    ]
    heavier = [label for label in per_rank if label not in lighter]
    rows.append(
        [
            "prefix tuning is lighter than LoRA",
            f"{tokens} virtual tokens: {prefix:,}; LoRA r=8: {lora_qv:,} (q_proj, v_proj), "
            f"{lora_all:,} (all-linear)",
            "prefix length against LoRA rank and targets (peft PrefixTuningConfig, no "
            "prefix_projection); lighter only while tokens < "
            + " or ".join(f"{per_rank[k] / per_token:.1f} r ({k})" for k in per_rank),
            (
                "holds"
                if not heavier
                else "wrong"
                if not lighter
                else f"holds only against {', '.join(lighter)}; "
                f"heavier than r=8 on {', '.join(heavier)}"
            )
            + "; in memory both are tiny beside the frozen base",
        ]
    )
    return rows


CLAIMS = (
    _claim_four_to_six,
    _claim_a100s,
    _claim_one_gpu,
    _claim_memory_cut,
    _claim_trainable_share,
    _claim_attention,
    _claim_consumer_gpu,
    _claim_prefix,
)


def claims_rows(model: str = CLAIM_MODEL) -> list[list[str]]:
    """One row per quantitative claim of the course outline: the claim, the computed figure, the
    setting it depends on, and a verdict (holds / holds only for ... / wrong)."""
    return [row for claim in CLAIMS for row in claim(model)]


def claims_table(model: str = CLAIM_MODEL) -> str:
    """The course outline's quantitative claims, each with its computed figure and a verdict."""
    header = ["the outline says", "computed", "setting it depends on", "verdict"]
    return markdown_table(header, claims_rows(model))
