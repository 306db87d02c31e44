"""Lesson 11, the same recipe on a real model (notebook 11, lessons/11-real-model.md).

SmolLM2-135M-Instruct, fetched once from PyPI (`peftlab.models`), goes through the course's own
code: the demo's before/after on both sets (`compare.before_after` with the model's recipe),
bytes held by tensors after one step against `memory.estimate` (full, LoRA, QLoRA), LoRA
against QLoRA (NF4 through bitsandbytes), the adapter merged against unmerged, and the adapter's
size. Everything expensive is one cached run (`results`), shared by the notebook and the tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftlab import base_model, compare, finetune, measure, memory, models
from peftlab.generate import generate
from peftlab.lessons import cache
from peftlab.tables import markdown_table

LESSON = "11-real-model.md"
NOTEBOOK = "11_real_model.ipynb"
TRAINS = True
QLORA_COMPLAINTS = 12  # the held-out sample the LoRA/QLoRA comparison answers
MERGED_COMPLAINTS = 12  # the held-out complaints answered merged and unmerged
# The real model computes in bf16 where the CPU has it natively: replies and scores move a
# little between CPUs (AMX or AVX512-BF16 kernels, thread counts). Counts of bytes do not.
_SHARE = {"acknowledges": 10, "faithful": 10, "distinct": 10}
TOLERANCE: dict[str, Any] = {
    "held after": 0.05, "wild after": 0.05, "wild before": 0.1,
    # how many bf16 replies survive the merge depends on the CPU's bf16 kernels: 1 of 12 on an
    # AMD EPYC with AVX512-BF16, 8 of 12 on an Intel Xeon with AMX (the prose says so); the
    # lesson's test checks what holds on both: the merged replies score as the unmerged ones
    "merged same fp32": 1, "merged same demo": MERGED_COMPLAINTS, "lead-in echoes": 2,
    "measures": {"rubric": 0.1, **_SHARE},
    "lora vs qlora": {"rubric before (12)": 0.1, "rubric after": 0.1, "faithful after": 10},
}  # fmt: skip
MODEL = "smollm2"
R = 8
TARGETS = "all-linear"


# --- memory: bytes held after one step, against the estimate ------------------------------------
MEMORY_RUNS = (  # (label, method, estimate's precision): what each run holds, as the CPU runs it
    ("full, fp32", "full", "fp32"),
    ("LoRA r8 all-linear, fp32 base", "lora", "fp32"),
    ("QLoRA r8 all-linear, NF4 base", "qlora", "mixed"),
)
TERMS = ("frozen_weights", "quantization_constants", "trainable_weights", "gradients",
         "optimizer_states")  # fmt: skip


def results() -> dict[str, Any]:
    """Everything lesson 11 shows, computed once per code version and machine (a few minutes
    cold on two cores): the demo on both sets, the merged replies, QLoRA, the memory counts."""
    provenance = models.provenance(MODEL)  # a clear error before the cache is locked
    # the fetched files are part of the key: a refetch with another conversion recomputes
    files = {name: meta["sha256"] for name, meta in provenance["files"].items()}
    return cache.cached("lesson11-real-model", _compute, files=True, model_files=files,
                        weights_note=provenance["weights"])  # fmt: skip


def quotes(res: dict[str, Any]) -> dict[str, str]:
    demo, shapes = res["demo"], res["shapes"]
    wild, held = demo["sets"]["wild"]["summary"], demo["summary"]
    merged, precision = res["merged"], demo["precision"]
    return {
        "params": f"{shapes['params']:,}",
        "untied params": f"{shapes['untied_params']:,}",
        "embedding params": f"{shapes['embedding']:,}",
        "kv width": f"{shapes['kv_width']}",
        "lora params": f"{shapes['lora_params']:,}",
        "lora params mha": f"{shapes['lora_params_mha']:,}",
        "lora share": f"{100 * demo['trainable_params'] / demo['total_params']:.2f}%",
        "steps": f"{demo['steps']}",
        "steps again": f"{demo['steps']}",
        "precision": precision,
        "precision again": precision,
        "measures": measures_table(demo),
        "held after": f"{held['after']:.2f}",
        "wild after": f"{wild['after']:.2f}",
        "wild before": f"{wild['before']:.2f}",
        "memory": memory_table(res["memory"]),
        "adapter size": f"{res['adapter_bytes'] / 1e6:.1f} MB",
        "lead-in echoes": "{} of {}".format(*lead_in_echoes(demo)),
        "merged same fp32": f"{merged['fp32']['same']} of {merged['fp32']['n']}",
        "merged same demo": f"{merged[precision]['same']} of {merged[precision]['n']}",
        "lora vs qlora": lora_qlora_table(res),
    }


def memory_counted() -> list[dict[str, Any]]:
    """Per run of MEMORY_RUNS: each term's bytes held by tensors after one AdamW step on 2 x 32
    tokens (`measure.held_bytes`) and `memory.estimate`'s for the same recipe."""
    rows = []
    for label, method, precision in MEMORY_RUNS:
        quantized = base_model.nf4_config() if method == "qlora" else None
        model, _ = base_model.load(MODEL, quantization_config=quantized)
        if method != "full":
            model = finetune.build_peft_model(
                model, method=method, r=R, alpha=2 * R, target_modules=TARGETS
            )
        held = measure.held_bytes(model, measure.train_step(model))
        predicted = memory.estimate(
            model.config, method=method, r=R, target_modules=TARGETS, precision=precision
        )
        for term in TERMS:
            rows.append({"run": label, "term": term, "held": held[term],
                         "estimate": getattr(predicted, term)})  # fmt: skip
        del model
    return rows


def memory_table(rows: Sequence[dict[str, Any]]) -> str:
    out = []
    for row in rows:
        same = (
            "yes"
            if row["held"] == row["estimate"]
            else f"off by {row['held'] - row['estimate']:+,}"
        )
        out.append([row["run"], row["term"].replace("_", " "), f"{row['held']:,}",
                    f"{row['estimate']:,}", same])  # fmt: skip
    return markdown_table(["run", "term", "held bytes", "estimate", "equal"], out)


def shape_facts() -> dict[str, int]:
    """What tied embeddings and grouped-query attention change in the counts."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(models.require(MODEL))
    hidden, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = hidden // heads
    embedding = config.vocab_size * hidden
    return {
        "params": memory.count_params(config),
        "embedding": embedding,
        "untied_params": memory.count_params(config) + embedding,
        "layers": config.num_hidden_layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv,
        "kv_width": kv * head_dim,
        "lora_params": memory.lora_params(config, R, TARGETS),
        "lora_params_mha": memory.lora_params(config, R, TARGETS)
        + config.num_hidden_layers * 2 * R * (hidden - kv * head_dim),
    }


# --- the adapter merged and not -----------------------------------------------------------------
def merged_replies(adapter: Path, complaints: Sequence[str], precision: str) -> dict[str, Any]:
    """The trained adapter's replies unmerged (LoRA beside the frozen weights) and merged into
    them (`merge_and_unload`, in fp32), generated in fp32 and in the demo's precision (bf16
    autocast: the merged weights are rounded once per matmul, the unmerged ones and BA apart);
    how many replies are the same."""
    from peft import PeftModel

    out: dict[str, Any] = {}
    for label, prec in (("fp32", "fp32"), (precision, precision)):
        model, tokenizer = base_model.load(MODEL)
        tuned = PeftModel.from_pretrained(model, adapter)
        with finetune.autocast(prec):
            unmerged = generate(tuned, tokenizer, complaints)
        merged_model = tuned.merge_and_unload()  # W + BA computed in fp32, outside autocast
        with finetune.autocast(prec):
            merged = generate(merged_model, tokenizer, complaints)
        same = sum(a == b for a, b in zip(unmerged, merged, strict=True))
        out[label] = {"same": same, "n": len(complaints), "unmerged": unmerged, "merged": merged}
    return out


# --- LoRA against QLoRA -------------------------------------------------------------------------
def qlora_run(complaints: Sequence[str]) -> dict[str, Any]:
    """The demo's recipe with the base in NF4 (bitsandbytes; QLoRA's own settings: every linear
    layer, gradient checkpointing, bf16 compute), on the held-out sample only."""
    start = time.perf_counter()
    result = compare.before_after(
        list(complaints), model_name=MODEL, method="qlora", run_name=None, progress=False, sets={}
    )
    return {"comparison": result.to_dict(), "seconds": time.perf_counter() - start}


# --- everything, once -------------------------------------------------------------------------
def _compute(scratch: Path, **model_identity: Any) -> dict[str, Any]:
    del model_identity  # in the cache key only (`results`)
    start = time.perf_counter()
    demo = compare.before_after(model_name=MODEL, run_name="demo", runs_dir=str(scratch),
                                progress=False)  # fmt: skip
    demo_seconds = time.perf_counter() - start
    adapter = scratch / "demo" / "adapter"
    heldout = [row["complaint"] for row in demo.examples]
    return {
        "demo": demo.to_dict(),
        "demo_seconds": demo_seconds,
        "adapter_bytes": measure.weights_bytes(adapter),
        "merged": merged_replies(adapter, heldout[:MERGED_COMPLAINTS], demo.precision),
        "qlora": qlora_run(heldout[:QLORA_COMPLAINTS]),
        "memory": memory_counted(),
        "shapes": shape_facts(),
        "provenance": models.provenance(MODEL),
    }


# --- tables and quotes --------------------------------------------------------------------------
MEASURE_COLUMNS = {"rubric": "rubric", "acknowledges": "acknowledges", "faithful": "faithful",
                   "distinct": "distinct"}  # fmt: skip


def measures_table(demo: dict[str, Any]) -> str:
    """Both sets' measures, one row per set and side: the mean rubric score, and the shares that
    acknowledge the customer's own problem, name nothing they were not told, and differ."""
    sets = {"held-out": demo["examples"], "in the wild": demo["sets"]["wild"]["examples"]}
    rows = []
    for name, set_rows in sets.items():
        s = compare.measures(set_rows)
        for side in compare.SIDES:
            rows.append([f"{name} ({len(set_rows)}), {side}", f"{s[side]:.2f}",
                         f"{s[f'acknowledges_{side}']:.0%}", f"{s[f'faithful_{side}']:.0%}",
                         f"{s[f'distinct_{side}']:.0%}"])  # fmt: skip
    return markdown_table(["replies", *MEASURE_COLUMNS.values()], rows)


def replies_table(demo: dict[str, Any], n: int = 3) -> str:
    """The first `n` held-out complaints with both replies."""
    rows = demo["examples"][:n]
    out = [[r["complaint"], r["before"].replace("\n", " "), r["after"]] for r in rows]
    after = f"after {demo['steps']} LoRA steps"
    return markdown_table(["complaint", "before (SmolLM2-135M-Instruct)", after], out)


_TURNED = {"my": "your", "i": "you", "me": "you", "our": "your", "we": "you"}


def lead_in_echoes(demo: dict[str, Any]) -> tuple[int, int]:
    """Of the complaints (both sets) that open with a lead-in ("just letting you know", "hi
    there"), which the support set's replies never echo (`echo.echo_message` skips it), how
    many after-replies echo it anyway, with the complaint's next word after it (so that "I'm
    so sorry" is not an echo of "so my"): (echoed, complaints)."""
    import re

    from peftlab import echo

    rows = demo["examples"] + demo["sets"]["wild"]["examples"]
    opening = []
    for row in rows:
        text = row["complaint"].lower()
        lead = next((w for w in echo.LEAD_INS if re.match(rf"{re.escape(w)}[\s,]", text)), None)
        if lead is None:
            continue
        following = re.findall(r"[a-z']+", text[len(lead) :])
        nxt = following[0] if following else ""
        words = "|".join(re.escape(w) for w in {nxt, _TURNED.get(nxt, nxt)})
        opening.append(bool(re.search(rf"\b{re.escape(lead)}[\s,]+(?:{words})\b",
                                      row["after"].lower())))  # fmt: skip
    return sum(opening), len(opening)


def worst_table(demo: dict[str, Any], n: int = 4) -> str:
    """The `n` worst wild replies after fine-tuning (`compare.worst`: unfaithful first, then by
    rubric score; where every reply scores 1.00 and is faithful, the set's first `n`)."""
    rows = compare.worst(demo["sets"]["wild"]["examples"], n)
    out = [[r["complaint"], r["after"], ", ".join(r["after_invented"]) or "-"] for r in rows]
    return markdown_table(["complaint (in the wild)", "after", "names what it was not told"], out)


def saturated(demo: dict[str, Any]) -> bool:
    """Whether every wild reply after fine-tuning scores 1.00 and is faithful: then the rubric
    cannot rank them, and the 'worst' replies are just the set's first."""
    rows = demo["sets"]["wild"]["examples"]
    return all(r["after_score"] == 1.0 and r["after_faithful"] for r in rows)


def lora_qlora_table(res: dict[str, Any]) -> str:
    """LoRA (the demo's run) and QLoRA on the same first held-out complaints."""
    demo, q = res["demo"], res["qlora"]["comparison"]
    n = len(q["examples"])
    rows = []
    for label, comparison, rows_ in (("LoRA, fp32 base", demo, demo["examples"][:n]),
                                      ("QLoRA, NF4 base", q, q["examples"])):  # fmt: skip
        s = compare.measures(rows_)
        rows.append([label, f"{s['before']:.2f}", f"{s['after']:.2f}",
                     f"{s['faithful_after']:.0%}", comparison["precision"]])  # fmt: skip
    headers = ["run", f"rubric before ({n})", "rubric after", "faithful after", "compute"]
    return markdown_table(headers, rows)


def criteria_figure(demo: dict[str, Any]):
    """Share of replies meeting each rubric criterion and the faithfulness check, before and
    after, on both sets: one group of bars per criterion."""
    from matplotlib.figure import Figure

    from peftlab.rubric import CRITERIA

    sets = {"held-out": demo["examples"], "in the wild": demo["sets"]["wild"]["examples"]}
    names = [*CRITERIA, "faithful"]
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, rows) in zip(axes, sets.items(), strict=True):
        for offset, side in ((-0.2, "before"), (0.2, "after")):
            shares = [
                sum(bool(r[f"{side}_faithful"] if c == "faithful" else r[f"{side}_marks"][c])
                    for r in rows) / len(rows)
                for c in names
            ]  # fmt: skip
            ax.bar([i + offset for i in range(len(names))], shares, width=0.4, label=side)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_title(f"{title} ({len(rows)} complaints)")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("share of replies")
    axes[0].legend(loc="upper left")
    fig.suptitle("SmolLM2-135M-Instruct before and after 40 LoRA steps")
    fig.tight_layout()
    return fig
