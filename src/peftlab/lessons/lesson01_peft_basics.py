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

from peftlab import activation_counts, activation_memory, memory, presets
from peftlab.lessons import cache, outline_claims
from peftlab.lessons.outline_claims import claims_table
from peftlab.tables import gb, markdown_table

LESSON = "01-peft-basics.md"
NOTEBOOK = "01_full_ft_vs_peft.ipynb"
TRAINS = False
TOLERANCE: dict = {}  # arithmetic: every figure is exact on every CPU


def results() -> dict[str, Any]:
    """The estimates the lesson's prose quotes (arithmetic), the QLoRA paper's figures, and the
    activation bytes counted on small random Llamas (a few seconds, cached)."""
    return {
        "full": memory.estimate("llama-2-7b", gradient_checkpointing=False),
        "hf": memory.estimate("llama-2-7b", accounting="hf", gradient_checkpointing=False),
        "lora": memory.estimate("llama-2-7b", method="lora", gradient_checkpointing=False),
        "qlora": memory.estimate("llama-2-7b", method="qlora", gradient_checkpointing=False),
        "full checkpointed": memory.estimate("llama-2-7b", gradient_checkpointing=True),
        "lora checkpointed": memory.estimate(
            "llama-2-7b", method="lora", gradient_checkpointing=True
        ),
        "qlora checkpointed": memory.estimate(
            "llama-2-7b", method="qlora", gradient_checkpointing=True
        ),
        "70b qlora checkpointed": memory.estimate(
            "llama-2-70b", method="qlora", gradient_checkpointing=True
        ),
        "paper": paper_figures(),
        "counted activations": counted_activations(),
    }


def quotes(estimates: Mapping[str, Any]) -> dict[str, str]:
    """Every table and number the lesson and its notebook quote, by region name."""
    n = memory.count_params("llama-2-7b")
    full, hf, lora, qlora = (estimates[k] for k in ("full", "hf", "lora", "qlora"))
    full_c, lora_c, qlora_c = (estimates[f"{k} checkpointed"] for k in ("full", "lora", "qlora"))
    paper = estimates["paper"]
    recipe, peft = paper["65b qlora recipe"], paper["65b qlora peft"]
    counted = estimates["counted activations"]
    worst = max(abs(r["estimate"] - r["counted"]) for r in counted)
    acts = activation_totals()
    layer = activation_memory.activation_terms(ACTIVATION_MODEL, **ACTIVATION_SETTING)["layer"]
    layer_eager = activation_memory.activation_terms(
        ACTIVATION_MODEL, attn_implementation="eager", **ACTIVATION_SETTING
    )["layer"]
    config = memory.preset(ACTIVATION_MODEL)
    lora_qv = memory.lora_params("llama-2-7b", 8, ["q_proj", "v_proj"])
    return {
        "bytes per parameter": bytes_per_param_table(),
        "rule of thumb": seed_rule_table(),
        "methods": methods_table(),
        "ranks": lora_rank_table(),
        "peft methods": peft_methods_table(),
        "claims": claims_table(),
        "activation derivation": activation_derivation_table(),
        "counted activations": counted_activations_table(counted),
        "counted activations: worst": f"{worst:,} bytes",
        "counted activations: cases": f"{len(counted)}",
        "paper figures": paper_table(paper),
        "activations eager": gb(acts["eager stored"]),
        "activations korthikanti": gb(acts["korthikanti stored"]),
        "activations sdpa checkpointed": gb(acts["sdpa checkpointed"]),
        "layer sdpa": f"{sum(layer.values()) / 1e6:,.1f} MB",
        "layer eager": f"{sum(layer_eager.values()) / 1e6:,.1f} MB",
        "layer korthikanti": (
            f"{activation_memory.korthikanti_layer_bytes(ACTIVATION_MODEL, 1, 512) / 1e6:,.1f} MB"
        ),
        "a s / h": f"{config.num_attention_heads * 512 / config.hidden_size:g}",
        "65b full 12 bytes": gb(paper["65b full 12 bytes"]),
        "65b full zero": gb(paper["65b full zero"]),
        "65b qlora recipe": gb(recipe.total),
        "65b qlora recipe gib": f"{recipe.total / 2**30:.1f} GiB",
        "65b qlora recipe floor": gb(recipe.gpu_floor),
        "65b qlora peft": gb(peft.total),
        "65b qlora peft gib": f"{peft.total / 2**30:.1f} GiB",
        "qlora paper recipe": f"`{settings_text(QLORA_PAPER_RECIPE)}`",
        "full 16-bit recipe": f"`{settings_text(FULL_16BIT)}`",
        "48 GiB card in GB": gb(48 * 2**30),
        "full total checkpointed": gb(full_c.total),
        "lora total checkpointed": gb(lora_c.total),
        "qlora total checkpointed": gb(qlora_c.total),
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
        "interview: lora total": f"about {lora_c.total / GB:.0f} GB",
        "interview: lora card": one_card_text(lora_c.total),
        "interview: qlora total": f"about {qlora_c.total / GB:.0f} GB",
        "interview: lora trainable": f"about {lora_qv / 1e6:.1f} million",
        "interview: lora share": f"{100 * lora_qv / n:.2f}%",
        "notebook: full": f"full ≈ {full.total / GB:.0f} GB",
        "notebook: lora": f"LoRA ≈ {lora.total / GB:.0f} GB",
        "notebook: qlora": f"QLoRA ≈ {qlora.total / GB:.0f} GB",
        "notebook: checkpointed": f"full ≈ {full_c.total / GB:.0f} GB, LoRA ≈ "
        f"{lora_c.total / GB:.0f} GB, QLoRA ≈ {qlora_c.total / GB:.0f} GB",
    }


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
LESSON_RANKS = outline_claims.RANKS  # the figure plots the ranks the outline's claim is checked on


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
        kwargs = {"gradient_checkpointing": False, **estimate_kwargs}  # like with like
        bars = {m: memory.estimate(model, method=m, **kwargs) for m in memory.METHODS}
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
        ("mixed", "adamw", "zero", None, "fp16 mixed precision, AdamW, 16-bit gradients (ZeRO)"),
        ("mixed", "adamw", "hf", None, "mixed precision, AdamW, fp32 gradients (bf16 in "
         "Megatron-LM / DeepSpeed's bf16 optimizer; torch AMP; Hugging Face's count)"),
        ("fp32", "adamw", "zero", None, "fp32, AdamW"),
        ("bf16", "adamw", "zero", "fp32", "bf16 weights and gradients, AdamW with fp32 moments"),
        ("bf16", "adamw", "zero", "bf16", "pure bf16, AdamW with bf16 moments"),
        ("mixed", "adamw8bit", "zero", None, "mixed precision, 8-bit AdamW"),
        ("fp32", "sgd", "zero", None, "fp32, plain SGD"),
    ]  # fmt: skip
    rows = []
    for precision, optimizer, accounting, moments, label in settings:
        b = memory.estimate(
            "llama-2-7b",
            precision=precision,
            optimizer=optimizer,
            accounting=accounting,
            optimizer_precision=moments,
        )
        terms = [b.trainable_weights, b.master_weights, b.gradients, b.optimizer_states]
        rows.append([label, *(f"{t / n:g}" for t in terms), f"{sum(terms) / n:g}"])
    headers = ["setting", "weights", "fp32 master", "gradients", "optimizer", "total"]
    return markdown_table(headers, rows)


def card_cell(total_bytes: int) -> str:
    """`presets.smallest_gpu` as the tables print it: a card without bf16 (`presets.NO_BF16`)
    is marked, since it trains with fp16 compute; none listed means shard."""
    gpu = presets.smallest_gpu(total_bytes)
    if gpu is None:
        return "none of them (shard)"
    return gpu + (" (fp16 compute: no bf16)" if gpu in presets.NO_BF16 else "")


def methods_table(models: Sequence[str] = LESSON_MODELS, **estimate_kwargs: Any) -> str:
    """Total training memory of full, LoRA and QLoRA per model, without and with gradient
    checkpointing (the same setting for every method: like with like), and the smallest card
    of `presets.GPUS` that holds each."""
    rows = []
    for model in models:
        for method in memory.METHODS:
            row = [model, method]
            for checkpointing in (False, True):
                b = memory.estimate(
                    model, method=method, gradient_checkpointing=checkpointing, **estimate_kwargs
                )
                row += [gb(b.total), card_cell(b.total)]
            rows.append(row)
    header = ["model", "method", "no checkpointing", "smallest card", "checkpointing"]
    return markdown_table([*header, "smallest card "], rows)


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
            "4-bit base, embeddings and head in fp32: "
            f"{gb(qlora.frozen_weights + qlora.quantization_constants)}",
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


# --- Activations: what a Llama layer keeps for backward, derived and counted --------------------
ACTIVATION_MODEL = "llama-2-7b"
ACTIVATION_SETTING = dict(batch_size=1, seq_len=512, precision="bf16")  # full fine-tuning, bf16


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f}" if value else "-"


def activation_derivation_table(model: str = ACTIVATION_MODEL, **setting: Any) -> str:
    """One decoder layer's saved tensors term by term (`activation_memory.activation_terms`),
    SDPA beside eager attention, in MB, with Korthikanti et al.'s GPT-block figure for the same
    shape."""
    setting = {**ACTIVATION_SETTING, **setting}
    sdpa = activation_memory.activation_terms(model, **setting)["layer"]
    eager = activation_memory.activation_terms(model, attn_implementation="eager", **setting)[
        "layer"
    ]
    order = list(eager)  # SDPA's own terms where eager keeps q, k, v
    order[order.index("q, k, v") : order.index("q, k, v")] = [k for k in sdpa if k not in eager]
    names = [n for n in order if sdpa.get(n) or eager.get(n)]
    rows = [[name, _mb(sdpa.get(name, 0)), _mb(eager.get(name, 0))] for name in names]
    rows.append(["one layer", _mb(sum(sdpa.values())), _mb(sum(eager.values()))])
    b, s = setting["batch_size"], setting["seq_len"]
    gpt = activation_memory.korthikanti_layer_bytes(model, b, s)
    rows.append(["Korthikanti's GPT layer, s·b·h·(34 + 5as/h)", _mb(gpt), _mb(gpt)])
    return markdown_table(["tensor kept for backward", "SDPA (MB)", "eager (MB)"], rows)


def activation_totals(model: str = ACTIVATION_MODEL, **setting: Any) -> dict[str, int]:
    """Whole-model activation bytes: SDPA, eager and Korthikanti, without and with checkpointing."""
    setting = {**ACTIVATION_SETTING, **setting}
    b, s = setting["batch_size"], setting["seq_len"]
    out = {}
    for ckpt in (False, True):
        tag = "checkpointed" if ckpt else "stored"
        for attn in presets.ATTN_IMPLEMENTATIONS:
            out[f"{attn} {tag}"] = activation_memory.activation_bytes(
                model, b, s, ckpt, attn_implementation=attn, precision=setting["precision"]
            )
        out[f"korthikanti {tag}"] = activation_memory.korthikanti_bytes(model, b, s, ckpt)
    return out


# The random Llamas whose activations are counted (`activation_counts.SHAPES`), the recipes, and
# the batch: tests/test_activations_measured.py counts the same shapes and more cases.
COUNTED_RECIPES = {"full (bf16)": ("full", "bf16"), "LoRA": ("lora", "mixed"),
                   "QLoRA": ("qlora", "mixed")}  # fmt: skip
COUNTED_TOKENS = (2, 64)  # batch, sequence length


def _count_activations() -> list[dict]:
    import tempfile

    b, s = COUNTED_TOKENS
    rows = []
    for shape in activation_counts.SHAPES:
        with tempfile.TemporaryDirectory() as folder:
            activation_counts.save_random(shape, folder)
            for attn in presets.ATTN_IMPLEMENTATIONS:
                for recipe, (method, precision) in COUNTED_RECIPES.items():
                    for ckpt in (False, True):
                        r = activation_counts.count(folder, shape, method, precision, attn, ckpt,
                                                    b, s)  # fmt: skip
                        rows.append(dict(shape=shape, attn=attn, recipe=recipe, ckpt=ckpt,
                                         counted=r["counted"]["total"],
                                         estimate=r["estimate"]))  # fmt: skip
    return rows


def counted_activations() -> list[dict]:
    """Activation bytes counted on the CPU beside the estimate (cached: a few seconds)."""
    return cache.cached("lesson01 counted activations", _count_activations)


def counted_activations_table(rows: Sequence[Mapping]) -> str:
    b, s = COUNTED_TOKENS
    body = [
        [r["shape"], r["attn"], r["recipe"], "yes" if r["ckpt"] else "no",
         f"{r['counted']:,}", f"{r['estimate']:,}",
         f"{r['estimate'] - r['counted']:+,}"]
        for r in rows
    ]  # fmt: skip
    head = ["random Llama", "attention", "recipe", "checkpointing", f"counted bytes ({b} x {s})",
            "estimated bytes", "estimate - counted"]  # fmt: skip
    return markdown_table(head, body)


# --- The QLoRA paper's figures, each by the calculator settings that reproduce it ----------------
PAPER_65B = "llama-65b"
PAPER_7B = "llama-7b"
FULL_16BIT = dict(method="full", precision="bf16", optimizer_precision="fp32")
QLORA_PAPER_RECIPE = dict(
    method="qlora", r=64, target_modules="all-linear", precision="bf16", optimizer="paged_adamw",
    optimizer_precision="fp32", gradient_checkpointing=True, batch_size=1, seq_len=512,
    prepare_kbit=False,
)  # fmt: skip
PEFT_QLORA = dict(method="qlora", r=64, target_modules="all-linear", seq_len=512)


def settings_text(settings: Mapping[str, Any]) -> str:
    """`estimate` keyword arguments as code, for prose that names its settings."""
    return ", ".join(f"{k}={v!r}" for k, v in settings.items())


def paper_figures() -> dict[str, Any]:
    """The QLoRA paper's three memory figures beside the calculator (bytes)."""
    full = memory.estimate(PAPER_65B, **FULL_16BIT)
    zero = memory.estimate(PAPER_65B)
    hf = memory.estimate(PAPER_65B, accounting="hf")
    recipe = memory.estimate(PAPER_65B, **QLORA_PAPER_RECIPE)
    peft = memory.estimate(PAPER_65B, **PEFT_QLORA)
    linear = sum(t.count * t.d_in * t.d_out for t in memory.linear_layers(PAPER_7B))
    n7 = memory.count_params(PAPER_7B)
    config = memory.preset(PAPER_7B)
    embed_head = 2 * config.vocab_size * config.hidden_size
    norms = n7 - linear - embed_head

    def constants(double_quant: bool) -> int:
        return sum(
            t.count * memory.quant_constant_bytes(t.d_in * t.d_out, double_quant)
            for t in memory.linear_layers(PAPER_7B)
        )

    def base(**kw: Any) -> int:
        b = memory.estimate(PAPER_7B, "qlora", **kw)
        return b.frozen_weights + b.quantization_constants

    return {
        "65b full 12 bytes": full.total - full.activations,
        "65b full zero": zero.total - zero.activations,
        "65b full hf": hf.total - hf.activations,
        "65b qlora recipe": recipe,
        "65b qlora peft": peft,
        "7b nf4 linears": linear // 2,
        "7b constants dq": constants(True),
        "7b constants plain": constants(False),
        "7b embed head": embed_head,
        "7b norms": norms,
        "7b base paper script": base(prepare_kbit=False),
        "7b base peft": base(),
        "7b base peft plain": base(double_quant=False),
    }


def paper_table(figures: Mapping[str, Any] | None = None) -> str:
    """The QLoRA paper's memory figures, the calculator settings that reproduce each, and why."""
    f = figures or paper_figures()
    recipe, peft = f["65b qlora recipe"], f["65b qlora peft"]
    rows = [
        [
            "LLaMA-65B, full 16-bit fine-tuning: more than 780 GB",
            f"{gb(f['65b full 12 bytes'])} (12 bytes/param)",
            f"`{settings_text(FULL_16BIT)}`, activations excluded",
            f"bf16 weights 2 + bf16 gradients 2 + two fp32 Adam moments 8; ZeRO's 16 bytes "
            f"would give {gb(f['65b full zero'])}, Hugging Face's 18 {gb(f['65b full hf'])}",
        ],
        [
            "LLaMA-65B, QLoRA on one 48 GB GPU",
            f"{gb(recipe.total)} ({recipe.total / 2**30:.1f} GiB); "
            f"{gb(recipe.gpu_floor)} with the paged states evicted",
            f"`{settings_text(QLORA_PAPER_RECIPE)}`",
            f"bf16 adapters and paged 32-bit AdamW; with peft's defaults (fp32 adapters, fp32 "
            f"embeddings and head) it is {gb(peft.total)} ({peft.total / 2**30:.1f} GiB)",
        ],
        [
            "LLaMA-7B 4-bit base: about 5,048 MB",
            f"{f['7b base paper script'] / 1e6:,.0f} to {f['7b base peft plain'] / 1e6:,.0f} MB",
            "`method='qlora'`, base terms (frozen weights + constants); from "
            "`prepare_kbit=False` (16-bit embeddings) to `double_quant=False` (fp32 ones)",
            f"NF4 linears {f['7b nf4 linears'] / 1e6:,.0f} MB + constants "
            f"{f['7b constants dq'] / 1e6:,.0f} MB (double quant) or "
            f"{f['7b constants plain'] / 1e6:,.0f} MB + embeddings and head "
            f"{2 * f['7b embed head'] / 1e6:,.0f} MB (bf16) or {4 * f['7b embed head'] / 1e6:,.0f}"
            f" MB (fp32); the paper's figure is {5048e6 / f['7b base peft plain'] - 1:.0%} above "
            "the largest sum: not reproducible from the shapes alone",
        ],
    ]
    return markdown_table(["the paper says", "calculator", "settings", "which accounting"], rows)


# --- Training memory of the course's models and Llama-2-7B (lesson 05 quotes it) ----------------
MEMORY_CASES = (
    ("peftlab-base", "lora"),
    ("smollm2-135m", "lora"),
    ("smollm2-135m", "qlora"),
    ("llama-2-7b", "full"),
    ("llama-2-7b", "lora"),
    ("llama-2-7b", "qlora"),
)


def training_memory_rows(
    cases: Sequence[tuple[str, str]] = MEMORY_CASES, r: int = 8, batch_size: int = 4,
    seq_len: int = 512,
) -> list[dict]:  # fmt: skip
    """Training memory (`memory.estimate`, bytes) per (preset, method), without and with
    gradient checkpointing (the same setting on every method, so they compare like with like),
    and the GPUs each fits; what you need before pointing notebook 05 at a real model."""
    rows = []
    for name, method in cases:
        config = memory.preset(name)
        totals = {
            checkpointing: memory.estimate(
                config, method, r=r, batch_size=batch_size, seq_len=seq_len,
                gradient_checkpointing=checkpointing,
            ).total
            for checkpointing in (False, True)
        }  # fmt: skip
        rows.append({"model": name, "method": method, "params": memory.count_params(config),
                     "total_bytes": totals[False], "checkpointed_bytes": totals[True],
                     "fits": presets.fits(totals[False]),
                     "checkpointed_fits": presets.fits(totals[True])})  # fmt: skip
    return rows


def card_24gb() -> str:
    """The name `presets.GPUS` gives a 24 GB consumer card."""
    return next(gpu for gpu in presets.GPUS if "24 GB" in gpu)


def memory_verdict(rows: Sequence[Mapping], model: str = "llama-2-7b") -> str:
    """What the memory table says about one model, like with like: LoRA and QLoRA with the
    same checkpointing setting, each against a 24 GB card."""
    by_method = {row["method"]: row for row in rows if row["model"] == model}
    card = card_24gb()

    def gib(row, key):
        return f"{row[key] / 2**30:.2f} GiB"

    def verdict(row, fits):
        return "fits" if row[fits][card] else "does not fit"

    lora, qlora = by_method["lora"], by_method["qlora"]
    smallest = presets.smallest_gpu(qlora["checkpointed_bytes"]) or "none"
    return (
        "With gradient checkpointing on both, LoRA in 16 bits needs "
        f"{gib(lora, 'checkpointed_bytes')} and {verdict(lora, 'checkpointed_fits')} a 24 GB "
        "card; QLoRA needs "
        f"{gib(qlora, 'checkpointed_bytes')} (smallest card listed that holds it: "
        f"{smallest}). Without checkpointing, LoRA needs "
        f"{gib(lora, 'total_bytes')} and {verdict(lora, 'fits')} a 24 GB card; QLoRA needs "
        f"{gib(qlora, 'total_bytes')} and {verdict(qlora, 'fits')}."
    )


def training_memory_markdown(rows: Sequence[dict]) -> str:
    """`training_memory_rows` as a markdown table, in GiB (2**30 bytes): without and with
    gradient checkpointing, and whether each fits a 24 GB card."""
    card = card_24gb()
    lines = [
        "| model | parameters | method | no checkpointing (GiB) | gradient checkpointing (GiB) "
        "| fits a 24 GB GPU (without / with) |",
        "|---|---:|---|---:|---:|:---:|",
    ]
    yes = {True: "yes", False: "no"}
    lines += [
        f"| {r['model']} | {r['params'] / 1e6:,.1f} M | {r['method']} | "
        f"{r['total_bytes'] / 2**30:.2f} | {r['checkpointed_bytes'] / 2**30:.2f} | "
        f"{yes[r['fits'][card]]} / {yes[r['checkpointed_fits'][card]]} |"
        for r in rows
    ]
    return "\n".join(lines)


def one_card_text(total_bytes: int) -> str:
    """ "one N GB GPU" for `presets.smallest_gpu` (a card sold as N GB holds N GiB)."""
    gpu = presets.smallest_gpu(total_bytes)
    return f"one {presets.GPUS[gpu] // 2**30} GB GPU" if gpu else "no single GPU listed"
