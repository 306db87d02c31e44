"""Lesson 01, full fine-tuning vs PEFT: what training costs (notebook 01, lessons/01).

The memory arithmetic is `peftlab.memory`'s; this module turns it into the lesson's figures and
tables and the numbers its prose quotes.

Figures are matplotlib `Figure`s built without pyplot state, so a notebook shows each once and
a test can inspect it. Tables are markdown strings, so the lesson can quote them verbatim and a
test can check the lesson against their current output. Sizes: GB = 1e9 bytes.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from peftlab import memory
from peftlab.tables import markdown_table

GB = 1e9
SMALL = (5.5, 3.2)
TERM_COLORS = {
    "frozen_weights": "#9e9e9e",
    "trainable_weights": "#1f77b4",
    "gradients": "#ff7f0e",
    "optimizer_states": "#d62728",
    "master_weights": "#9467bd",
    "activations": "#2ca02c",
    "quantization_constants": "#8c564b",
}
# Card sizes the lesson draws: a card sold as "24 GB" holds 24 GiB.
CARD_LINES_GIB = (24, 48, 80)
LESSON_MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")
LESSON_RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LESSON = "01-peft-basics.md"
NOTEBOOK = "01_full_ft_vs_peft.ipynb"
TRAINS = False
TOLERANCE: dict = {}  # arithmetic: every figure is exact on every CPU


def stack_bars(ax: Any, breakdowns: Mapping[str, memory.Breakdown]) -> None:
    """One stacked bar per label, one colored segment per memory term, heights in GB."""
    labels = list(breakdowns)
    bottoms = [0.0] * len(labels)
    for term, color in TERM_COLORS.items():
        heights = [getattr(breakdowns[label], term) / GB for label in labels]
        ax.bar(labels, heights, bottom=bottoms, color=color, label=term.replace("_", " "))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, top in enumerate(bottoms):
        ax.annotate(f"{top:,.0f}", (x, top), ha="center", va="bottom", fontsize="x-small")
    ax.set_ylabel("GB")


def card_lines(ax: Any, cards_gib: Sequence[int] = CARD_LINES_GIB) -> None:
    """Black lines at GPU memory sizes (a card sold as N GB holds N GiB), one style each."""
    styles = (":", "--", "-.", (0, (1, 3)))
    for gib, style in zip(cards_gib, styles, strict=False):
        ax.axhline(gib * 2**30 / GB, color="black", linestyle=style, lw=0.9, label=f"{gib} GB card")


def _legend_below(fig: Figure, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize="x-small", frameon=False)


def memory_bars(models: Sequence[str] = LESSON_MODELS, **estimate_kwargs: Any) -> Figure:
    """Stacked memory bars for full, LoRA and QLoRA, one panel per model, GPU lines drawn."""
    fig = Figure(figsize=(3.2 * len(models), 3.8))
    axes = fig.subplots(1, len(models))
    for ax, model in zip(axes, models, strict=True):
        bars = {m: memory.estimate(model, method=m, **estimate_kwargs) for m in memory.METHODS}
        stack_bars(ax, bars)
        card_lines(ax)
        ax.set_title(f"{model} ({memory.count_params(model) / 1e9:.1f}B)", fontsize="small")
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    _legend_below(fig, axes[0])
    return fig


def trainable_share(
    model: str = "llama-2-7b",
    ranks: Sequence[int] = LESSON_RANKS,
    target_sets: Sequence[Any] = (("q_proj", "v_proj"), "all-linear"),
) -> Figure:
    """Percent of parameters LoRA trains against rank, for each choice of target modules."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    total = memory.count_params(model)
    for targets in target_sets:
        shares = [100 * memory.lora_params(model, r, list_or_str(targets)) / total for r in ranks]
        ax.plot(ranks, shares, marker="o", label=f"LoRA on {target_label(targets)}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(ranks), [str(r) for r in ranks])
    ax.set_xlabel("rank r")
    ax.set_ylabel("trainable share (%)")
    ax.set_title(f"{model}: trainable parameters under LoRA", fontsize="small")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def breakdown_figure(breakdown: memory.Breakdown, label: str) -> Figure:
    """A single stacked bar with the card lines, for the calculator widget."""
    fig = Figure(figsize=(5.0, 3.2))
    ax = fig.add_subplot()
    stack_bars(ax, {label: breakdown})
    card_lines(ax)
    ax.set_ylim(0, max(breakdown.total / GB, 80 * 2**30 / GB) * 1.15)
    ax.set_xlim(-0.8, 0.8)
    fig.tight_layout(rect=(0, 0, 0.58, 1))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize="x-small", frameon=False)
    return fig


def list_or_str(targets: Any) -> Any:
    return targets if isinstance(targets, str) else list(targets)


def target_label(targets: Any) -> str:
    return targets if isinstance(targets, str) else ", ".join(targets)


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB"


def seed_rule_table() -> str:
    """The "4-6x the 16-bit model" rule of thumb beside the itemized ZeRO and HF counts."""
    rows = []
    for nominal, model in zip((7, 13, 70), LESSON_MODELS, strict=True):
        weights_16bit = nominal * 1e9 * 2
        n = memory.count_params(model)
        zero = memory.estimate(model, seq_len=1)
        hf = memory.estimate(model, seq_len=1, accounting="hf")
        rows.append(
            [
                f"{nominal}B",
                f"{4 * weights_16bit / GB:,.0f}-{6 * weights_16bit / GB:,.0f} GB",
                f"{model} ({n:,})",
                gb(zero.total - zero.activations),
                gb(hf.total - hf.activations),
            ]
        )
    headers = [
        "model",
        "rule of thumb: 4-6x the 16-bit weights",
        "exact parameters",
        "ZeRO: 16 bytes/param",
        "Hugging Face: 18 bytes/param",
    ]
    return markdown_table(headers, rows)


def bytes_per_param_table() -> str:
    """Bytes per trainable parameter for each precision and optimizer setting (full fine-tune)."""
    n = memory.count_params("llama-2-7b")
    settings = [
        ("mixed", "adamw", "zero", "mixed precision, AdamW (ZeRO's count)"),
        ("mixed", "adamw", "hf", "mixed precision, AdamW (Hugging Face's count)"),
        ("fp32", "adamw", "zero", "fp32, AdamW"),
        ("bf16", "adamw", "zero", "pure bf16, AdamW with bf16 states"),
        ("mixed", "adamw8bit", "zero", "mixed precision, 8-bit AdamW"),
        ("fp32", "sgd", "zero", "fp32, plain SGD"),
    ]
    rows = []
    for precision, optimizer, accounting, label in settings:
        b = memory.estimate(
            "llama-2-7b", precision=precision, optimizer=optimizer, accounting=accounting
        )
        terms = [b.trainable_weights, b.master_weights, b.gradients, b.optimizer_states]
        rows.append([label, *(f"{t / n:g}" for t in terms), f"{sum(terms) / n:g}"])
    headers = ["setting", "weights", "fp32 master", "gradients", "optimizer", "total"]
    return markdown_table(headers, rows)


def methods_table(models: Sequence[str] = LESSON_MODELS, **estimate_kwargs: Any) -> str:
    """Total training memory of full, LoRA and QLoRA per model, and the smallest card that fits."""
    rows = []
    for model in models:
        for method in memory.METHODS:
            b = memory.estimate(model, method=method, **estimate_kwargs)
            fit = [gpu for gpu, ok in memory.fits(b.total).items() if ok]
            rows.append([model, method, gb(b.total), fit[0] if fit else "none of them (shard)"])
    return markdown_table(["model", "method", "total", "smallest card that fits"], rows)


def lora_rank_table(model: str = "llama-2-7b", ranks: Sequence[int] = (4, 8, 16, 64)) -> str:
    """LoRA trainable parameters and share of the model at several ranks."""
    total = memory.count_params(model)
    rows = []
    for r in ranks:
        qv = memory.lora_params(model, r, ["q_proj", "v_proj"])
        al = memory.lora_params(model, r, "all-linear")
        rows.append([r, f"{qv:,} ({100 * qv / total:.3f}%)", f"{al:,} ({100 * al / total:.2f}%)"])
    return markdown_table(["rank r", "q_proj, v_proj", "all-linear"], rows)


def peft_methods_rows(model: str = "llama-2-7b") -> list[list[str]]:
    """Trainable counts for one config of each PEFT method, through peft where peft has it."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, TaskType

    total = memory.count_params(model)
    lora = memory.peft_trainable(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    prefix = memory.peft_trainable(
        model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20)
    )
    ia3 = memory.peft_trainable(model, IA3Config(task_type=TaskType.CAUSAL_LM))
    houlsby = memory.houlsby_adapter_params(model, bottleneck=64)
    qlora = memory.estimate(model, method="qlora", target_modules=["q_proj", "v_proj"])

    def share(n: int) -> str:
        return f"{n:,} ({100 * n / total:.3f}%)"

    return [
        ["LoRA", "r=8 on q_proj, v_proj (peft LoraConfig)", share(lora), "16-bit base"],
        [
            "QLoRA",
            "the same LoRA on an NF4 base (peft + bitsandbytes)",
            share(lora),
            f"base in 4 bits: {gb(qlora.frozen_weights + qlora.quantization_constants)}",
        ],
        [
            "Prefix tuning",
            "20 virtual tokens: a key and value per layer (peft PrefixTuningConfig)",
            share(prefix),
            "16-bit base; shortens the usable context",
        ],
        [
            "IA3",
            "scaling vectors on k, v and the MLP's down_proj (peft IA3Config)",
            share(ia3),
            "16-bit base",
        ],
        [
            "Houlsby adapters",
            "two bottleneck MLPs of width 64 per layer (formula; not in peft)",
            share(houlsby),
            "16-bit base; extra layers slow inference",
        ],
    ]


def peft_methods_table(model: str = "llama-2-7b") -> str:
    headers = ["method", "what it trains (one config)", "trainable parameters", "frozen base"]
    return markdown_table(headers, peft_methods_rows(model))


def measured_table(rows: Sequence[tuple[str, dict[str, int], memory.Breakdown]]) -> str:
    """Bytes held by tensors after one step beside estimate()'s terms, per method."""
    terms = ("frozen_weights", "quantization_constants", "trainable_weights", "gradients")
    terms += ("optimizer_states",)
    out = []
    for label, held, predicted in rows:
        for term in terms:
            measured, expected = held[term], getattr(predicted, term)
            same = "yes" if measured == expected else f"off by {measured - expected:+,}"
            out.append([label, term.replace("_", " "), f"{measured:,}", f"{expected:,}", same])
    return markdown_table(["run", "term", "measured bytes", "predicted bytes", "equal"], out)


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
    (`memory.estimate(devices=n, sharding="zero3")`; no CUDA context)."""
    for n in range(1, most + 1):
        per_card = memory.estimate(model, devices=n, sharding="zero3", **estimate_kwargs)
        if per_card.total <= card_gib * 2**30:
            return n
    raise ValueError(f"{model}: {most} cards of {card_gib} GiB are not enough; pass a larger most")


def _ranks(shares: Mapping[int, float], low: float, high: float) -> str:
    inside = [r for r, s in shares.items() if low <= s <= high]
    if not inside:
        return "no rank"
    return f"r = {inside[0]}" if len(inside) == 1 else f"r = {inside[0]}-{inside[-1]}"


def claims_rows(model: str = CLAIM_MODEL) -> list[list[str]]:
    """One row per quantitative claim of the course outline: the claim, the computed figure, the
    setting it depends on, and a verdict (holds / holds only for ... / wrong)."""
    from peft import PrefixTuningConfig, TaskType

    n = memory.count_params(model)
    weights_16bit = 2 * n
    rows = []

    # "Total: ~4-6x model size in GPU memory" (model size: the 16-bit weights)
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

    # The outline's table: 1-2 / 2-4 / 8+ A100s for 7B / 13B / 70B
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

    # TL;DR: "fine-tune a 7B model on 1 GPU instead of 2-4"
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

    # "This cuts GPU memory by 5-10x"
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

    # "PEFT trains ~0.1-1% of the parameters"
    shares = {
        label: {r: 100 * memory.lora_params(model, r, targets) / n for r in LESSON_RANKS}
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
            + f" (ranks tried: {', '.join(map(str, LESSON_RANKS))})",
        ]
    )

    # "LoRA adds small low-rank matrices to attention layers"
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

    # "7B on a single consumer GPU" (with QLoRA)
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

    # "Prefix tuning: lighter than LoRA"
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


def claims_table(model: str = CLAIM_MODEL) -> str:
    """The course outline's quantitative claims, each with its computed figure and a verdict."""
    header = ["the outline says", "computed", "setting it depends on", "verdict"]
    return markdown_table(header, claims_rows(model))


def smallest_card(total_bytes: int) -> str:
    """ "one N GB GPU" for the smallest capacity in `memory.GPUS` that holds `total_bytes` (a card
    sold as N GB holds N GiB)."""
    fit = [capacity for capacity in memory.GPUS.values() if total_bytes <= capacity]
    return f"one {min(fit) // 2**30} GB GPU" if fit else "no single GPU listed"


def results() -> dict[str, memory.Breakdown]:
    """The estimates the lesson's prose quotes (arithmetic: milliseconds)."""
    return {
        "full": memory.estimate("llama-2-7b"),
        "hf": memory.estimate("llama-2-7b", accounting="hf"),
        "lora": memory.estimate("llama-2-7b", method="lora"),
        "qlora": memory.estimate("llama-2-7b", method="qlora"),
        "70b qlora checkpointed": memory.estimate(
            "llama-2-70b", method="qlora", gradient_checkpointing=True
        ),
    }


def quotes(estimates: Mapping[str, memory.Breakdown]) -> dict[str, str]:
    """Every table and number the lesson and its notebook quote, by region name."""
    n = memory.count_params("llama-2-7b")
    full, hf, lora, qlora = (estimates[k] for k in ("full", "hf", "lora", "qlora"))
    lora_qv = memory.lora_params("llama-2-7b", 8, ["q_proj", "v_proj"])
    return {
        "bytes per parameter": bytes_per_param_table(),
        "rule of thumb": seed_rule_table(),
        "methods": methods_table(),
        "ranks": lora_rank_table(),
        "peft methods": peft_methods_table(),
        "claims": claims_table(),
        "llama-2-7b parameters": f"{n:,}",
        "llama-2-7b 16-bit weights": gb(2 * n),
        "full zero before activations": gb(full.total - full.activations),
        "full hf before activations": gb(hf.total - hf.activations),
        "activations batch 1 x 512": gb(full.activations),
        "full total": gb(full.total),
        "lora total": gb(lora.total),
        "qlora total": gb(qlora.total),
        "qlora base": gb(qlora.frozen_weights + qlora.quantization_constants),
        "full / lora": f"{full.total / lora.total:.1f}x",
        "full / qlora": f"{full.total / qlora.total:.0f}x",
        "lora r=8 q,v trainable": f"{lora_qv:,}",
        "lora r=8 q,v share": f"{100 * lora_qv / n:.3f}%",
        "70b qlora checkpointed": gb(estimates["70b qlora checkpointed"].total),
        "24 GiB card in GB": gb(24 * 2**30),
        "interview: full": f"about {(full.total - full.activations) / GB:.0f} GB",
        "interview: lora total": f"about {lora.total / GB:.0f} GB",
        "interview: lora card": smallest_card(lora.total),
        "interview: qlora total": f"about {qlora.total / GB:.0f} GB",
        "interview: lora trainable": f"about {lora_qv / 1e6:.1f} million",
        "interview: lora share": f"{100 * lora_qv / n:.2f}%",
        "notebook: full": f"full ≈ {full.total / GB:.0f} GB",
        "notebook: lora": f"LoRA ≈ {lora.total / GB:.0f} GB",
        "notebook: qlora": f"QLoRA ≈ {qlora.total / GB:.0f} GB",
    }
